# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # An LSTM cell and backpropagation through time from scratch
#
# An LSTM is one small function applied at every step of a sequence, and its backward pass is
# that function's backward applied in reverse order, carrying two gradients (of `h` and of `c`)
# from each step to the one before. We write both in NumPy, check the gradients against finite
# differences, show that they are exactly what `npnet.nn.LSTM` (and `torch.nn.LSTM`) compute,
# and then look inside a trained LSTM reading Fashion-MNIST images row by row.
#
# The quick setting (`NPNET_TUTORIAL_QUICK=1`, used by the test suite) trains on fewer images for
# fewer steps; the figures still come from a real trained network, only a weaker one.

# %%
import io
import os
import time

import numpy as np
from IPython.display import Image, display
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from npnet import losses, nn, optim
from npnet.data import DataLoader, Normalize, Rows, load_fashion_mnist_mini
from npnet.gradcheck import numerical_gradient, relative_error
from npnet.models.sequence import RecurrentClassifier
from npnet.train import train_step

QUICK = os.environ.get("NPNET_TUTORIAL_QUICK") == "1"  # the test suite's setting: seconds, not minutes


def show(fig):
    """Displays a matplotlib Figure as a PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    display(Image(buf.getvalue()))

# %% [markdown]
# ## One step of the cell
#
# With input $x_t$ (I features), previous hidden state $h_{t-1}$ and cell state $c_{t-1}$ (H each),
# the cell computes four gates from one matrix product. PyTorch's order, which npnet keeps so that
# weights load unchanged, stacks their rows as i, f, g, o: `weight_ih` is (4H, I), `weight_hh` is (4H, H).
#
# $$a = W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}, \qquad
#   i, f, o = \sigma(a_i), \sigma(a_f), \sigma(a_o), \qquad g = \tanh(a_g)$$
#
# $$c_t = f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh(c_t)$$
#
# The forget gate `f` decides how much of the old memory survives, the input gate `i` how much of
# the candidate `g` is written, the output gate `o` how much of the memory is shown as `h`. The
# cell state is updated by a product and a sum only, no squashing: that path is why gradients
# survive more steps than in a plain RNN.

# %%
def sigmoid(a):
    return 0.5 * (np.tanh(0.5 * a) + 1)  # = 1 / (1 + exp(-a)), without overflow


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """x (T, N, I), h0 and c0 (N, H) -> hs (T, N, H) and what the backward pass needs."""
    T, N, _ = x.shape
    H = w_hh.shape[1]
    hs, cs, gates = np.empty((T, N, H), x.dtype), np.empty((T, N, H), x.dtype), np.empty((T, N, 4 * H), x.dtype)
    h, c = h0, c0
    for t in range(T):
        a = x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh  # (N, 4H)
        i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 3 * H:])
        g = np.tanh(a[:, 2 * H:3 * H])
        c = f * c + i * g  # (N, H)
        h = o * np.tanh(c)  # (N, H)
        hs[t], cs[t], gates[t] = h, c, np.concatenate([i, f, g, o], axis=1)
    return hs, (x, h0, c0, hs, cs, gates, w_ih, w_hh)

# %% [markdown]
# The data flow of one step. Everything that enters a gate is the same stacked vector
# $[x_t, h_{t-1}]$; the only state that flows to the right without passing through a weight
# matrix is $c$.

# %%
def box(ax, xy, text, color, w=1.0, h=0.6):
    ax.add_patch(FancyBboxPatch((xy[0] - w / 2, xy[1] - h / 2), w, h, boxstyle="round,pad=0.05",
                                fc=color, ec="black"))
    ax.text(*xy, text, ha="center", va="center", fontsize=11)


def arrow(ax, a, b, **kw):
    ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="->", lw=1.5, **kw))


fig = Figure(figsize=(9, 4.6))
ax = fig.add_subplot()
ax.set_xlim(-0.5, 10.5)
ax.set_ylim(-0.6, 5.2)
ax.axis("off")
gate_x = {"f": 2.5, "i": 4.0, "g": 5.5, "o": 7.0}
gate_label = {"f": "f = σ", "i": "i = σ", "g": "g = tanh", "o": "o = σ"}
for name, gx in gate_x.items():
    box(ax, (gx, 1.6), gate_label[name], "#9ecae1" if name != "g" else "#fdae6b", w=1.2)
    arrow(ax, (gx, 0.55), (gx, 1.28))
ax.plot([1.5, 7.5], [0.5, 0.5], color="black", lw=1.5)
box(ax, (0.5, 0.5), "[x_t, h_{t-1}]", "#e5e5e5", w=1.6)
box(ax, (2.5, 4.2), "×", "#c7e9c0", w=0.5, h=0.5)   # f * c_{t-1}
box(ax, (4.75, 3.0), "×", "#c7e9c0", w=0.5, h=0.5)  # i * g
box(ax, (4.75, 4.2), "+", "#c7e9c0", w=0.5, h=0.5)
box(ax, (8.4, 3.0), "tanh", "#fdae6b", w=0.9, h=0.5)
box(ax, (8.4, 1.6), "×", "#c7e9c0", w=0.5, h=0.5)   # o * tanh(c)
ax.text(-0.2, 4.2, "c_{t-1}", ha="center", va="center", fontsize=11)
ax.text(10.2, 4.2, "c_t", ha="center", va="center", fontsize=11)
ax.text(10.2, 1.6, "h_t", ha="center", va="center", fontsize=11)
arrow(ax, (0.2, 4.2), (2.25, 4.2), color="tab:green")
arrow(ax, (2.75, 4.2), (4.5, 4.2), color="tab:green")
arrow(ax, (5.0, 4.2), (9.9, 4.2), color="tab:green")
arrow(ax, (2.5, 1.9), (2.5, 3.95))
arrow(ax, (4.0, 1.9), (4.55, 2.8))
arrow(ax, (5.5, 1.9), (4.95, 2.8))
arrow(ax, (4.75, 3.25), (4.75, 3.95))
arrow(ax, (8.4, 4.2), (8.4, 3.25))
arrow(ax, (8.4, 2.75), (8.4, 1.85))
arrow(ax, (7.6, 1.6), (8.15, 1.6))
arrow(ax, (8.65, 1.6), (9.9, 1.6))
ax.set_title("One LSTM step: four gates from [x_t, h_{t-1}]; c flows right through × and + only")
show(fig)

# %% [markdown]
# ## The same numbers as `npnet.nn.LSTM`
#
# `nn.LSTM` keeps its weights under PyTorch's names (`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`,
# `bias_hh_l0`); we hand them to our function and compare outputs. (The layer computes the input
# products of all steps in one matrix product before the loop; the sums may round differently,
# so expect agreement to float rounding in general.)

# %%
T, N, I, H = 6, 3, 5, 4
rng = np.random.default_rng(0)
lstm = nn.LSTM(I, H, rng=0).astype(np.float64)
weights = [getattr(lstm, f"{n}_l0").data for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
x = rng.normal(size=(T, N, I))  # (T, N, I), float64
h0, c0 = rng.normal(size=(N, H)), rng.normal(size=(N, H))

hs, cache = lstm_forward(x, h0, c0, *weights)
out, (h_n, c_n) = lstm(x, (h0[None], c0[None]))
print("weight_ih_l0", weights[0].shape, " weight_hh_l0", weights[1].shape)
print("from scratch vs nn.LSTM, max |output difference|:", np.abs(hs - out).max())

# %% [markdown]
# ## Backward through time
#
# The loss depends on every $h_t$, directly (`dhs[t]`, from whatever reads the outputs) and
# through later steps. Going from the last step to the first, step $t$ receives $dh$ and $dc$
# from step $t+1$, adds its own output's gradient, and sends new ones to step $t-1$:
#
# $$dc \mathrel{+}= dh \odot o \odot (1 - \tanh^2 c_t), \qquad
#   di, df, dg, do = dc \odot g,\; dc \odot c_{t-1},\; dc \odot i,\; dh \odot \tanh c_t$$
#
# then through the gate nonlinearities ($\sigma' = \sigma(1-\sigma)$, $\tanh' = 1 - \tanh^2$) to
# $da$, and $dc_{t-1} = dc \odot f$, $dh_{t-1} = da\, W_{hh}$. The weights are shared by all
# steps, so their gradients are **sums** over the steps.

# %%
def lstm_backward(dhs, dhT, dcT, cache):
    """dhs (T, N, H): d loss / d h_t from the outputs; dhT, dcT (N, H): from after the last step.
    Returns dx (T, N, I), dh0, dc0 (N, H) and the weight gradients (dw_ih, dw_hh, db_ih, db_hh)."""
    x, h0, c0, hs, cs, gates, w_ih, w_hh = cache
    T, N, H = hs.shape
    dx = np.empty_like(x)
    dw_ih, dw_hh, db = np.zeros_like(w_ih), np.zeros_like(w_hh), np.zeros(4 * H, x.dtype)
    dh, dc = dhT.copy(), dcT.copy()
    for t in range(T - 1, -1, -1):
        i, f, g, o = np.split(gates[t], 4, axis=1)  # (N, H) each
        c_prev, h_prev = (cs[t - 1], hs[t - 1]) if t > 0 else (c0, h0)
        tc = np.tanh(cs[t])
        dh = dh + dhs[t]  # this step's output and everything after it
        dc = dc + dh * o * (1 - tc ** 2)
        da = np.concatenate([dc * g * i * (1 - i),          # d a_i
                             dc * c_prev * f * (1 - f),     # d a_f
                             dc * i * (1 - g ** 2),         # d a_g
                             dh * tc * o * (1 - o)], axis=1)  # d a_o; (N, 4H)
        dw_ih += da.T @ x[t]  # shared weights: summed over the steps
        dw_hh += da.T @ h_prev
        db += da.sum(axis=0)
        dx[t] = da @ w_ih
        dh, dc = da @ w_hh, dc * f  # to step t - 1
    return dx, dh, dc, (dw_ih, dw_hh, db, db.copy())  # b_ih and b_hh enter a alike

# %% [markdown]
# ## Gradient check in float64
#
# A scalar loss that weighs every output by a random number, $L = \sum_t \sum h_t \odot R_t$, has
# $dhs = R$. `npnet.gradcheck.numerical_gradient` nudges each entry of an array by $\pm 10^{-6}$
# and takes central differences; `relative_error` compares whole arrays.

# %%
R = rng.normal(size=(T, N, H))


def loss():
    return float((lstm_forward(x, h0, c0, *weights)[0] * R).sum())


zero = np.zeros((N, H))
dx, dh0, dc0, dweights = lstm_backward(R, zero, zero, lstm_forward(x, h0, c0, *weights)[1])
checks = {"x": (dx, x), "h0": (dh0, h0), "c0": (dc0, c0)}
checks.update({n: (d, w) for n, d, w in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), dweights, weights)})
for name, (analytic, array) in checks.items():
    print(f"{name:10s} relative error {relative_error(analytic, numerical_gradient(loss, array)):.1e}")

# %% [markdown]
# And against `nn.LSTM.backward`, which takes `(d_output, (d_h_n, d_c_n))` and adds into each
# parameter's `.grad`:

# %%
lstm.zero_grad()
out, _ = lstm(x, (h0[None], c0[None]))
dx_layer = lstm.backward((R, (None, None)))
print("d x        max |difference|:", np.abs(dx_layer - dx).max())
for name, d in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), dweights):
    print(f"{name:10s} max |difference|: {np.abs(getattr(lstm, name + '_l0').grad - d).max():.1e}")

# %% [markdown]
# ## And `torch.nn.LSTM`
#
# PyTorch's state dict has the same keys and shapes, so the same arrays load into it as they are.

# %%
try:
    import torch
except ImportError:
    torch = None
    print("PyTorch is not installed: skipping the comparison with torch.nn.LSTM (pip install torch)")

if torch is not None:
    tl = torch.nn.LSTM(I, H).double()
    tl.load_state_dict({k: torch.from_numpy(v) for k, v in lstm.state_dict().items()})
    tx = torch.from_numpy(x).requires_grad_()
    th, tc0 = torch.from_numpy(h0[None]).requires_grad_(), torch.from_numpy(c0[None]).requires_grad_()
    tout, _ = tl(tx, (th, tc0))
    (tout * torch.from_numpy(R)).sum().backward()
    print("forward    max |difference|:", np.abs(tout.detach().numpy() - hs).max())
    print("d x        max |difference|:", np.abs(tx.grad.numpy() - dx).max())
    print("d h0, d c0 max |difference|:", max(np.abs(th.grad.numpy()[0] - dh0).max(),
                                              np.abs(tc0.grad.numpy()[0] - dc0).max()))
    for name, d in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), dweights):
        print(f"{name:10s} max |difference|: {np.abs(getattr(tl, name + '_l0').grad.numpy() - d).max():.1e}")

# %% [markdown]
# ## Inside a trained LSTM: an image read row by row
#
# `npnet.data.Rows` turns a (1, 28, 28) image into 28 steps of 28 pixels. An LSTM with 32 hidden
# units reads the rows and a `Linear` classifies its last hidden state (the zoo's `lstm-rows`
# model, `RecurrentClassifier`). We train it briefly in float32, then run our own
# `lstm_forward` with its weights on one test image to see what the gates do.

# %%
data = load_fashion_mnist_mini()
rows = Rows()
norm = Normalize.for_dataset("fashion-mnist")
x_train, y_train = rows(norm(data.x_train)), data.y_train  # (N, 28, 28) float32: (N, T, F)
x_test, y_test = rows(norm(data.x_test)), data.y_test
n_train, epochs = (2000, 1) if QUICK else (10000, 4)

model = RecurrentClassifier("lstm", 28, 32, 10, rng=0)
criterion, opt = losses.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=3e-3)
start, history = time.perf_counter(), []
for epoch in range(epochs):
    for xb, yb in DataLoader(x_train[:n_train], y_train[:n_train], 64, seed=epoch):
        history.append(train_step(model, criterion, opt, xb, yb)[0])
accuracy = (model.eval()(x_test).argmax(axis=1) == y_test).mean()
print(f"{len(history)} steps in {time.perf_counter() - start:.1f} s, test accuracy {accuracy:.3f}")

# %%
r = model.rnn
trained = [getattr(r, f"{n}_l0").data for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
k = int(np.flatnonzero(y_test == 9)[0])  # an ankle boot
seq = x_test[k][:, None, :]  # (T=28, N=1, F=28)
z = np.zeros((1, 32), np.float32)
hs_k, (_, _, _, _, cs_k, gates_k, _, _) = lstm_forward(seq, z, z, *trained)
out_k, _ = r(x_test[k:k + 1])
print("from scratch vs the trained nn.LSTM, max |difference|:", np.abs(hs_k[:, 0] - out_k[0]).max())

fig = Figure(figsize=(12, 3.4), layout="constrained")
axes = fig.subplots(1, 5)
axes[0].imshow(data.x_test[k, 0], cmap="gray")
axes[0].set_title("input: 28 rows")
axes[0].set_ylabel("step t (row)")
for ax, (j, name) in zip(axes[1:], enumerate(["input gate i", "forget gate f", "candidate g", "output gate o"])):
    lo = -1 if name.startswith("candidate") else 0
    im = ax.imshow(gates_k[:, 0, j * 32:(j + 1) * 32], aspect="auto", cmap="viridis", vmin=lo, vmax=1)
    ax.set_title(name)
    ax.set_xlabel("hidden unit")
    fig.colorbar(im, ax=ax, shrink=0.8)
fig.suptitle("Gate activations of the trained LSTM, one row per time step")
show(fig)

# %% [markdown]
# The gates change where the image does: the blank rows at the top and bottom give nearly
# constant gates, the rows with the boot's outline switch units on and off. Units whose forget
# gate stays near 1 keep what they saw many rows earlier.
#
# ## How far back does the gradient reach?
#
# The classifier reads only the last hidden state. Backpropagating the loss of one image through
# our `lstm_backward` gives $\partial L / \partial x_t$ for every row $t$: its norm says how much each
# row can still move the prediction. Rows read long ago reach the loss only through many forget
# gates (each $< 1$), so their gradient shrinks — much less steeply than through a plain RNN's
# repeated $\tanh$ and matrix product, which we show beside it with the same size and training.

# %%
def last_state_grad_norms(model, xk, yk):
    """||d loss / d x_t|| for each step t of one sequence xk (T, F), via the model's own backward."""
    model.eval()
    criterion(model(xk[None]), np.array([yk]))
    model.zero_grad()
    dx = model.backward(criterion.backward())  # (1, T, F)
    return np.linalg.norm(dx[0], axis=1)


