"""Figures, drawn with matplotlib's object API (no pyplot, no global backend), one module per
subject: ``run`` (one training run), ``layer_stats`` (``LayerStats``), ``sweep`` (a sweep's
trials). matplotlib is imported inside the functions, so ``import npnet`` does not import it.
Every function returns the ``Figure``; given ``path`` it also saves it as PNG atomically
(temporary file, then rename): ``save_figure``.
"""
from ._figure import save_figure
from .layer_stats import plot_layer_stats, plot_statistic_by_run
from .run import (plot_confusion_matrix, plot_learning_curves, plot_linear_weights,
                  plot_per_class_accuracy, plot_predictions)
from .sweep import plot_accuracy_heatmap, plot_sweep_lines

__all__ = ["plot_learning_curves", "plot_confusion_matrix", "plot_per_class_accuracy",
           "plot_linear_weights", "plot_predictions", "plot_layer_stats", "plot_statistic_by_run",
           "plot_sweep_lines", "plot_accuracy_heatmap", "save_figure"]
