"""What the examples share: the command line, loading and normalising a dataset, the training loop
and evaluation, and printing a markdown table. Each example reads top to bottom and calls these.
"""
import argparse
import os
import sys
from types import SimpleNamespace

import numpy as np
from tqdm import tqdm

from npnet import metrics, no_grad, plots
from npnet.data import Normalize, load_dataset, train_val_split

DATASETS = ["fashion-mnist-mini", "fashion-mnist", "cifar10"]

if hasattr(sys.stdout, "reconfigure"):  # progress lines appear as they come, also in a log file
    sys.stdout.reconfigure(line_buffering=True)


def make_parser(doc, out, quick_help, dataset=True, epochs=None, seed=None):
    """An ArgumentParser with --quick and --out, plus --dataset, --epochs and --seed when asked.

    doc: the example's docstring (its first line is the description); out: the default figure
    folder; epochs / seed: their defaults (None leaves the option out).
    """
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    if dataset:
        p.add_argument("--dataset", default="fashion-mnist-mini", choices=DATASETS,
                       help="fashion-mnist-mini is embedded in npnet; the others are read from disk")
    if epochs is not None:
        p.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default {epochs})")
    if seed is not None:
        p.add_argument("--seed", type=int, default=seed, help="seeds the weights, splits and batches")
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--out", default=out, help="folder for the figures")
    return p


def load_data(name, per_class=None, test_size=None, val_fraction=0.1, seed=0, normalize=True):
    """The dataset ``name`` split into train / validation / test, with its normaliser.

    per_class: keep only the first ``per_class`` training images of every class (None: all);
    test_size: keep only the first ``test_size`` test images (None: all). The validation set is a
    stratified ``val_fraction`` of the (kept) training images. normalize=False keeps the images
    uint8, e.g. to augment them before applying ``norm``.

    Returns a namespace: name, classes, in_shape (C, H, W), norm (a Normalize),
    x_train, y_train, x_val, y_val, x_test, y_test (images (N, C, H, W), labels (N,) int64).
    """
    data = load_dataset(name)
    x_train, y_train, x_test, y_test = data
    if per_class is not None:
        keep = np.concatenate([np.flatnonzero(y_train == c)[:per_class] for c in range(len(data.classes))])
        x_train, y_train = x_train[keep], y_train[keep]
    if test_size is not None:
        x_test, y_test = x_test[:test_size], y_test[:test_size]
    norm = Normalize.for_dataset(data.name.replace("-mini", ""))
    if normalize:
        x_train, x_test = norm(x_train), norm(x_test)  # float32 (N, C, H, W)
    x_tr, y_tr, x_val, y_val = train_val_split(x_train, y_train, val_fraction, seed=seed)
    in_shape = x_train.shape[1:]
    print(f"{data.name}: {len(x_tr)} train / {len(x_val)} val / {len(x_test)} test images of {in_shape}")
    return SimpleNamespace(name=data.name, classes=data.classes, in_shape=in_shape, norm=norm,
                           x_train=x_tr, y_train=y_tr, x_val=x_val, y_val=y_val,
                           x_test=x_test, y_test=y_test)


def predict(model, x, batch_size=1000):
    """The logits (N, num_classes) of ``model`` in eval mode, computed in batches."""
    model.eval()
    with no_grad():  # keep no backward caches: inference memory stays one layer deep
        logits = np.concatenate([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train()
    return logits


def evaluate(model, criterion, x, y, batch_size=1000):
    """(mean loss, accuracy, predictions) of ``model`` in eval mode, in batches."""
    logits = predict(model, x, batch_size)
    return criterion(logits, y), metrics.accuracy(y, logits), logits.argmax(axis=1)


def train(name, model, criterion, optimizer, loader, epochs, x_val, y_val, scheduler=None):
    """The training loop: zero_grad -> forward -> loss -> backward -> step. Returns epoch rows.

    With a scheduler, ``scheduler.step()`` runs after every epoch (PyTorch's convention) and each
    row records the learning rate the epoch used.
    """
    rows = []
    bar = tqdm(range(1, epochs + 1), desc=name, leave=False, disable=None)
    for epoch in bar:
        lr = optimizer.param_groups[0]["lr"]
        total, correct, seen = 0.0, 0, 0
        for xb, yb in loader:
            optimizer.zero_grad()
            logits = model(xb)
            loss = criterion(logits, yb)
            model.backward(criterion.backward(), input_grad=False)  # no d loss / d images
            optimizer.step()
            total, correct, seen = total + loss * len(yb), correct + (logits.argmax(1) == yb).sum(), seen + len(yb)
        val_loss, val_acc, _ = evaluate(model, criterion, x_val, y_val)
        rows.append(dict(epoch=epoch, lr=lr, train_loss=total / seen, train_accuracy=correct / seen,
                         val_loss=val_loss, val_accuracy=val_acc))
        bar.set_postfix(loss=f"{total / seen:.4f}", val_acc=f"{val_acc:.3f}")
        if scheduler is not None:
            scheduler.step()
    return rows


def markdown_table(header, rows):
    """A markdown table as a string. Cells are strings, already formatted by the caller; the first
    column is left-aligned and the others right-aligned, each padded to its widest cell."""
    table = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(table[0]), rule] + [line(r) for r in table[1:]])


def epoch_table(rows):
    """The per-epoch rows of ``train`` (epoch, lr, train/val loss and accuracy) as a markdown table."""
    return markdown_table(["epoch", "lr", "train loss", "train accuracy", "val loss", "val accuracy"],
                          [(str(r["epoch"]), f"{r['lr']:g}", f"{r['train_loss']:.4f}",
                            f"{100 * r['train_accuracy']:.2f}%", f"{r['val_loss']:.4f}",
                            f"{100 * r['val_accuracy']:.2f}%") for r in rows])


def report_run(name, model, data, rows, pred, test_loss, test_acc, seconds, out, curve_title,
               epochs_note="", extra=()):
    """The end of a one-model example: ``learning_curves.png`` and ``confusion.png`` in ``out``,
    then the epoch table and the results table. ``extra``: (column, value) pairs shown after the
    model's name."""
    plots.plot_learning_curves({name: {"epochs": rows}}, path=os.path.join(out, "learning_curves.png"),
                               title=curve_title)
    cm = metrics.confusion_matrix(data.y_test, pred, len(data.classes))
    plots.plot_confusion_matrix(cm, data.classes, path=os.path.join(out, "confusion.png"),
                                title=f"{name} on {data.name}: test confusion matrix")
    print(f"\nEpochs of {name} on {data.name}{epochs_note}")
    print(epoch_table(rows))
    print(f"\nResults on {data.name} ({len(data.y_test)} test images)")
    last = rows[-1]
    print(markdown_table(["model", *(k for k, _ in extra), "parameters", "epochs", "train accuracy",
                          "val accuracy", "test accuracy", "test loss", "train time (s)"],
                         [(name, *(v for _, v in extra), f"{model.num_parameters():,}", str(len(rows)),
                           f"{100 * last['train_accuracy']:.2f}%", f"{100 * last['val_accuracy']:.2f}%",
                           f"{100 * test_acc:.2f}%", f"{test_loss:.4f}", f"{seconds:.1f}")]))
