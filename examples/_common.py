"""What the examples share: the command line, loading and normalising a dataset, the test-set
numbers of a trained model, markdown tables and the results file. Training itself is
``npnet.train.Trainer`` (each step a ``train_step``), called by each example where it reads.
"""
import argparse
import os
import sys
from types import SimpleNamespace

import numpy as np

from npnet import metrics, plots
from npnet._io import atomic_write_text, check_writable_folder
from npnet.data import DataLoader, Normalize, load_dataset, train_val_split
from npnet.distributed import launched_size

DATASETS = ["fashion-mnist-mini", "fashion-mnist", "cifar10"]
EVAL_BATCH = 1000  # images per forward pass when nothing is learned: larger is faster, to a point

if hasattr(sys.stdout, "reconfigure"):  # lines appear as they come, also in a log file
    sys.stdout.reconfigure(line_buffering=True)


class _Parser(argparse.ArgumentParser):
    """Fills in ``--out``: the example's folder, ``<folder>-quick`` for a ``--quick`` run, so
    that a smoke run never overwrites the figures of a full one; a folder that cannot be written
    ends the example at once with one line and exit status 2."""

    def __init__(self, out, **kwargs):
        super().__init__(**kwargs)
        self.default_out = out

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        if parsed.out is None:
            parsed.out = self.default_out + ("-quick" if parsed.quick else "")
        try:  # before any training: a path that cannot take the results is the user's to change
            # under mpiexec every rank checks at once: keep the folders, or one rank could remove
            # a folder another is testing (the run writes in it anyway)
            check_writable_folder(parsed.out, keep=launched_size() > 1)
        except ValueError as e:
            self.exit(2, f"{self.prog}: --out {parsed.out}: {e}; give a folder you can write in\n")
        return parsed


def make_parser(doc, out, quick_help, dataset=True, epochs=None, seed=None, tune=True):
    """An ArgumentParser with --quick and --out, plus --dataset, --epochs and --seed when asked.

    doc: the example's docstring (its first line is the description); out: the default folder of
    the figures and ``results.md`` (``<out>-quick`` with --quick); epochs / seed: their defaults
    (None leaves the option out); tune=False leaves --tune out (a script without npnet models).
    """
    p = _Parser(out, description=doc.splitlines()[0])
    if dataset:
        p.add_argument("--dataset", default="fashion-mnist-mini", choices=DATASETS,
                       help="fashion-mnist-mini is embedded in npnet; the others are read from disk")
    if epochs is not None:
        p.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default {epochs})")
    if seed is not None:
        p.add_argument("--seed", type=int, default=seed, help="seeds the weights, splits and batches")
    p.add_argument("--quick", action="store_true", help=quick_help)
    if tune:
        p.add_argument("--tune", action="store_true",
                       help="npnet.tune each model before training: time every 3x3 convolution's "
                            "algorithms once and keep the fastest (default: the fixed rule, the same "
                            "result on every machine)")
    p.add_argument("--out", default=None, help=f"folder for the figures and results.md (default "
                                               f"{out}, or {out}-quick with --quick)")
    return p


def run(main):
    """Runs an example's ``main()``. Ctrl-C ends it with one line and exit status 130 (the
    Trainer stops after the current step and says so; anywhere else the line is written here)."""
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted (Ctrl-C); no results written", file=sys.stderr)
        sys.exit(130)


def exit_if_interrupted(history):
    """After ``Trainer.fit``: a run stopped by Ctrl-C ends the example (the Trainer has already
    said where it stopped), with exit status 130."""
    if history.interrupted:
        sys.exit(130)


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


def eval_loader(x, y):
    """Batches of ``x``, ``y`` in order, for validation during ``Trainer.fit``."""
    return DataLoader(x, y, EVAL_BATCH, shuffle=False)


def results_on(trainer, x, y):
    """(mean loss, accuracy, predicted classes) of the trained model on ``x``, ``y``."""
    logits = trainer.predict(x, EVAL_BATCH)  # (N, num_classes), in eval mode
    return trainer.loss(logits, y), metrics.accuracy(y, logits), logits.argmax(axis=1)


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
    """The epoch rows of a ``History`` (epoch, lr, train/val loss and accuracy) as a markdown table."""
    return markdown_table(["epoch", "lr", "train loss", "train accuracy", "val loss", "val accuracy"],
                          [(str(r["epoch"]), f"{r['lr']:g}", f"{r['train_loss']:.4f}",
                            f"{100 * r['train_accuracy']:.2f}%", f"{r['val_loss']:.4f}",
                            f"{100 * r['val_accuracy']:.2f}%") for r in rows])


def publish(out, blocks):
    """Prints the results (a list of text blocks: titles and tables) and writes them to
    ``<out>/results.md`` beside the figures."""
    text = "\n\n".join(blocks)
    print("\n" + text)
    atomic_write_text(os.path.join(out, "results.md"), text + "\n")


def report_run(name, trainer, data, seconds, out, curve_title, epochs_note="", extra=()):
    """The end of a one-model example: ``learning_curves.png`` and ``confusion.png`` in ``out``,
    then the epoch table and the results table, printed and in ``results.md``. ``extra``:
    (column, value) pairs shown after the model's name."""
    rows = trainer.history.epochs
    test_loss, test_acc, pred = results_on(trainer, data.x_test, data.y_test)
    plots.plot_learning_curves({name: trainer.history}, path=os.path.join(out, "learning_curves.png"),
                               title=curve_title)
    cm = metrics.confusion_matrix(data.y_test, pred, len(data.classes))
    plots.plot_confusion_matrix(cm, data.classes, path=os.path.join(out, "confusion.png"),
                                title=f"{name} on {data.name}: test confusion matrix")
    last = rows[-1]
    results = markdown_table(["model", *(k for k, _ in extra), "parameters", "epochs", "train accuracy",
                              "val accuracy", "test accuracy", "test loss", "train time (s)"],
                             [(name, *(v for _, v in extra), f"{trainer.model.num_parameters():,}",
                               str(len(rows)), f"{100 * last['train_accuracy']:.2f}%",
                               f"{100 * last['val_accuracy']:.2f}%", f"{100 * test_acc:.2f}%",
                               f"{test_loss:.4f}", f"{seconds:.1f}")])
    publish(out, [f"Epochs of {name} on {data.name}{epochs_note}", epoch_table(rows),
                  f"Results on {data.name} ({len(data.y_test)} test images)", results])
