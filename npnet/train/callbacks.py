"""Callbacks: hooks the Trainer calls during ``fit``; Checkpoint, EarlyStopping, EpochLogger.

A callback may keep state across epochs; its ``state_dict()`` (flat str -> array) is stored in
every checkpoint, so that a resumed run decides exactly as an uninterrupted one. Callbacks run in
the given order. A callback never writes checkpoints itself: it says where one is due
(``checkpoint_paths``), and the Trainer writes them once every callback of the epoch has run, so
that each file holds every callback's updated state.
"""
import math
import os

import numpy as np

from .progress import epoch_line


class Callback:
    """Base class; override any hook. ``logs`` is the epoch's History row."""

    def on_fit_begin(self, trainer):
        """Called once at the start of ``Trainer.fit`` (also of a resumed one)."""
        pass

    def on_batch_end(self, trainer, step, logs):
        """Called after every training step; ``step`` counts the steps of the epoch (1-based),
        ``logs`` holds the step's ``loss`` and ``batch_size``."""
        pass

    def on_epoch_end(self, trainer, epoch, logs):
        """Called after every epoch (validation included) with its History row ``logs``; set
        ``trainer.stop_training`` to stop after it."""
        pass

    def on_interrupt(self, trainer):
        """Called when Ctrl-C stops training, before the resumable checkpoint is written."""
        pass

    def on_fit_end(self, trainer):
        """Called once when ``fit`` returns (also after a Ctrl-C; not when it raises)."""
        pass

    def checkpoint_paths(self):
        """Paths the Trainer should write the training state to now; asked after every
        callback's ``on_epoch_end`` (and ``on_interrupt``). Default: none."""
        return ()

    def state_dict(self):
        """The callback's state as a flat ``str -> array`` dict, stored in every checkpoint."""
        return {}

    def load_state_dict(self, state):
        """Restores what ``state_dict`` returned (on resume)."""
        pass


def _mode(monitor, mode):
    if mode == "auto":
        return "min" if "loss" in monitor else "max"
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    return mode


class _Monitor(Callback):
    """Tracks the best value of one History column."""

    def __init__(self, monitor, mode, min_delta=0.0):
        self.monitor, self.mode, self.min_delta = monitor, _mode(monitor, mode), float(min_delta)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = 0

    def on_fit_begin(self, trainer):
        if self.monitor.startswith("val_") and trainer.val_loader is None:
            raise ValueError(f"{type(self).__name__}: monitor {self.monitor!r} needs a val_loader; "
                             "pass one to fit() or monitor a train_* column")

    def _improved(self, logs):
        value = logs.get(self.monitor)
        if value is None:
            raise ValueError(f"{type(self).__name__}: {self.monitor!r} is not in the epoch logs "
                             f"({', '.join(k for k, v in logs.items() if v is not None)})")
        if not math.isfinite(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def state_dict(self):
        return {"best": np.array(self.best, np.float64), "best_epoch": np.array(self.best_epoch)}

    def load_state_dict(self, state):
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])


class Checkpoint(_Monitor):
    """Saves the training state (see ``npnet.train.checkpoint``) to ``.npz`` files.

    save_best=True: ``path`` is written when ``monitor`` improves (mode 'auto': lower is better
    for a loss, higher otherwise), and ``last_path`` (default ``last.npz`` beside ``path``) after
    every epoch. save_best=False: ``path`` is written after every epoch and is the last one.
    On Ctrl-C the state after the last completed step goes to ``last_path``, ready for
    ``Trainer.fit(..., resume=last_path)``. The Trainer writes the files (``checkpoint_paths``).
    """

    def __init__(self, path, save_best=True, monitor="val_accuracy", mode="auto", last_path=None):
        super().__init__(monitor, mode)
        self.path, self.save_best = os.fspath(path), bool(save_best)
        if not save_best:
            last_path = self.path
        elif last_path is None:
            last_path = os.path.join(os.path.dirname(self.path), "last.npz")
        self.last_path = os.fspath(last_path)
        if self.save_best and os.path.abspath(self.last_path) == os.path.abspath(self.path):
            raise ValueError(f"Checkpoint: path and last_path are the same file {self.path!r}")
        self._due = []

    def on_fit_begin(self, trainer):
        if self.save_best:
            super().on_fit_begin(trainer)

    def on_epoch_end(self, trainer, epoch, logs):
        if self.save_best and self._improved(logs):
            self.best, self.best_epoch = float(logs[self.monitor]), epoch
            self._due.append(self.path)
        self._due.append(self.last_path)

    def on_interrupt(self, trainer):
        self._due.append(self.last_path)

    def checkpoint_paths(self):
        due, self._due = self._due, []
        return due


class EarlyStopping(_Monitor):
    """Stops ``fit`` after ``patience`` epochs in a row without an improvement of ``monitor``
    by more than ``min_delta`` (default monitor: val_loss)."""

    def __init__(self, patience, monitor="val_loss", mode="auto", min_delta=0.0):
        super().__init__(monitor, mode, min_delta)
        if int(patience) != patience or patience < 1:
            raise ValueError(f"EarlyStopping: patience must be an int >= 1, got {patience!r}")
        self.patience, self.wait, self.stopped_epoch = int(patience), 0, None

    def on_epoch_end(self, trainer, epoch, logs):
        if self._improved(logs):
            self.best, self.best_epoch, self.wait = float(logs[self.monitor]), epoch, 0
        else:
            self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            trainer.stop_training = True

    def state_dict(self):
        return {**super().state_dict(), "wait": np.array(self.wait)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.wait = int(state["wait"])


class EpochLogger(Callback):
    """Writes one line per epoch through ``log`` (default ``print``):
    ``epoch 3: train loss 0.5123 acc 0.8211  val loss 0.4410 acc 0.8502  lr 0.01  12.3 s  730 img/s``.
    A Trainer given an EpochLogger prints no per-epoch line of its own (see ``Trainer``)."""

    def __init__(self, log=print):
        self.log = log

    def on_epoch_end(self, trainer, epoch, logs):
        meter = getattr(trainer, "meter", None)
        self.log(epoch_line(logs, images_per_s=meter.images_per_s if meter else None))
