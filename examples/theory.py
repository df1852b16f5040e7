"""Two facts behind the layers, checked in float64: a convolution is a matrix, a ReLU network is
locally linear. No training; runs in seconds.

1. Convolution as a matrix. For one input x of shape (C, H, W), ``Conv2d`` computes y = A x + b,
   where ``A = conv2d_matrix(weight, (C, H, W), stride, padding)`` has one row per output value
   (O*OH*OW) and one column per input value (C*H*W), and b repeats each channel's bias OH*OW times.
   Its input gradient is dx = A^T dy: the backward pass of a convolution is the transposed matrix.
   Both are compared with ``Conv2d.forward`` / ``Conv2d.backward`` (the im2col kernels).

2. The local linear form of a ReLU network h. Near x0, every ReLU keeps its on/off state, and
   there h(x) = h(x0) + W (x - x0) holds exactly, W being the Jacobian dh/dx at x0. Row k of W is
   what ``backward`` returns for the one-hot upstream gradient e_k, so one forward and one backward
   per output give W. W also equals the product of the weight matrices with the rows of the
   switched-off units zeroed. Along x0 + t d the linear form is exact up to the first kink t*
   (a ReLU input crossing 0) and only approximate beyond it.

Prints both checks as markdown tables and writes to ``--out`` (default ``out/theory``,
``out/theory-quick`` with ``--quick``):
  conv_matrix.png    the matrix A (mostly zeros, the kernel repeated along shifted diagonals)
  local_linear.png   h along x0 + t d against its linear form, with the kinks marked
  results.md         the printed tables

    python examples/theory.py [--seed 0]
"""
import os
import time

import numpy as np
from matplotlib.figure import Figure

from npnet import nn
from npnet.functional import conv2d_matrix
from npnet.plots import save_figure

from _common import make_parser, markdown_table, publish, run

# -- settings --------------------------------------------------------------------------------------
CONV = dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1)
INPUT_HW = (7, 7)  # a stride of 2 that does not tile 7 + 2 - 3 exactly would also work
NET_SIZES = (4, 16, 16, 3)  # input, two hidden ReLU layers, output
T_GRID = 4001  # points of the scan along x0 + t d that locates the kinks


def parse_args():
    return make_parser(__doc__, "out/theory", "the same run (it already takes seconds)",
                       dataset=False, seed=0).parse_args()


# -- 1. convolution as a matrix --------------------------------------------------------------------
def conv_as_matrix(rng):
    """Conv2d against A = conv2d_matrix: table rows and the matrix A."""
    conv = nn.Conv2d(**CONV, rng=rng, dtype=np.float64)
    x = rng.standard_normal((1, CONV["in_channels"]) + INPUT_HW)  # (1, C, H, W)
    y = conv(x)  # (1, O, OH, OW)
    A = conv2d_matrix(conv.weight.data, x.shape[1:], CONV["stride"], CONV["padding"])  # (O*OH*OW, C*H*W)
    b = np.repeat(conv.bias.data, y.shape[2] * y.shape[3])  # (O*OH*OW,)
    y_matrix = A @ x.ravel() + b

    dy = rng.standard_normal(y.shape)  # a random upstream gradient
    dx = conv.backward(dy)  # (1, C, H, W)
    dx_matrix = A.T @ dy.ravel()
    rows = [("forward: y = A x + b", f"{A.shape[0]} = {y.shape[1:]}",
             f"{np.abs(y.ravel() - y_matrix).max():.1e}"),
            ("input gradient: dx = A^T dy", f"{A.shape[1]} = {x.shape[1:]}",
             f"{np.abs(dx.ravel() - dx_matrix).max():.1e}")]
    return rows, A


# -- 2. the local linear form of a ReLU network ----------------------------------------------------
def relu_network(rng):
    layers = []
    for i, (d_in, d_out) in enumerate(zip(NET_SIZES[:-1], NET_SIZES[1:])):
        layers.append(nn.Linear(d_in, d_out, rng=rng))
        if i < len(NET_SIZES) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).astype(np.float64)


def jacobian(net, x0):
    """W = dh/dx at x0, row by row: row k is the input gradient for the upstream gradient e_k."""
    rows = []
    for k in range(NET_SIZES[-1]):
        net(x0[None])  # the forward pass fills the caches that backward reads
        e_k = np.zeros((1, NET_SIZES[-1]))
        e_k[0, k] = 1.0
        rows.append(net.backward(e_k)[0])  # (D,)
    net.zero_grad()  # backward also filled the weights' grads, which nothing here needs
    return np.stack(rows)  # (K, D)


def masked_product(net, x0):
    """The same W from the weights: W_L ... diag(m_1) W_1, with m_l the on/off state of the ReLUs."""
    W, x = np.eye(x0.size), x0[None]
    for layer in net:
        if isinstance(layer, nn.Linear):
            W = layer.weight.data @ W
        elif isinstance(layer, nn.ReLU):
            W = (x[0] > 0)[:, None] * W  # a switched-off unit passes nothing on
        x = layer(x)
    return W


def relu_states(net, x):
    """The on/off state of every ReLU for each row of x: (N, number of hidden units) bool."""
    states = []
    for layer in net:
        if isinstance(layer, nn.ReLU):
            states.append(x > 0)
        x = layer(x)
    return np.concatenate(states, axis=1)


