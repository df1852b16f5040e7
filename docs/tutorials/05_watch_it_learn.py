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
# # Watch it learn: hooks and LayerStats
#
# A network that trains badly usually says so from inside long before its accuracy does:
# activations that collapse, ReLUs that never fire again, updates far too large or too small for
# the weights. npnet has PyTorch's forward and backward hooks, and `npnet.train.LayerStats`, a
# Trainer callback built on them that records per-layer statistics as the network trains.

# %%
import io
import os
import tempfile
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets

import numpy as np
from IPython.display import Image, display

import npnet
from npnet import losses, nn, optim, plots
from npnet.data import DataLoader, Normalize, load_fashion_mnist_mini
from npnet.train import LayerStats, NonFiniteLossError, Trainer

QUICK = os.environ.get("NPNET_TUTORIAL_QUICK") == "1"  # the test suite's setting: seconds, not minutes


def show(fig):
    """Displays a matplotlib Figure as a PNG (npnet.plots draws without pyplot)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    display(Image(buf.getvalue()))

# %% [markdown]
# ## Hooks
#
# `register_forward_hook(hook)` calls `hook(module, (x,), out)` after every forward of that module,
# `register_full_backward_hook(hook)` calls `hook(module, (dx,), (dout,))` after every backward.
# Both return a handle whose `remove()` unregisters the hook. Here a forward hook records the share
# of zeros each ReLU outputs for one batch.

# %%
data = load_fashion_mnist_mini()
norm = Normalize.for_dataset("fashion-mnist")
x, y = norm(data.x_train), data.y_train
if QUICK:
    x, y = x[:640], y[:640]


def mlp(hidden_bias=None):
    """Flatten -> 3 x [Linear(., 256) -> ReLU] -> Linear(256, 10)."""
    npnet.manual_seed(0)
    layers, width = [nn.Flatten()], 784
    for _ in range(3):
        linear = nn.Linear(width, 256)
        if hidden_bias is not None:
            linear.bias.data[:] = hidden_bias
        layers += [linear, nn.ReLU()]
        width = 256
    return nn.Sequential(*layers, nn.Linear(width, 10))


model = mlp()
zeros = {}
handles = [m.register_forward_hook(lambda m, inp, out, name=name: zeros.__setitem__(name, np.mean(out == 0)))
           for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
model(x[:256])
for handle in handles:
    handle.remove()
print({name: round(float(z), 3) for name, z in zeros.items()})

# %% [markdown]
# ## LayerStats
#
# `LayerStats(every=k)` samples every `k` steps each watched layer's output mean and standard
# deviation, the share of zeros of a ReLU, the norm of the gradient it passes back, and for every
# parameter the **update ratio** `||w_after - w_before|| / ||w_before||` of one optimizer step
# (CS231n's rule of thumb: near 1e-3). After each epoch it records the share of **dead** ReLU
# units: zero for every sample of the epoch, so no gradient reaches their weights and nothing can
# revive them.
#
# Three runs of the same MLP: a sane learning rate, one far too high, and a sane rate with every
# hidden bias started at -3 (almost every unit starts dead). A rate this high can also blow the
# activations up to inf; the Trainer then stops with `NonFiniteLossError`, and what LayerStats
# recorded until then is kept.

# %%
EPOCHS = 1 if QUICK else 6
RUNS = {"lr 0.02": (0.02, None), "lr 0.3 (too high)": (0.3, None), "lr 0.02, bias -3": (0.02, -3.0)}
relus = [name for name, m in mlp().named_modules() if isinstance(m, nn.ReLU)]
stats = {}
for label, (lr, bias) in RUNS.items():
    model = mlp(bias)
    watch = LayerStats(every=5, layers=relus + ["7"])  # the ReLUs and the last Linear
    trainer = Trainer(model, losses.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=lr, momentum=0.9),
                      callbacks=[watch], progress=False)
    try:
        history = trainer.fit(DataLoader(x, y, batch_size=128, seed=0), epochs=EPOCHS)
        outcome = f"train accuracy {history.epochs[-1]['train_accuracy']:.3f}"
    except NonFiniteLossError as err:  # the rate can be high enough to overflow to inf / NaN
        watch.remove()  # fit stopped early: unhook LayerStats by hand
        outcome = f"diverged (NaN) in epoch {err.epoch}, step {err.step}"
    stats[label] = watch.stats
    dead = [round(watch.stats[name]["dead_fraction"][-1][1], 2) for name in relus
            if "dead_fraction" in watch.stats.get(name, {})]
    print(f"{label:18s} {outcome}; dead units per layer at the last epoch's end: {dead or 'none recorded'}")

# %% [markdown]
# Everything the sane run recorded, one panel per statistic (update ratios per parameter):

# %%
show(plots.plot_layer_stats(stats["lr 0.02"], title="lr 0.02"))

# %% [markdown]
# ## TensorBoard
#
# `LayerStats(tensorboard=folder)` also writes the scalars and a histogram of every output as
# TensorBoard events; it needs the optional `tensorboardX` (`pip install -e ".[tensorboard]"`).

# %%
try:
    import tensorboardX  # noqa: F401
except ImportError:
    print("tensorboardX is not installed: skipping the TensorBoard export")
else:
    with tempfile.TemporaryDirectory() as folder:
        model = mlp()
        watch = LayerStats(every=5, tensorboard=folder)
        Trainer(model, losses.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.02),
                callbacks=[watch], progress=False).fit(DataLoader(x[:256], y[:256], 128, seed=0))
        print("event files:", [f for _, _, files in os.walk(folder) for f in files])

# %% [markdown]
# ## The picture
#
# Dead ReLU units per layer after each epoch, the three runs side by side. The bias of -3 starts
# nearly every unit dead, and a dead unit gets no gradient, so it never comes back. The too-high
# rate needs a few hundred steps to kill units (RESULTS.md's 10-epoch run of
# `examples/dead_relu.py` ends with 100 % of the last hidden layer dead), or it diverges first:
# the same lr 0.3 on this notebook's full setting (all 10,000 images) reached NaN within the first
# epoch when we ran it, and a run that stops inside its first epoch records no dead units at all.
# The quick setting's single epoch shows only the start.

# %%
show(plots.plot_statistic_by_run(stats, "dead_fraction", title="Dead ReLU units",
                                 ylabel="fraction of dead units"))
