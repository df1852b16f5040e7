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
# # Attention from scratch
#
# Attention lets every position of a sequence read from every other position, with weights it
# computes from the data itself. We write scaled dot-product attention, its masks and multiple
# heads in NumPy, check that they are what `npnet.nn.MultiheadAttention` (and PyTorch) compute,
# and then train a one-layer attention-only model on a task it can only solve by looking back a
# fixed number of steps, and look at where it learnt to look.
#
# The quick setting (`NPNET_TUTORIAL_QUICK=1`, used by the test suite) trains for fewer steps; the
# task is small enough that the pattern is already visible there.

# %%
import io
import os
import time

import numpy as np
from IPython.display import Image, display
from matplotlib.figure import Figure

from npnet import losses, nn, optim
from npnet.functional import softmax
from npnet.train import train_step

QUICK = os.environ.get("NPNET_TUTORIAL_QUICK") == "1"  # the test suite's setting: seconds, not minutes


def show(fig):
    """Displays a matplotlib Figure as a PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    display(Image(buf.getvalue()))

# %% [markdown]
# ## Scores, softmax, weighted sum
#
# Each of L queries is compared with each of S keys by a dot product; a softmax over the keys
# turns a query's scores into weights that sum to 1, and the output is the weighted sum of the
# values:
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{E}} + M\right) V$$
#
# The $1/\sqrt{E}$ keeps the scores' spread independent of the width E: the dot product of two
# random E-vectors has standard deviation $\sqrt{E}$, and without the scale a wide model's softmax
# would start out nearly one-hot, with vanishing gradients. $M$ is an additive mask: 0 where a
# query may look, $-\infty$ where not, so that $e^{-\infty} = 0$ weight.

# %%
def attention(q, k, v, mask=None):
    """q (..., L, E), k (..., S, E), v (..., S, Ev), mask broadcastable to (..., L, S)
    -> out (..., L, Ev), weights (..., L, S)."""
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])  # (..., L, S)
    if mask is not None:
        scores = scores + mask
    weights = softmax(scores, axis=-1)  # each row sums to 1
    return weights @ v, weights


rng = np.random.default_rng(0)
N, L, E = 2, 6, 8
q, k, v = (rng.normal(size=(N, L, E)) for _ in range(3))  # (N, L, E), float64
out, w = attention(q, k, v)
print("out", out.shape, " weights", w.shape, " rows sum to", w.sum(axis=-1).min(), "...", w.sum(axis=-1).max())
ref = nn.scaled_dot_product_attention(q, k, v)
print("from scratch vs nn.scaled_dot_product_attention, max |difference|:", np.abs(out - ref).max())

# %% [markdown]
# ## Masks
#
# A **causal** mask lets position $t$ see positions $\le t$ only, so that a model predicting the
# next token cannot read it. A **padding** mask hides the keys that are only filler, in a batch
# where sequences of different lengths are padded to one length. Both are added to the scores; a
# row may combine them. Here the second sequence has 4 real tokens and 2 of padding. In the
# figure, dark squares are the (query, key) pairs that may attend.

# %%
causal = nn.causal_mask(L, dtype=np.float64)  # (L, L): 0 on and below the diagonal, -inf above
lengths = np.array([6, 4])
padding = np.where(np.arange(L)[None, :] >= lengths[:, None], -np.inf, 0.0)  # (N, S): -inf on padded keys
mask = causal[None] + padding[:, None, :]  # (N, L, S)
out_m, w_m = attention(q, k, v, mask)
allowed = np.isfinite(mask)  # scaled_dot_product_attention's boolean convention: True = may look
ref = nn.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
print("masked, from scratch vs nn.scaled_dot_product_attention, max |difference|:", np.abs(out_m - ref).max())

fig = Figure(figsize=(12, 3.2), layout="constrained")
axes = fig.subplots(1, 4)
panels = [(np.isfinite(causal), "causal: may look"), (np.isfinite(padding[1])[None].repeat(L, 0),
          "padding (sequence 2): may look"), (allowed[1], "both (sequence 2)"), (w_m[1], "weights (sequence 2)")]
for ax, (m, title) in zip(axes, panels):
    im = ax.imshow(m.astype(float), cmap="Blues" if m.dtype == bool else "viridis", vmin=0, vmax=1)
    ax.set_title(title)
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
fig.colorbar(im, ax=axes[-1], shrink=0.8)
show(fig)

# %% [markdown]
# Two things npnet shares with PyTorch here, and that are easy to get backwards:
# `scaled_dot_product_attention`'s boolean mask is True where a query **may** attend, while
# `nn.MultiheadAttention`'s `attn_mask` and `key_padding_mask` are True where it may **not**.
# Float masks are added in both.
#
# ## Multiple heads
#
# One attention computes one set of weights per query. Several heads let a layer look at several
# places at once: project the E features to q, k, v, **split** them into h heads of d = E/h
# features, attend in each head separately, **merge** the heads back side by side, and mix them
# with an output projection. `nn.MultiheadAttention` keeps PyTorch's parameters: `in_proj_weight`
# (3E, E) holds the q, k, v projections stacked, `out_proj` is a `Linear(E, E)`.

# %%
def split(a, h):
    """(N, L, E) -> (N, h, L, E/h)."""
    N, L, E = a.shape
    return a.reshape(N, L, h, E // h).transpose(0, 2, 1, 3)


def merge(a):
    """(N, h, L, d) -> (N, L, h*d)."""
    N, h, L, d = a.shape
    return a.transpose(0, 2, 1, 3).reshape(N, L, h * d)


def multihead(x, w_in, b_in, w_out, b_out, h, mask=None):
    """Self-attention of x (N, L, E) with PyTorch's parameters -> (N, L, E), weights (N, h, L, L)."""
    qkv = x @ w_in.T + b_in  # (N, L, 3E)
    q, k, v = (split(a, h) for a in np.split(qkv, 3, axis=-1))  # (N, h, L, d) each
    o, weights = attention(q, k, v, mask)  # mask (N, 1, L, L) broadcasts over the heads
    return merge(o) @ w_out.T + b_out, weights


