"""Figures of a sweep: a metric against a swept value, per-class accuracy of every trial."""
import numpy as np

from ._figure import _done, _figure

__all__ = ["plot_sweep_lines", "plot_accuracy_heatmap"]


def plot_sweep_lines(panels, xlabel, path=None, title=None, log_x=False, references=None):
    """A metric against one swept value, one panel per metric. ``panels`` maps a y label to
    ``{line label: (xs, means, stds)}``: ``xs`` are numbers, or strings placed evenly on one
    axis shared by the lines, ``stds`` (None or 0 for one seed) are drawn as error bars.
    ``references`` maps the same y labels to ``{label: (mean, std)}``, drawn as dashed horizontal
    lines (runs that do not vary this value, e.g. a baseline)."""
    fig = _figure(5.0 * len(panels), 3.8)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (ylabel, lines) in zip(axes, panels.items()):
        for label, (mean, std) in (references or {}).get(ylabel, {}).items():
            ax.axhline(mean, color="gray", linestyle="--", label=f"{label} (reference)")
            if std:
                ax.axhspan(mean - std, mean + std, color="gray", alpha=0.15)
        _sweep_lines(ax, lines)
        if log_x:
            ax.set_xscale("log")
        ax.set(xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
        if any(ax.get_legend_handles_labels()[1]):  # not for one unnamed line
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _done(fig, path)


def plot_accuracy_heatmap(acc, row_labels, class_names, path=None, title="Per-class accuracy"):
    """Rows (e.g. the trials of a sweep) x classes: ``acc`` (R, C) accuracies in [0, 1], drawn
    in percent: colours on a 0-100 % scale and each cell labelled with the same number; NaN cells
    (a trial without results) stay blank."""
    acc = 100 * np.asarray(acc, dtype=float)  # (R, C) in %
    if acc.shape != (len(row_labels), len(class_names)):
        raise ValueError(f"plot_accuracy_heatmap: acc has shape {acc.shape}, expected "
                         f"({len(row_labels)}, {len(class_names)}) rows x classes")
    r, c = acc.shape
    fig = _figure(max(6.0, 0.75 * c + 0.12 * max(len(s) for s in row_labels) + 1.5),
                  max(2.5, 0.32 * r + 1.6))
    ax = fig.subplots()
    im = ax.imshow(acc, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.04, label="accuracy (%)")
    ax.set(xticks=range(c), yticks=range(r), title=title)
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_yticklabels(row_labels, fontsize="small")
    for i in range(r):
        for j in range(c):
            if np.isfinite(acc[i, j]):
                ax.text(j, i, f"{acc[i, j]:.0f}", ha="center", va="center",
                        fontsize="x-small", color="black" if acc[i, j] > 60 else "white")
    return _done(fig, path)


def _sweep_lines(ax, lines):
    """Draws ``{label: (xs, means, stds)}``; string xs share one evenly spaced axis."""
    labels = list(dict.fromkeys(x for xs, _, _ in lines.values() for x in xs if isinstance(x, str)))
    for label, (xs, means, stds) in lines.items():
        pos = [labels.index(x) if isinstance(x, str) else float(x) for x in xs]
        err = None if stds is None else np.nan_to_num(np.asarray(stds, float))
        ax.errorbar(pos, means, yerr=err, marker="o", capsize=3, label=label)
    if labels:
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels)
