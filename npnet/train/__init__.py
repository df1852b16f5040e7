"""Training: ``Trainer``, ``History``, callbacks and checkpoint files.

Modules: ``trainer`` (the loop), ``history``, ``callbacks``, ``checkpoint`` (file layout, atomic
writes), ``state`` (a Trainer's state as arrays), ``progress`` (tqdm bar, Ctrl-C).
"""
from .callbacks import Callback, Checkpoint, EarlyStopping, EpochLogger
from .checkpoint import atomic_write, load_checkpoint, save_checkpoint
from .history import History
from .trainer import NonFiniteLossError, Trainer

__all__ = ["Trainer", "History", "Callback", "Checkpoint", "EarlyStopping", "EpochLogger",
           "NonFiniteLossError",
           "save_checkpoint", "load_checkpoint", "atomic_write"]