rnn_model = RecurrentClassifier("rnn", 28, 32, 10, rng=0)
opt_rnn = optim.Adam(rnn_model.parameters(), lr=3e-3)
for epoch in range(epochs):
    for xb, yb in DataLoader(x_train[:n_train], y_train[:n_train], 64, seed=epoch):
        train_step(rnn_model.train(), criterion, opt_rnn, xb, yb)

# our BPTT on the LSTM: only the last step's h gets a gradient, from the classifier
model.eval()
logits = model(x_test[k:k + 1])
criterion(logits, y_test[k:k + 1])
dlast = criterion.backward() @ model.fc.weight.data  # (1, H): d loss / d h_T
_, cache_k = lstm_forward(seq, z, z, *trained)
dx_ours = lstm_backward(np.zeros_like(hs_k), dlast, np.zeros_like(dlast), cache_k)[0][:, 0]  # (T, F)
lstm_norms = np.linalg.norm(dx_ours, axis=1)
print("our BPTT vs the model's backward, max |difference| of the norms:",
      np.abs(lstm_norms - last_state_grad_norms(model, x_test[k], y_test[k])).max())

fig = Figure(figsize=(7, 3.6), layout="constrained")
ax = fig.add_subplot()
ids = np.arange(64)  # the first 64 test images
mean_lstm = np.mean([last_state_grad_norms(model, x_test[j], y_test[j]) for j in ids], axis=0)
mean_rnn = np.mean([last_state_grad_norms(rnn_model, x_test[j], y_test[j]) for j in ids], axis=0)
ax.semilogy(mean_lstm / mean_lstm[-1], "o-", label="LSTM")
ax.semilogy(mean_rnn / mean_rnn[-1], "s-", label="RNN (tanh)")
ax.set_xlabel("time step t (image row)")
ax.set_ylabel("||dL/dx_t||, relative to the last step")
ax.set_title(f"Gradient reaching each row (mean of {len(ids)} test images)")
ax.legend()
show(fig)