heads = 2
mha = nn.MultiheadAttention(E, heads, batch_first=True, rng=0).astype(np.float64)
x = rng.normal(size=(N, L, E))  # (N, L, E)
params = (mha.in_proj_weight.data, mha.in_proj_bias.data, mha.out_proj.weight.data, mha.out_proj.bias.data)
ours, ours_w = multihead(x, *params, heads, mask[:, None])
theirs, theirs_w = mha(x, x, x, attn_mask=~np.isfinite(causal), key_padding_mask=lengths[:, None] <= np.arange(L),
                       average_attn_weights=False)
print("from scratch vs nn.MultiheadAttention, max |output difference|:", np.abs(ours - theirs).max(),
      " weights:", np.abs(ours_w - theirs_w).max())

# %% [markdown]
# And PyTorch, with the same state dict (the keys and shapes are PyTorch's), forward and the
# gradient of the input:

# %%
try:
    import torch
except ImportError:
    torch = None
    print("PyTorch is not installed: skipping the comparison with torch.nn.MultiheadAttention (pip install torch)")

if torch is not None:
    tm = torch.nn.MultiheadAttention(E, heads, batch_first=True).double()
    tm.load_state_dict({key: torch.from_numpy(a) for key, a in mha.state_dict().items()})
    tx = torch.from_numpy(x).requires_grad_()
    t_out, t_w = tm(tx, tx, tx, attn_mask=torch.from_numpy(~np.isfinite(causal)),
                    key_padding_mask=torch.from_numpy(lengths[:, None] <= np.arange(L)),
                    average_attn_weights=False)
    dout = rng.normal(size=ours.shape)
    (t_out * torch.from_numpy(dout)).sum().backward()
    mha.zero_grad()
    mha(x, x, x, attn_mask=~np.isfinite(causal), key_padding_mask=lengths[:, None] <= np.arange(L))
    dx = sum(mha.backward(dout))  # self-attention: x fed query, key and value
    print("npnet vs torch, max |output difference|:", np.abs(t_out.detach().numpy() - ours).max(),
          " weights:", np.abs(t_w.detach().numpy() - ours_w).max())
    print("npnet vs torch, max |d x difference|:", np.abs(tx.grad.numpy() - dx).max(),
          " d in_proj_weight:", np.abs(tm.in_proj_weight.grad.numpy() - mha.in_proj_weight.grad).max())

