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
# # From npnet to PyTorch and back
#
# npnet's state dicts use PyTorch's keys, shapes and dtypes, and `npnet.save` / `npnet.load` write
# and read **safetensors** files, the format PyTorch and Hugging Face users exchange (and, unlike
# a pickle, one that cannot run code when it is opened). So a model moves between the two
# libraries as a file. We train a small CNN in npnet, load it into the same architecture in
# PyTorch, bring PyTorch weights back, and fine-tune only the last layer with the rest frozen.

# %%
import io
import os
import tempfile
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets

import numpy as np
from IPython.display import Image, display
from matplotlib.figure import Figure

import npnet
from npnet import losses, optim
from npnet.data import DataLoader, Normalize, load_fashion_mnist_mini
from npnet.models import build_model
from npnet.train import Trainer

QUICK = os.environ.get("NPNET_TUTORIAL_QUICK") == "1"  # the test suite's setting: seconds, not minutes
folder = tempfile.mkdtemp(prefix="npnet-tutorial-")


def show(fig):
    """Displays a matplotlib Figure as a PNG (npnet.plots draws without pyplot)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    display(Image(buf.getvalue()))

# %% [markdown]
# ## Train, save, load
#
# `model.state_dict()` is an ordered `str -> numpy array` dict with PyTorch's keys: the children
# of a `Sequential` are `"0"`, `"1"`, ..., `Conv2d.weight` is `(out, in, kh, kw)`, `Linear.weight`
# is `(out, in)`.

# %%
data = load_fashion_mnist_mini()
norm = Normalize.for_dataset("fashion-mnist")
n_train = 256 if QUICK else 9000
x, y = norm(data.x_train[:n_train]), data.y_train[:n_train]
x_test, y_test = norm(data.x_test), data.y_test

model = build_model("cnn-small", (1, 28, 28), 10, rng=0)
trainer = Trainer(model, losses.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                  progress=False)
trainer.fit(DataLoader(x, y, 64, seed=0), epochs=1 if QUICK else 3)
for key, value in list(model.state_dict().items())[:4]:
    print(f"{key:10s} {str(value.shape):16s} {value.dtype}")

path = npnet.save(model.state_dict(), os.path.join(folder, "cnn_small.safetensors"))
copy = build_model("cnn-small", (1, 28, 28), 10, rng=1)  # other initial weights
copy.load_state_dict(npnet.load(path))
ours = trainer.predict(x_test[:200])
print("npnet -> file -> npnet, max |logit difference|:", np.abs(copy.eval()(x_test[:200]) - ours).max())

# %% [markdown]
# `load_state_dict` follows PyTorch's `strict` semantics, and a load that fails changes nothing:

# %%
broken = dict(npnet.load(path))
del broken["12.bias"]
try:
    copy.load_state_dict(broken)
except ValueError as err:
    print("ValueError:", err)
print("strict=False:", copy.load_state_dict(broken, strict=False))

# %% [markdown]
# ## Into PyTorch and back
#
# The same architecture written in PyTorch loads the file with `safetensors.torch.load_file`; the
# logits agree to float32 rounding. The other way, `safetensors.torch.save_file` writes what
# `npnet.load` reads.

# %%
try:
    import torch
    from safetensors.torch import load_file, save_file
except ImportError:
    torch = None
    print("PyTorch is not installed: skipping the round trip through PyTorch (pip install torch)")

torch_logits = None
if torch is not None:
    tnn = torch.nn
    torch_model = tnn.Sequential(
        tnn.Conv2d(1, 32, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(32, 64, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(64, 64, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Flatten(), tnn.Linear(576, 64), tnn.Sigmoid(), tnn.Linear(64, 10)).eval()
    torch_model.load_state_dict(load_file(path))
    with torch.no_grad():
        torch_logits = torch_model(torch.from_numpy(x_test[:200])).numpy()
    print("npnet vs PyTorch, max |logit difference|:", np.abs(torch_logits - ours).max())

    with torch.no_grad():
        torch_model[-1].weight.mul_(0.5)  # change something on the PyTorch side
    back = os.path.join(folder, "from_torch.safetensors")
    save_file({k: v.contiguous() for k, v in torch_model.state_dict().items()}, back)
    copy.load_state_dict(npnet.load(back))
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x_test[:200])).numpy()
    print("PyTorch -> file -> npnet, max |logit difference|:", np.abs(copy.eval()(x_test[:200]) - expected).max())

# %% [markdown]
# ## Freezing: fine-tune the last layer only
#
# As in PyTorch, `module.requires_grad_(False)` (or `p.requires_grad = False`) freezes: a frozen
# parameter gets no gradient, no update, no weight decay and no optimizer state. Here everything
# but the last `Linear` is frozen and the network is fine-tuned with Adam on the last 1,000
# training images (256 in the quick setting), which the first training did not see.

# %%
tuned = build_model("cnn-small", (1, 28, 28), 10, rng=0)
tuned.load_state_dict(npnet.load(path))
before = {k: v.copy() for k, v in tuned.state_dict().items()}
tuned.requires_grad_(False)
tuned[12].requires_grad_(True)
print("trainable:", [name for name, p in tuned.named_parameters() if p.requires_grad])

n_new = 256 if QUICK else 1000
x_new, y_new = norm(data.x_train[-n_new:]), data.y_train[-n_new:]
Trainer(tuned, losses.CrossEntropyLoss(), optim.Adam(tuned.parameters(), lr=1e-3), progress=False).fit(
    DataLoader(x_new, y_new, 64, seed=0), epochs=1 if QUICK else 3)
change = {k: float(np.linalg.norm(v - before[k]) / (np.linalg.norm(before[k]) or 1.0))
          for k, v in tuned.state_dict().items() if k.endswith(("weight", "bias"))}
for k, c in change.items():
    print(f"{k:10s} relative change {c:.2e}")

# %% [markdown]
# ## The picture
#
# Left: how much each parameter moved during fine-tuning: exactly nothing for the frozen ones.
# Right: npnet's logits against PyTorch's for the same weights and images (when PyTorch is
# installed), on the diagonal.

# %%
fig = Figure(figsize=(11, 4), layout="constrained")
ax_c, ax_t = fig.subplots(1, 2)
keys = list(change)
ax_c.barh(keys, [change[k] for k in keys], color=["#27a" if k.startswith("12.") else "#bbb" for k in keys])
ax_c.invert_yaxis()
ax_c.set_xlabel("||w_after - w_before|| / ||w_before||")
ax_c.set_title("Fine-tuning with all but layer 12 frozen")
if torch_logits is not None:
    ax_t.scatter(ours.ravel(), torch_logits.ravel(), s=4, alpha=0.5)
    lims = [ours.min(), ours.max()]
    ax_t.plot(lims, lims, "k:", lw=1)
    ax_t.set_xlabel("npnet logit")
    ax_t.set_ylabel("PyTorch logit")
    ax_t.set_title("Same weights, same images")
else:
    ax_t.text(0.5, 0.5, "PyTorch not installed", ha="center", va="center")
    ax_t.set_axis_off()
show(fig)
