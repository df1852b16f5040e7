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
# # A layer from scratch
#
# Every npnet layer is a class with a `forward` and a `backward` side by side. Here we write a new
# one, the SiLU activation `x * sigmoid(x)` (also called swish), check its backward pass with
# finite differences, train a small network with it and, when PyTorch is installed, compare it with
# `torch.nn.functional.silu`.
#
# The quick setting (`NPNET_TUTORIAL_QUICK=1`, used by the test suite) trains on fewer images for
# fewer epochs; the numbers below change, the code does not.

# %%
import io
import os
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets

import numpy as np
from IPython.display import Image, display

import npnet
from npnet import losses, nn, optim, plots
from npnet.data import DataLoader, Normalize, load_fashion_mnist_mini, train_val_split
from npnet.gradcheck import GradientCheckError, check_module
from npnet.train import Trainer

QUICK = os.environ.get("NPNET_TUTORIAL_QUICK") == "1"  # the test suite's setting: seconds, not minutes


def show(fig):
    """Displays a matplotlib Figure as a PNG (npnet.plots draws without pyplot)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    display(Image(buf.getvalue()))

# %% [markdown]
# ## The layer
#
# The contract (see the {doc}`../guide/contract` guide): `forward(x)` keeps in `self.cache` exactly
# what `backward` needs; `backward(dout)` returns `dx` and *adds* into the gradients of the layer's
# parameters (SiLU has none). With `s = sigmoid(x)`:
#
# $$\frac{d}{dx}\, x\,s(x) = s + x\,s\,(1 - s) = s\,(1 + x\,(1 - s)).$$

# %%
class SiLU(nn.Module):
    """x * sigmoid(x), elementwise. Shape: any -> same."""

    def forward(self, x):
        s = 1.0 / (1.0 + np.exp(-x))
        self.cache = (x, s)  # what backward reads, nothing more
        return x * s

    def backward(self, dout, input_grad=True):
        x, s = self.cache
        self.cache = None
        return dout * s * (1 + x * (1 - s))


x = np.linspace(-4, 4, 9, dtype=np.float32)[None]  # (1, 9)
print(SiLU()(x).round(3))

# %% [markdown]
# ## Checking the backward pass
#
# `npnet.gradcheck.check_module` converts the layer to float64, draws a random upstream gradient
# `dout` and compares `backward(dout)` with central differences of `sum(forward(x) * dout)`. It
# returns the relative error of every array and raises `GradientCheckError` when one is too large.
# For a layer with parameters it also runs a second backward without `zero_grad()` and checks that
# every `grad` doubled: `backward` must add into `p.grad` (`+=`), never assign it, or shared weights
# would silently get only one of their gradients.

# %%
rng = np.random.default_rng(0)
print(check_module(SiLU(), rng.standard_normal((4, 7))))

# %% [markdown]
# A backward pass with a mistake, here the `x * (1 - s)` term forgotten, is caught at once:

# %%
class BrokenSiLU(SiLU):
    def backward(self, dout, input_grad=True):
        x, s = self.cache
        return dout * s  # wrong: that is only the first term


try:
    check_module(BrokenSiLU(), rng.standard_normal((4, 7)))
except GradientCheckError as err:
    print(err)

# %% [markdown]
# ## Compared with PyTorch
#
# When PyTorch is installed, its autograd gives the same values and gradients to float32 rounding.

# %%
try:
    import torch
except ImportError:
    torch = None
    print("PyTorch is not installed: skipping the comparison (pip install torch to run it)")
if torch is not None:
    xt = rng.standard_normal((8, 5)).astype(np.float32)
    dout = rng.standard_normal((8, 5)).astype(np.float32)
    layer = SiLU()
    ours, our_dx = layer(xt), layer.backward(dout)
    tx = torch.tensor(xt, requires_grad=True)
    ty = torch.nn.functional.silu(tx)
    ty.backward(torch.tensor(dout))
    print("max |forward difference| ", np.abs(ours - ty.detach().numpy()).max())
    print("max |backward difference|", np.abs(our_dx - tx.grad.numpy()).max())

# %% [markdown]
# ## Using it in a network
#
# Our layer is a `Module` like any other: it goes into a `Sequential`, and the `Trainer` runs it.
# We train the same two-hidden-layer MLP on the Fashion-MNIST subset embedded in npnet, once with
# ReLU and once with SiLU, from the same initial weights.

# %%
data = load_fashion_mnist_mini()
norm = Normalize.for_dataset("fashion-mnist")
x_train, y_train, x_val, y_val = train_val_split(norm(data.x_train), data.y_train, 0.1, seed=0)
if QUICK:
    x_train, y_train, x_val, y_val = x_train[:500], y_train[:500], x_val[:300], y_val[:300]
EPOCHS = 1 if QUICK else 8
print(f"{len(x_train)} training and {len(x_val)} validation images, {EPOCHS} epoch(s)")


def mlp(activation):
    npnet.manual_seed(0)  # the same initial weights for both runs
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), activation(), nn.Linear(128, 128),
                         activation(), nn.Linear(128, 10))


histories = {}
for name, activation in [("ReLU", nn.ReLU), ("SiLU", SiLU)]:
    model = mlp(activation)
    trainer = Trainer(model, losses.CrossEntropyLoss(),
                      optim.SGD(model.parameters(), lr=0.05, momentum=0.9), progress=False)
    histories[name] = trainer.fit(DataLoader(x_train, y_train, 64, seed=0),
                                  DataLoader(x_val, y_val, 500, shuffle=False), epochs=EPOCHS)
    print(f"{name}: validation accuracy {histories[name].epochs[-1]['val_accuracy']:.3f}")

# %% [markdown]
# ## The picture
#
# Left: SiLU and its derivative, the function our `backward` multiplies `dout` by. Right: the two
# networks learning (training solid, validation dashed).

# %%
from matplotlib.figure import Figure

t = np.linspace(-5, 5, 201)[None]
layer = SiLU()
y = layer(t)
dy = layer.backward(np.ones_like(t))
fig = Figure(figsize=(6, 3.6), layout="constrained")
ax = fig.subplots()
ax.plot(t[0], y[0], label="SiLU(x)")
ax.plot(t[0], dy[0], label="d SiLU / dx (our backward)")
ax.plot(t[0], np.maximum(t[0], 0), ":", label="ReLU(x)")
ax.axhline(0, color="grey", lw=0.5)
ax.legend()
ax.set_xlabel("x")
show(fig)
show(plots.plot_learning_curves(histories, title="ReLU vs our SiLU"))
