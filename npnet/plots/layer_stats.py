"""Figures of the records of ``npnet.train.LayerStats``: every statistic of one run, one statistic
across runs. Each takes the records it draws, as the other figures take histories:
``LayerStats.stats`` (``{layer: {statistic: [(step, value)]}}``), the ``LayerStats`` itself, or the
path of its ``layer_stats.csv``; this module does not import ``npnet.train``."""
import math
import os

import numpy as np

from .._layer_stats_csv import STATISTICS, read_layer_stats_csv
from ._figure import _done, _figure

__all__ = ["plot_layer_stats", "plot_statistic_by_run"]


def _as_records(stats):
    """``{layer: {statistic: [(step, value)]}}`` from those records, an object holding them in
    ``.stats`` (a LayerStats), or the path of a ``layer_stats.csv``."""
    if isinstance(stats, (str, os.PathLike)):
        return read_layer_stats_csv(stats)
    records = getattr(stats, "stats", stats)
    if not isinstance(records, dict):
        raise TypeError("expected LayerStats.stats, a LayerStats or the path of its layer_stats.csv, "
                        f"got {type(stats).__name__}")
    return records


def _decades_scale(ax, values):
    """A log scale when the nonzero magnitudes span more than two decades (symlog if some values
    are zero or negative, with its linear range below the smallest nonzero magnitude)."""
    mags = [abs(v) for v in values if v != 0]
    if not mags or max(mags) / min(mags) <= 100:
        return
    if min(values) > 0:
        ax.set_yscale("log")
    else:
        ax.set_yscale("symlog", linthresh=min(mags))


def _colours(names):
    """``{layer name: colour}``, one colour per layer and the same in every panel: matplotlib's
    ten-colour cycle while it suffices, else viridis from the first layer to the last (the cycle
    would give layers 1 and 11 the same colour)."""
    if len(names) <= 10:
        return {name: f"C{i}" for i, name in enumerate(names)}
    from matplotlib import colormaps
    cmap = colormaps["viridis"]
    return {name: cmap(0.92 * i / (len(names) - 1)) for i, name in enumerate(names)}


def _layers_with(stats, stat):
    """The layers (or parameters) of one LayerStats ``stats`` dict that recorded ``stat``."""
    return [layer for layer, by_stat in stats.items() if stat in by_stat]


def _plot_layers(ax, stats, stat, colours, markers_below=None):
    """One line per layer that recorded ``stat``, in its colour of ``colours``; a marker on every
    point, or only on lines of fewer than ``markers_below`` points. Returns the finite values."""
    values = []
    for layer in _layers_with(stats, stat):
        steps, vals = zip(*stats[layer][stat])
        marker = "o" if markers_below is None or len(steps) < markers_below else None
        ax.plot(steps, vals, marker=marker, ms=3, lw=1, label=layer, color=colours[layer])
        values += [v for v in vals if math.isfinite(v)]
    return values


def plot_layer_stats(stats, path=None, title=None):
    """One panel per statistic of ``npnet.train.LayerStats`` (its records, in any form of the module
    docstring), the layers (parameters for update_ratio) as lines over the training steps. A panel
    whose positive values span more than two decades gets a log scale."""
    stats = _as_records(stats)
    names = [s for s in STATISTICS if any(s in by_stat for by_stat in stats.values())]
    if not names:
        raise ValueError("plot_layer_stats: no statistics recorded")
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = _figure(4.2 * cols, 3.3 * rows)
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, stat in zip(axes, names):
        values = _plot_layers(ax, stats, stat, _colours(_layers_with(stats, stat)), markers_below=20)
        _decades_scale(ax, values)
        ax.set(title=stat, xlabel="step")
        ax.grid(alpha=0.3)
        if 0 < len(ax.lines) <= 12:
            ax.legend(fontsize="x-small", title="parameter" if stat == "update_ratio" else "layer",
                      title_fontsize="x-small")
    for ax in axes[len(names):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    _done(fig, path)
    return fig


def plot_statistic_by_run(runs, statistic, path=None, title=None, ylabel=None):
    """One ``LayerStats`` statistic for several runs side by side: a panel per run (``runs``: a
    dict name -> records in any form of the module docstring), its layers as lines over the steps,
    shared y (a log scale when the values of all runs span more than two decades, as in plot_layer_stats)."""
    runs = {name: _as_records(s) for name, s in runs.items()}
    fig = _figure(max(6.0, 3.3 * len(runs)), 3.4)
    axes = np.asarray(fig.subplots(1, len(runs), sharey=True, squeeze=False)).ravel()
    values = []
    # one colour per layer across the runs, so that a layer looks the same in every panel
    colours = _colours(list(dict.fromkeys(layer for stats in runs.values()
                                          for layer in _layers_with(stats, statistic))))
    for ax, (name, stats) in zip(axes, runs.items()):
        values += _plot_layers(ax, stats, statistic, colours)
        ax.set(title=name, xlabel="step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="x-small", title="layer", title_fontsize="x-small")
        else:  # e.g. saturation in a run without Sigmoid or Tanh layers: say so, not a blank panel
            ax.text(0.5, 0.5, f"no layer records\n{statistic}", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
    _decades_scale(axes[0], values)  # the panels share y, so its scale too
    axes[0].set_ylabel(ylabel or statistic)
    if title:
        fig.suptitle(title)
    _done(fig, path)
    return fig
