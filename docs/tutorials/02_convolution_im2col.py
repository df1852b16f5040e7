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
# # Convolution as a matrix, and im2col
#
# A convolution is a linear map, so for one input it *is* a matrix: `y = A x`. Writing `A` out
# shows what a convolution does (the same few weights, shifted along diagonals) and why its
# backward pass is the transpose. No library computes it that way, though: `A` is almost all
# zeros. npnet, like Caffe and early PyTorch, unfolds the input windows into the columns of a
# matrix (**im2col**) and then does **a dense matrix product** (GEMM) per image, which BLAS runs near
# the peak speed of the CPU. The unfolding is a Numba kernel that sits beside its plain NumPy
# twin, `im2col_ref`, with the same signature; a test holds them equal.

# %%
import io
import os
import time
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets

import numpy as np
from IPython.display import Image, display
from matplotlib.figure import Figure

from npnet import kernels, nn
from npnet.functional import conv2d_matrix

QUICK = os.environ.get("NPNET_TUTORIAL_QUICK") == "1"  # the test suite's setting: seconds, not minutes


def show(fig):
    """Displays a matplotlib Figure as a PNG (npnet.plots draws without pyplot)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    display(Image(buf.getvalue()))

# %% [markdown]
# ## The matrix of a convolution
#
# `conv2d_matrix(weight, (C, H, W), stride, padding)` builds `A` with one row per output value and
# one column per input value. We check `y = A x + b` against `Conv2d`, and `dx = A^T dy` against
# its `backward`.

# %%
rng = np.random.default_rng(0)
conv = nn.Conv2d(1, 2, 3, stride=1, padding=1, rng=rng, dtype=np.float64)
x = rng.standard_normal((1, 1, 6, 6))          # (N, C, H, W)
y = conv(x)                                     # (1, 2, 6, 6)
A = conv2d_matrix(conv.weight.data, x.shape[1:], stride=1, padding=1)  # (2*6*6, 1*6*6)
b = np.repeat(conv.bias.data, 36)
print("A:", A.shape, f"{100 * np.mean(A != 0):.0f}% non-zero")
print("forward  |y - (A x + b)|  :", np.abs(y.ravel() - (A @ x.ravel() + b)).max())
dy = rng.standard_normal(y.shape)
print("backward |dx - A^T dy|    :", np.abs(conv.backward(dy).ravel() - A.T @ dy.ravel()).max())

# %% [markdown]
# ## im2col: the windows as columns
#
# `im2col(x, kh, kw, sh, sw, ph, pw)` turns `x` of shape `(N, C, H, W)` into `cols` of shape
# `(N, C*kh*kw, OH*OW)`: column `p` holds the window that output pixel `p` sees. The convolution
# is then `W.reshape(O, C*kh*kw) @ cols[n]` for every image `n`, a GEMM.

# %%
cols = kernels.im2col(x, 3, 3, 1, 1, 1, 1)     # (1, 9, 36)
w_mat = conv.weight.data.reshape(2, -1)         # (O, C*kh*kw) = (2, 9)
y_gemm = (w_mat @ cols[0] + conv.bias.data[:, None]).reshape(y.shape)
print("cols:", cols.shape, " |y - GEMM| :", np.abs(y - y_gemm).max())
print("Numba im2col == NumPy im2col_ref:", np.array_equal(cols, kernels.im2col_ref(x, 3, 3, 1, 1, 1, 1)))

# %% [markdown]
# The NumPy twin is short enough to read in full: one strided slice of the padded input per
# kernel offset `(i, j)`.

# %%
import inspect

print(inspect.getsource(kernels.im2col_ref))

# %% [markdown]
# ## Why the fast one is fast
#
# Three ways to compute the same float32 convolution of a batch:
#
# 1. **loops**: CS231n's naive convolution, a Python loop over images, filters and output pixels,
#    each a dot product of one window with one filter;
# 2. **im2col_ref + GEMM**: the NumPy unfolding, then one matrix product per image;
# 3. **npnet's kernel** (`kernels.conv2d_forward`): the Numba im2col, one GEMM per image, images
#    spread over the cores with `prange`, buffers reused between calls.
#
# The timings are on whatever machine runs this notebook (the one that built these docs was
# shared with other jobs), so read the ratios, not the milliseconds. On tiny shapes the kernel's
# fixed cost (starting the parallel loop over the images) dominates and NumPy can win; from a
# few images of 16 channels on it is far ahead.

# %%
N, C, O, H = (8, 8, 16, 16) if QUICK else (16, 16, 32, 32)
xb = rng.standard_normal((N, C, H, H)).astype(np.float32)
wb = (rng.standard_normal((O, C, 3, 3)) * 0.1).astype(np.float32)
bb = np.zeros(O, np.float32)


def conv_loops(x, w):
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.empty((x.shape[0], w.shape[0], x.shape[2], x.shape[3]), x.dtype)
    for n in range(x.shape[0]):
        for o in range(w.shape[0]):
            for i in range(x.shape[2]):
                for j in range(x.shape[3]):
                    out[n, o, i, j] = np.sum(xp[n, :, i:i + 3, j:j + 3] * w[o])  # (C, 3, 3) window
    return out


def conv_im2col_ref(x, w):
    cols = kernels.im2col_ref(x, 3, 3, 1, 1, 1, 1)                 # (N, C*9, H*W)
    return (w.reshape(len(w), -1) @ cols).reshape(len(x), len(w), x.shape[2], x.shape[3])


def conv_npnet(x, w):
    return kernels.conv2d_forward(x, w, bb, 1, 1, 1, 1)


def best_time(f, repeat):
    """The fastest of ``repeat`` calls: the least disturbed by other work on the machine."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f(xb, wb)
        times.append(time.perf_counter() - t0)
    return min(times)


reference = conv_loops(xb, wb)
timings = {}
for name, f in [("loops", conv_loops), ("im2col_ref + GEMM", conv_im2col_ref), ("npnet kernel", conv_npnet)]:
    assert np.allclose(f(xb, wb), reference, atol=1e-4), name  # also compiles / warms up
    timings[name] = best_time(f, 1 if name == "loops" else 5)
    print(f"{name:18s} {1e3 * timings[name]:8.2f} ms")

# %% [markdown]
# ## The picture
#
# Left, the matrix `A` of our 3x3 convolution of a 6x6 image: each block row is one output
# channel, and inside it the nine weights repeat along shifted diagonals (the gaps are the zero
# padding at the image's edges). Right, the timings above.

# %%
fig = Figure(figsize=(11, 4), layout="constrained")
ax_a, ax_t = fig.subplots(1, 2, width_ratios=[1, 1.2])
lim = np.abs(A).max()
im = ax_a.imshow(A, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
ax_a.set_title(f"A = conv2d_matrix(...), {A.shape[0]} x {A.shape[1]}")
ax_a.set_xlabel("input pixel (c, h, w)")
ax_a.set_ylabel("output value (o, oh, ow)")
fig.colorbar(im, ax=ax_a, shrink=0.8)
names = list(timings)
ax_t.barh(names, [1e3 * timings[n] for n in names], color=["#bbb", "#8ab", "#27a"])
ax_t.set_xscale("log")
ax_t.invert_yaxis()
ax_t.set_xlabel("ms per forward pass (log scale)")
ax_t.set_title(f"float32 convolution of ({N}, {C}, {H}, {H}) by ({O}, {C}, 3, 3)")
for i, n in enumerate(names):
    ax_t.text(1e3 * timings[n], i, f"  x{timings['loops'] / timings[n]:.0f}" if i else "", va="center")
show(fig)
