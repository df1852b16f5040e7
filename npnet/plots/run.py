"""Figures of one training run: learning curves, confusion matrix, per-class accuracy, a linear
classifier's weights as images, a grid of predictions. Images are NCHW, uint8 in [0, 255] or
floats (rescaled to [0, 1] per image)."""
import json
import math
import os

import numpy as np

from ._figure import _done, _figure

__all__ = ["plot_learning_curves", "plot_confusion_matrix", "plot_per_class_accuracy",
           "plot_linear_weights", "plot_predictions"]


def _as_epochs(history):
    """The list of epoch rows of a History, its dict form, or a path to its JSON file."""
    if isinstance(history, (str, os.PathLike)):
        with open(history, encoding="utf-8") as f:
            history = json.load(f)
    if hasattr(history, "epochs"):
        return history.epochs
    if isinstance(history, dict) and "epochs" in history:
        return history["epochs"]
    raise TypeError(f"expected a History, its to_dict() or a JSON path, got {type(history).__name__}")


def plot_learning_curves(histories, labels=None, path=None, title=None, side_by_side=False):
    """Loss and accuracy per epoch: training solid, validation dashed. ``histories``: one history,
    a list of them, or a dict label -> history.

    Default: two panels (loss left, accuracy right) with one colour per run. ``side_by_side``: one
    column per run (loss on top, accuracy below), each with its own epoch axis, for runs whose
    lengths or losses differ too much to share axes (600 GD steps next to 10 CNN epochs).
    """
    from matplotlib.ticker import MaxNLocator
    if isinstance(histories, dict) and "epochs" not in histories:
        labels, histories = list(histories), list(histories.values())
    elif not isinstance(histories, (list, tuple)):
        histories = [histories]
    labels = labels or [f"run {i + 1}" for i in range(len(histories))]
    n = len(histories)
    if side_by_side:
        fig = _figure(max(6.0, 3.2 * n), 6)
        grid = np.asarray(fig.subplots(2, n, squeeze=False))
        columns = [(grid[:, i], [i]) for i in range(n)]
    else:
        fig = _figure(11, 4)
        columns = [(fig.subplots(1, 2), range(n))]
    for axes, runs in columns:
        for i in runs:
            _plot_history(axes, _as_epochs(histories[i]), i, labels[i] if n > 1 and not side_by_side else None)
        for ax, metric in zip(axes, ("loss", "accuracy")):
            head = labels[runs[0]] if metric == "loss" else ""  # a column per run: its name on top
            ax.set(xlabel="epoch", ylabel=metric, title=head if side_by_side else metric)
            # at most ~6 epoch labels: a narrow column with 400 GD epochs had 9 that ran together
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5 if side_by_side else 8, integer=True))
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _done(fig, path)


def _plot_history(axes, rows, colour, label):
    """Train (solid) and val (dashed) curves of one run on the (loss, accuracy) axes."""
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for split, style in (("train", "-"), ("val", "--")):
            pts = [(r["epoch"], r[f"{split}_{metric}"]) for r in rows
                   if r.get(f"{split}_{metric}") is not None]
            if pts:
                ax.plot(*zip(*pts), style, color=f"C{colour % 10}", marker="." if len(pts) < 30 else None,
                        label=f"{label} {split}" if label else split)


def plot_confusion_matrix(cm, class_names=None, path=None, normalize=True, title="Confusion matrix"):
    """Heatmap of ``cm`` (C, C), rows = true class; colours are row-normalised (recall) when
    ``normalize``, and every cell shows its count."""
    cm = np.asarray(cm)
    c = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    size = max(5.0, 0.55 * c + 2)
    fig = _figure(size + 1, size)
    ax = fig.subplots()
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class" if normalize else "count")
    ax.set(xticks=range(c), yticks=range(c), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yticklabels(names)
    threshold = shown.max() / 2 if shown.size else 0
    for i in range(c):
        for j in range(c):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize="small",
                    color="white" if shown[i, j] > threshold else "black")
    return _done(fig, path)


def plot_per_class_accuracy(results, class_names=None, path=None, title="Per-class accuracy"):
    """Grouped bars: ``results`` maps a run label to its per-class accuracies (C,)."""
    if not isinstance(results, dict):
        results = {"run": results}
    accs = {k: np.asarray(v, dtype=float) for k, v in results.items()}
    c = len(next(iter(accs.values())))
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    fig = _figure(max(6.0, 0.7 * c + 2), 4)
    ax = fig.subplots()
    width = 0.8 / len(accs)
    for i, (label, acc) in enumerate(accs.items()):
        ax.bar(np.arange(c) + (i - (len(accs) - 1) / 2) * width, acc, width, label=label)
    # headroom above 1 for the legend, so that it never covers a bar
    ax.set(xticks=range(c), ylim=(0, 1.2), yticks=np.linspace(0, 1, 6), ylabel="accuracy", title=title)
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper center", ncol=min(len(accs), 3))
    return _done(fig, path)


def _image(x):
    """(C, H, W) -> (H, W) or (H, W, 3) in [0, 1] for imshow."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        x = x / 255.0
    else:
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x, dtype=float)
    return x[0] if x.shape[0] == 1 else np.transpose(x, (1, 2, 0))


def _grid(n, ncols, cell):
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig = _figure(cell * ncols, cell * nrows + 0.3)
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).reshape(-1)
    for ax in axes[n:]:
        ax.set_axis_off()
    return fig, axes[:n]


def plot_linear_weights(weight, in_shape, class_names=None, path=None):
    """The rows of a linear classifier's weight (C, D) shown as images of ``in_shape`` (c, h, w),
    each rescaled to its own range: what each class's template looks like."""
    weight = np.asarray(weight)
    if weight.ndim != 2 or weight.shape[1] != math.prod(in_shape):
        raise ValueError(f"plot_linear_weights: expected a weight (C, {math.prod(in_shape)}) for "
                         f"in_shape {tuple(in_shape)}, got {weight.shape}")
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(weight))]
    fig, axes = _grid(len(weight), 5, 2.0)
    for ax, row, name in zip(axes, weight, names):
        img = _image(row.reshape(in_shape))
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        ax.set_title(name, fontsize="small")
        ax.set_axis_off()
    return _done(fig, path)


def plot_predictions(images, labels, probs, class_names=None, path=None, ncols=8):
    """A grid of images titled with the predicted class and its probability; wrong predictions
    are red, framed, and also name the true class. probs: (N, C) softmax probabilities."""
    probs = np.asarray(probs)
    names = list(class_names) if class_names is not None else [str(i) for i in range(probs.shape[1])]
    pred = probs.argmax(axis=1)
    fig, axes = _grid(len(images), ncols, 1.6)
    for ax, img, y, p, pr in zip(axes, images, labels, pred, probs):
        im = _image(img)
        ax.imshow(im, cmap="gray" if im.ndim == 2 else None)
        wrong = p != y
        text = f"{names[p]} {pr[p]:.0%}" + (f"\n(true: {names[y]})" if wrong else "")
        ax.set_title(text, fontsize="x-small", color="red" if wrong else "black")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set(color="red" if wrong else "lightgray", linewidth=3 if wrong else 0.5)
    return _done(fig, path)