def first_kink(net, x0, d, t_max=5.0):
    """The smallest t > 0 at which a ReLU of ``net`` switches along x0 + t d: a scan on a grid,
    then bisection between the last grid point before the switch and the first one after it."""
    ts = np.linspace(0, t_max, T_GRID)
    states = relu_states(net, x0 + ts[:, None] * d)  # (T, units)
    switched = (states != states[0]).any(axis=1)
    if not switched.any():
        raise ValueError(f"no ReLU switches along the direction for t <= {t_max}; raise t_max")
    hi = ts[np.argmax(switched)]
    lo = hi - ts[1]
    for _ in range(60):
        mid = (lo + hi) / 2
        same = (relu_states(net, (x0 + mid * d)[None])[0] == states[0]).all()
        lo, hi = (mid, hi) if same else (lo, mid)
    return hi


def local_linear(rng):
    """The linear form against the network inside and across activation regions."""
    net = relu_network(rng)
    x0 = rng.standard_normal(NET_SIZES[0])
    d = rng.standard_normal(NET_SIZES[0])
    d /= np.linalg.norm(d)  # a unit direction
    h0, W = net(x0[None])[0], jacobian(net, x0)  # (K,), (K, D)

    t_kink = first_kink(net, x0, d)
    s0 = relu_states(net, x0[None])[0]

    rows = [("Jacobian by backward vs masked weight product", "-", "-",
             f"{np.abs(W - masked_product(net, x0)).max():.1e}")]
    for label, t in (("tiny step", 1e-6), ("inside the region, t = t*/2", t_kink / 2),
                     ("just across the first kink, t = 1.2 t*", 1.2 * t_kink),
                     ("far, t = 5 t*", 5 * t_kink)):
        x = x0 + t * d
        n_switched = int((relu_states(net, x[None])[0] != s0).sum())
        error = np.abs(net(x[None])[0] - (h0 + W @ (x - x0))).max()
        rows.append((label, f"{t:.3g}", str(n_switched), f"{error:.1e}"))
    return rows, (net, x0, d, h0, W, t_kink)


def plot_matrix(A, path):
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    lim = np.abs(A).max()
    im = ax.imshow(A, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label="weight")
    ax.set(title=f"Conv2d{tuple(CONV.values())[:3]} on {CONV['in_channels']}x{INPUT_HW[0]}x{INPUT_HW[1]} "
                 f"(stride {CONV['stride']}, padding {CONV['padding']}) as a matrix A {A.shape}",
           xlabel="input index (c, row, column)", ylabel="output index (o, row, column)")
    save_figure(fig, path)


def plot_line(net, x0, d, h0, W, t_kink, path):
    """Left: output 0 along x0 + t d and its linear form at x0. Right: the largest gap between
    the network and the linear form, log scale (float64 rounding inside the region). Kinks dotted."""
    ts = np.linspace(-6 * t_kink, 6 * t_kink, 1201)
    xs = x0 + ts[:, None] * d  # (T, D)
    hs, lin = net(xs), h0 + (xs - x0) @ W.T  # (T, K) each
    states = relu_states(net, xs)
    kinks = ts[1:][(states[1:] != states[:-1]).any(axis=1)]
    gap = np.maximum(np.abs(hs - lin).max(axis=1), 1e-18)  # 0 cannot be shown on a log scale
    fig = Figure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.plot(ts, hs[:, 0], label="network h_0(x0 + t d)")
    left.plot(ts, lin[:, 0], "--", label="linear form h_0(x0) + W_0 (t d)")
    right.semilogy(ts, gap, color="C3")
    for ax in (left, right):
        for t in kinks:
            ax.axvline(t, color="gray", linestyle=":", linewidth=0.8)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel("t (dotted: a ReLU switches)")
    left.set(ylabel="output 0", title="the network and its linear form at x0 (t = 0)")
    left.legend(fontsize="small")
    right.set(ylabel="max_k |h_k(x) - linear form_k|", title="gap (exactly 0 shown as 1e-18)")
    save_figure(fig, path)


def main():
    args = parse_args()
    start = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    conv_rows, A = conv_as_matrix(rng)
    lin_rows, line = local_linear(rng)
    plot_matrix(A, os.path.join(args.out, "conv_matrix.png"))
    plot_line(*line, os.path.join(args.out, "local_linear.png"))

    publish(args.out, [
        f"Convolution as a matrix: Conv2d{tuple(CONV.values())}, input {CONV['in_channels']}x"
        f"{INPUT_HW[0]}x{INPUT_HW[1]}, float64",
        markdown_table(["check", "size", "max abs difference"], conv_rows),
        f"Local linear form of a ReLU network {NET_SIZES}, float64: x = x0 + t d, |d| = 1, "
        f"first kink at t* = {line[-1]:.3g}",
        markdown_table(["perturbation", "t", "ReLUs switched", "max abs(h(x) - h(x0) - W (x - x0))"],
                       lin_rows)])
    print(f"\nwall time {time.perf_counter() - start:.1f} s; figures and results.md in {args.out}/")


if __name__ == "__main__":
    run(main)
