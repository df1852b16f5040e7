"""Training: ``train_step``, ``Trainer``, ``History``, callbacks and checkpoint files.

Modules: ``step`` (the one training step), ``trainer`` (the one loop), ``meter`` (running sums of
an epoch), ``history``, ``callbacks``, ``layer_stats`` (per-layer statistics from hooks; their file's
writer and reader are ``npnet._layer_stats_csv``, on floor 0, as ``npnet.plots`` reads it too),
``checkpoint`` (file layout), ``state`` (a Trainer's state as arrays, checked before it is
assigned), ``progress`` (tqdm bar, per-epoch lines, Ctrl-C). The application that builds runs
from YAML configs lives a floor above, in ``npnet.run``.
"""
from .callbacks import Callback, Checkpoint, EarlyStopping, EpochLogger
from .checkpoint import atomic_write, load_checkpoint, save_checkpoint
from .history import History
from .layer_stats import LayerStats
from .._layer_stats_csv import read_layer_stats_csv
from .meter import Meter
from .step import NonFiniteError, train_step
from .trainer import NonFiniteLossError, Trainer

__all__ = ["train_step", "Trainer", "History", "Meter", "Callback", "Checkpoint", "EarlyStopping",
           "EpochLogger", "LayerStats", "read_layer_stats_csv", "NonFiniteError", "NonFiniteLossError",
           "save_checkpoint", "load_checkpoint", "atomic_write"]
