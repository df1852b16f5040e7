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
# # Train a CNN on Fashion-MNIST
#
# The whole path of a training run: data, a model from the zoo, the `Trainer`, and three figures
# (learning curves, a confusion matrix and a grid of predictions). The data is the Fashion-MNIST
# subset embedded in npnet (1,000 training and 100 test images per class), so nothing is
# downloaded; `npnet.data.load_fashion_mnist()` gives the full 60k/10k set the same way.

# %%
import io
import os
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets

import numpy as np
from IPython.display import Image, display

import npnet
from npnet import losses, metrics, optim, plots
from npnet.data import DataLoader, Normalize, load_fashion_mnist_mini, train_val_split
from npnet.functional import softmax
from npnet.models import build_model, summary
from npnet.train import Trainer

QUICK = os.environ.get("NPNET_TUTORIAL_QUICK") == "1"  # the test suite's setting: seconds, not minutes


def show(fig):
    """Displays a matplotlib Figure as a PNG (npnet.plots draws without pyplot)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    display(Image(buf.getvalue()))

# %% [markdown]
# ## Data
#
# Images come as uint8 `(N, 1, 28, 28)`. `Normalize` scales them to float32 with the training
# set's mean and standard deviation; a stratified tenth of the training images is held out for
# validation (the test set is only looked at once, at the end).

# %%
data = load_fashion_mnist_mini()
print(data)
norm = Normalize.for_dataset("fashion-mnist")
x_train, y_train, x_val, y_val = train_val_split(norm(data.x_train), data.y_train, 0.1, seed=0)
x_test, y_test = norm(data.x_test), data.y_test
if QUICK:  # enough steps (3 epochs of 1,000 images) that the figures show a network learning
    x_train, y_train, x_val, y_val = x_train[:1000], y_train[:1000], x_val[:300], y_val[:300]
print(f"train {x_train.shape} {x_train.dtype}, validation {x_val.shape}, test {x_test.shape}")

# %% [markdown]
# ## Model
#
# `cnn-small` from the zoo: three blocks of 3x3 convolution, ReLU and 2x2 max-pooling, then two
# linear layers. `summary` lists every layer with its output shape and parameter count.

# %%
npnet.manual_seed(0)
model = build_model("cnn-small", in_shape=(1, 28, 28), num_classes=10, rng=0)
print(summary(model, (1, 28, 28)))

# %% [markdown]
# ## Training
#
# The `Trainer` runs `train_step` (zero the gradients, forward, loss, backward, optimizer step)
# over every batch, evaluates on the validation loader after each epoch and records a `History`.
# The learning rate drops tenfold for the last quarter of the epochs.

# %%
EPOCHS = 3 if QUICK else 5
optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
scheduler = optim.MultiStepLR(optimizer, milestones=[max(1, int(0.75 * EPOCHS))], gamma=0.1)
trainer = Trainer(model, losses.CrossEntropyLoss(), optimizer, scheduler, progress=False)
history = trainer.fit(DataLoader(x_train, y_train, batch_size=64, seed=0),
                      DataLoader(x_val, y_val, batch_size=500, shuffle=False), epochs=EPOCHS)
for row in history.epochs:
    print(f"epoch {row['epoch']}: train loss {row['train_loss']:.3f}, "
          f"validation accuracy {row['val_accuracy']:.3f}, lr {row['lr']:g}")

# %%
show(plots.plot_learning_curves(history, title="cnn-small on the embedded Fashion-MNIST"))

# %% [markdown]
# ## Test set
#
# `Trainer.predict` returns logits in eval mode, batch by batch. The confusion matrix shows which
# classes the network mixes up: on Fashion-MNIST, mostly shirts, T-shirts, pullovers and coats.

# %%
logits = trainer.predict(x_test, batch_size=500)
pred = logits.argmax(axis=1)
print(f"test accuracy {metrics.accuracy(y_test, pred):.3f}")
cm = metrics.confusion_matrix(y_test, pred, num_classes=10)
show(plots.plot_confusion_matrix(cm, data.classes, title="Test set: rows true, columns predicted"))

# %% [markdown]
# ## The picture: what it predicts
#
# Twenty-four test images with the predicted class and its softmax probability; wrong answers are
# red and name the true class.

# %%
pick = np.random.default_rng(0).choice(len(x_test), 24, replace=False)
probs = softmax(logits[pick])
show(plots.plot_predictions(data.x_test[pick], y_test[pick], probs, data.classes, ncols=8))
