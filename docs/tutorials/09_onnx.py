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
# # A CNN to ONNX and back
#
# ONNX is the file format the rest of the ecosystem reads: ONNX Runtime on a server, in a browser
# (onnxruntime-web) or on a phone, Netron to look at a graph. `npnet.onnx.export` writes an npnet
# model as such a file, and `npnet.onnx.load` builds an npnet model from one, with its weights,
# so a model from elsewhere can be trained on and stepped through with npnet's readable backward.
#
# Here: the CNN of tutorial 03 trained for a few epochs, written to ONNX, its graph drawn, run by
# ONNX Runtime, and read back into npnet, where it trains on. Needs `pip install -e ".[onnx]"
# onnxruntime` (the `docs` extra has both).

# %%
import io
import os
import tempfile
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets

import matplotlib
import numpy as np
import onnx
import onnxruntime
from IPython.display import Image, display
from matplotlib.figure import Figure

import npnet
from npnet import losses, metrics, optim, plots
from npnet.data import DataLoader, Normalize, load_fashion_mnist_mini, train_val_split
from npnet.models import build_model
from npnet.train import Trainer

QUICK = os.environ.get("NPNET_TUTORIAL_QUICK") == "1"  # the test suite's setting: seconds, not minutes


def show(fig):
    """Displays a matplotlib Figure as a PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    display(Image(buf.getvalue()))

# %% [markdown]
# ## A trained CNN
#
# The data and model of tutorial 03: `cnn-small` on the embedded Fashion-MNIST subset, a few
# epochs of SGD with momentum.

# %%
data = load_fashion_mnist_mini()
norm = Normalize.for_dataset("fashion-mnist")
x_train, y_train, x_val, y_val = train_val_split(norm(data.x_train), data.y_train, 0.1, seed=0)
x_test, y_test = norm(data.x_test), data.y_test
if QUICK:  # enough (3 epochs of 2,000 images) that the network has learnt something to compare
    x_train, y_train = x_train[:2000], y_train[:2000]
EPOCHS = 3 if QUICK else 4

npnet.manual_seed(0)
model = build_model("cnn-small", in_shape=(1, 28, 28), num_classes=10, rng=0)
optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
trainer = Trainer(model, losses.CrossEntropyLoss(), optimizer, progress=False)
trainer.fit(DataLoader(x_train, y_train, batch_size=64, seed=0), epochs=EPOCHS)
ours = trainer.predict(x_test, batch_size=500)  # eval-mode logits (N, 10)
print(f"npnet test accuracy {metrics.accuracy(y_test, ours.argmax(1)):.3f}")

# %% [markdown]
# ## Export
#
# `export(model, example_input, path)` walks the model's modules, writes one ONNX operator (or a
# few) per layer in eval semantics, checks the result with `onnx.checker` and writes the file
# atomically. The example input fixes every dimension but the batch, which stays symbolic. The
# weights keep their state-dict names.

# %%
folder = tempfile.mkdtemp()
path = os.path.join(folder, "cnn_small.onnx")
proto = npnet.onnx.export(model, x_test[:1], path)
print(f"{os.path.getsize(path):,} bytes, opset {proto.opset_import[0].version}")
print("input: ", proto.graph.input[0].name, [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim])
print("output:", proto.graph.output[0].name, [d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim])
print("weights:", [t.name for t in proto.graph.initializer][:4], "...")

# %% [markdown]
# ## The graph
#
# What Netron would show: the operators in order, each with the shape of what it produces (ONNX's
# own shape inference works them out from the file).

# %%
inferred = onnx.shape_inference.infer_shapes(proto)
shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
          for v in list(inferred.graph.value_info) + list(inferred.graph.output)}


def draw_graph(graph, shapes):
    """A column of boxes, one per node: operator, and the shape of its output."""
    nodes = list(graph.node)
    fig = Figure(figsize=(4.2, 0.55 * len(nodes) + 0.6))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 1)
    ax.set_ylim(-len(nodes), 1.1)
    ax.axis("off")
    colours = {"Conv": "#9ecae1", "Relu": "#fdd0a2", "MaxPool": "#c7e9c0", "Gemm": "#dadaeb"}
    for k, node in enumerate(nodes):
        y = -k
        shape = "x".join(str(d) for d in shapes.get(node.output[0], []))
        ax.add_patch(matplotlib.patches.FancyBboxPatch((0.08, y - 0.35), 0.84, 0.6,
                     boxstyle="round,pad=0.02", fc=colours.get(node.op_type, "#eeeeee"), ec="#555555"))
        ax.text(0.5, y - 0.05, f"{node.op_type}   ->  {shape}", ha="center", va="center", fontsize=9)
        ax.annotate("", (0.5, y + 0.27), (0.5, y + 0.63), arrowprops={"arrowstyle": "->"})
    ax.text(0.5, 0.8, "input  " + "x".join(str(d) for d in shapes.get("input", ["batch", 1, 28, 28])),
            ha="center", fontsize=9)
    return fig


shapes["input"] = ["batch", 1, 28, 28]
show(draw_graph(proto.graph, shapes))

# %% [markdown]
# ## ONNX Runtime runs it
#
# Another engine, other kernels: the logits agree with npnet's eval forward to float32 rounding,
# at any batch size, and so do the predictions.

# %%
session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
theirs = np.concatenate([session.run(None, {"input": x_test[i:i + 500]})[0] for i in range(0, len(x_test), 500)])
one = session.run(None, {"input": x_test[:1]})[0]
print(f"largest difference of the logits: {np.abs(theirs - ours).max():.2e} "
      f"(logits up to {np.abs(ours).max():.1f}); batch of 1: {np.abs(one - ours[:1]).max():.2e}")
print(f"same predictions: {np.mean(theirs.argmax(1) == ours.argmax(1)):.2%}, "
      f"ONNX Runtime's test accuracy {metrics.accuracy(y_test, theirs.argmax(1)):.3f}")

# %% [markdown]
# ## And back into npnet
#
# `npnet.onnx.load` reads the file (protobuf: nothing in it runs), builds one npnet layer per
# operator and loads the weights. A chain comes back as a `Sequential` with the same state-dict
# keys; a graph with skips (a ResNet block) as an `nn.Graph`. The model is an ordinary npnet
# model: it trains, and its backward is the one you can read. The same works for a CNN that
# `torch.onnx.export` wrote (`tests/test_onnx_load.py` does it, and takes one SGD step on both).

# %%
again = npnet.onnx.load(path)
print(again)
same_keys = list(again.state_dict()) == list(model.state_dict())
same_values = all(np.array_equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
print(f"same state-dict keys: {same_keys}, same values: {same_values}")
print(f"same logits: {np.abs(Trainer(again, losses.CrossEntropyLoss(), None, progress=False).predict(x_test, batch_size=500) - ours).max():.1e}")

# %%
optimizer = optim.SGD(again.parameters(), lr=0.005, momentum=0.9)
more = Trainer(again, losses.CrossEntropyLoss(), optimizer, progress=False)
more.fit(DataLoader(x_train, y_train, batch_size=64, seed=1), epochs=1)
pred = more.predict(x_test, batch_size=500).argmax(1)
print(f"after one more epoch in npnet: test accuracy {metrics.accuracy(y_test, pred):.3f}")
cm = metrics.confusion_matrix(y_test, pred, num_classes=10)
show(plots.plot_confusion_matrix(cm, data.classes, title="The model read back from ONNX, trained on"))
