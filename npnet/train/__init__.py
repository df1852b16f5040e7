"""Training: ``train_step``, ``Trainer``, ``History``, callbacks and checkpoint files.

Modules: ``step`` (the one training step), ``trainer`` (the one loop), ``meter`` (running sums of
an epoch), ``history``, ``callbacks``, ``layer_stats`` (per-layer statistics from hooks), ``checkpoint`` (file layout, atomic writes), ``state`` (a
Trainer's state as arrays, checked before it is assigned), ``progress`` (tqdm bar, per-epoch
lines, Ctrl-C), ``config`` (schema of run configs) and ``experiment`` (one run from a config,
used by ``npnet train``).
"""
from .callbacks import Callback, Checkpoint, EarlyStopping, EpochLogger
from .checkpoint import atomic_write, load_checkpoint, save_checkpoint
from .history import History
from .layer_stats import LayerStats
from .meter import Meter
from .step import NonFiniteError, train_step
from .trainer import NonFiniteLossError, Trainer

__all__ = ["train_step", "Trainer", "History", "Meter", "Callback", "Checkpoint", "EarlyStopping",
           "EpochLogger", "LayerStats", "NonFiniteError", "NonFiniteLossError",
           "save_checkpoint", "load_checkpoint", "atomic_write"]