# %% [markdown]
# ## A task that needs attention: repeat the token seen K steps ago
#
# The input is a sequence of random tokens; the target at position $t$ is the token at
# $t - K$ (positions $t < K$ have no target: label -100, `CrossEntropyLoss`'s `ignore_index`).
# No single token says anything about its own target, so a model that only looks at the current
# position stays at chance, $\ln V$. The model: token `Embedding` plus the sinusoidal
# `PositionalEncoding` (the only way a query can know *where* it is), one causal
# `MultiheadAttention`, and a `Linear` to the V logits — no feed-forward, no residual, so
# whatever it predicts must have come through the attention weights.

# %%
V, T, K, D = 8, 16, 3, 32


def batch(n, rng):
    ids = rng.integers(0, V, size=(n, T))  # (n, T)
    targets = np.full((n, T), -100)
    targets[:, K:] = ids[:, :-K]  # the token K steps back
    return ids, targets


class LookBack(nn.Module):
    """Embedding + positions -> causal self-attention -> Linear. ids (N, T) -> logits (N, V, T)."""

    def __init__(self, rng):
        super().__init__()
        self.embedding = nn.Embedding(V, D, rng=rng)
        self.pos = nn.PositionalEncoding(D, dropout=0.0, max_len=T, batch_first=True)
        self.attn = nn.MultiheadAttention(D, 1, batch_first=True, rng=rng)
        self.fc = nn.Linear(D, V, rng=rng)

    def forward(self, ids):
        N, T_ = ids.shape
        h = self.pos(self.embedding(ids))  # (N, T, D)
        a, self.weights = self.attn(h, h, h, attn_mask=nn.causal_mask(T_, dtype=h.dtype))  # (N, T, D), (N, T, T)
        self.cache = (N, T_)
        return self.fc(a.reshape(N * T_, D)).reshape(N, T_, V).transpose(0, 2, 1)  # (N, V, T)

    def backward(self, dout, input_grad=True):
        N, T_ = self._saved()
        self.cache = None
        da = self.fc.backward(dout.transpose(0, 2, 1).reshape(N * T_, V)).reshape(N, T_, D)
        self.embedding.backward(self.pos.backward(sum(self.attn.backward(da))))
        return None  # integer ids have no gradient


model = LookBack(rng=0)
criterion, opt = losses.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2)
steps = 150 if QUICK else 800
data_rng, curve, start = np.random.default_rng(1), [], time.perf_counter()
for step in range(steps):
    curve.append(train_step(model, criterion, opt, *batch(64, data_rng))[0])
ids, targets = batch(512, np.random.default_rng(2))
logits = model.eval()(ids)
accuracy = (logits.argmax(axis=1) == targets)[:, K:].mean()
print(f"{steps} steps in {time.perf_counter() - start:.1f} s; held-out accuracy {accuracy:.3f} "
      f"(chance {1 / V:.3f}); loss {np.mean(curve[-20:]):.3f} (chance ln V = {np.log(V):.3f})")

# %%
fig = Figure(figsize=(12, 4), layout="constrained")
ax1, ax2 = fig.subplots(1, 2, width_ratios=[1.3, 1])
ax1.plot(curve, lw=0.8)
ax1.axhline(np.log(V), color="gray", ls="--", label="chance: ln V")
ax1.set_xlabel("step")
ax1.set_ylabel("training loss (cross-entropy)")
ax1.set_title("Learning to look back")
ax1.legend()
im = ax2.imshow(model.weights.mean(axis=0), cmap="viridis", vmin=0, vmax=1)  # (T, T), mean over 512 sequences
ax2.set_xlabel("key position (what it reads)")
ax2.set_ylabel("query position (where it predicts)")
ax2.set_title(f"Attention weights: the band is t - {K}")
fig.colorbar(im, ax=ax2, shrink=0.8)
show(fig)

# %% [markdown]
# The weights of position $t \ge K$ concentrate on the key $t - K$ (some weight leaks to the
# neighbour $t - K + 1$, not enough to change the argmax): the model found, from the positional
# encoding alone, the offset that the task hides in the labels. The first K rows have
# no target, and their weights were never trained to mean anything.
