"""Trainer: the training loop, evaluation, prediction, checkpoints and resume.

Every step runs, in this order: ``optimizer.zero_grad()`` -> ``out = model(x)`` ->
``loss = criterion(out, y)`` -> ``model.backward(criterion.backward())`` -> ``optimizer.step()``.
The scheduler (if any) steps once after each epoch. Resuming from a checkpoint restores the model
(parameters and buffers), the optimizer, the scheduler, the loaders' and the model's random
generators, the callbacks and the history, so a resumed run continues bit for bit as the
uninterrupted one would have.
"""
import json
import math
import sys
import time

import numpy as np

from . import checkpoint as ckpt
from . import progress, state
from ..nn import no_grad
from .history import History


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN or infinite output or loss. ``epoch`` and ``step`` (1-based) say where;
    ``history`` holds everything measured before."""

    def __init__(self, message, epoch, step, history):
        super().__init__(message)
        self.epoch, self.step, self.history = epoch, step, history


class Trainer:
    """Trains ``model`` with ``loss`` (a criterion), ``optimizer`` and an optional epoch scheduler.

    callbacks: ``Callback`` objects (``Checkpoint``, ``EarlyStopping``, your own).
    config: a JSON-serialisable dict stored in every checkpoint (the run's configuration).
    progress: show a tqdm bar per epoch (loss, accuracy, images/s); None shows it only when
    stderr is a terminal.

    Attributes: ``history`` (a ``History``), ``epoch`` (completed epochs), ``global_step``,
    ``last_checkpoint`` (the path last written or resumed from), ``stop_training`` (set it from
    a callback to stop after the current epoch).
    """

    def __init__(self, model, loss, optimizer, scheduler=None, callbacks=(), config=None,
                 progress=None):
        self.model, self.loss, self.optimizer, self.scheduler = model, loss, optimizer, scheduler
        self.callbacks = sorted(callbacks, key=lambda cb: getattr(cb, "order", 0))
        self.config = {} if config is None else dict(config)
        json.dumps(self.config)  # fails now, not at the first checkpoint, if it cannot be stored
        self.progress = progress
        self.history, self.epoch, self.global_step = History(), 0, 0
        self.train_loader = self.val_loader = None
        self.stop_training, self.last_checkpoint = False, None
        self._partial = None  # running sums of an epoch stopped by Ctrl-C
        self._stop_requested = False
        self._images_per_s = 0.0

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, train_loader, val_loader=None, epochs=1, resume=None):
        """Trains until ``epochs`` epochs are completed in total (counting resumed ones).

        resume: a checkpoint path; training continues from its state. The first Ctrl-C stops
        after the current step and saves a resumable checkpoint through the ``Checkpoint``
        callbacks (a second one aborts at once). A non-finite loss raises ``NonFiniteLossError``.
        Returns ``self.history``.
        """
        self.train_loader, self.val_loader = train_loader, val_loader
        if resume is not None:
            self.load_checkpoint(resume)
        self.stop_training = self._stop_requested = False
        for cb in self.callbacks:
            cb.on_fit_begin(self)
        with progress.ctrl_c_stops(self):
            while self.epoch < epochs and not self.stop_training:
                self._run_epoch(epochs)
                if self._stop_requested:
                    self._interrupt()
                    break
        for cb in self.callbacks:
            cb.on_fit_end(self)
        return self.history

    def _run_epoch(self, epochs):
        e, lr = self.epoch + 1, self.optimizer.lr
        show = self.progress if self.progress is not None else sys.stderr.isatty()
        bar = progress.epoch_bar(e, epochs, len(self.train_loader),
                                 self._partial["step"] if self._partial else 0, show)
        try:
            row = self._train_epoch(e, bar)
            if row is None:  # stopped by Ctrl-C in the middle
                return
            if self.val_loader is not None:
                t0 = time.perf_counter()
                val = self._evaluate(self.val_loader, f"the validation of epoch {e}")
                row.update(val_loss=val["loss"], val_accuracy=val["accuracy"],
                           time=row["time"] + time.perf_counter() - t0)
                progress.postfix(bar, row, refresh=True, img_s=self._images_per_s)
        finally:
            bar.close()
        row.update(epoch=e, lr=lr)
        self.history.add_epoch(**row)
        self.epoch = e
        if self.scheduler is not None:
            self.scheduler.step()
        for cb in self.callbacks:
            cb.on_epoch_end(self, e, self.history.epochs[-1])

    def _train_epoch(self, e, bar):
        """One pass over the training loader; the epoch's row, or None if stopped by Ctrl-C."""
        sums = self._partial or {"step": 0, "loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}
        self._partial = None
        self.model.train()
        start = time.perf_counter() - sums["time"]
        fresh, t0 = 0, time.perf_counter()  # images and start of this call, for images/s
        for x, y in self.train_loader:
            sums["step"] += 1
            loss, correct = self._step(x, y, e, sums["step"])
            n = len(y)
            sums["loss"] += loss * n
            sums["seen"] += n
            fresh += n
            if correct is None or sums["correct"] is None:
                sums["correct"] = None  # targets are not class labels: no accuracy
            else:
                sums["correct"] += correct
            sums["time"] = time.perf_counter() - start
            self._images_per_s = fresh / max(time.perf_counter() - t0, 1e-9)
            progress.show_step(bar, sums, self._images_per_s)
            for cb in self.callbacks:
                cb.on_batch_end(self, sums["step"], {"loss": loss, "batch_size": n})
            if self._stop_requested and sums["step"] < len(self.train_loader):
                self._partial = sums
                return None
        acc = None if sums["correct"] is None else sums["correct"] / max(sums["seen"], 1)
        return {"train_loss": sums["loss"] / max(sums["seen"], 1), "train_accuracy": acc,
                "time": sums["time"]}

    def _step(self, x, y, epoch, step):
        """zero_grad -> forward -> loss -> backward -> step; returns (loss, correct or None)."""
        self.optimizer.zero_grad()
        out = self.model(x)
        where = f"epoch {epoch}, step {step} of {len(self.train_loader)}"
        if not np.isfinite(out).all():
            self._non_finite("the model's outputs", where, epoch, step)
        loss = self.loss(out, y)
        if not math.isfinite(loss):
            self._non_finite("the loss", where, epoch, step)
        self.model.backward(self.loss.backward(), input_grad=False)  # d loss / d images: unused
        self.optimizer.step()
        self.history.add_step(loss)
        self.global_step += 1
        return loss, _correct(out, y)

    def _non_finite(self, what, where, epoch, step):
        kept = (f"the last good checkpoint is kept: {self.last_checkpoint}" if self.last_checkpoint
                else "no checkpoint was written (add a Checkpoint callback to keep one)")
        raise NonFiniteLossError(
            f"Trainer: non-finite values (NaN or inf) in {what} at {where} (global step "
            f"{self.global_step + 1}); training stopped and {kept}. A lower learning rate or "
            f"normalised float32 inputs usually help.", epoch, step, self.history)

    def _interrupt(self):
        self.history.interrupted = True
        for cb in self.callbacks:
            cb.on_interrupt(self)
        loader = self.train_loader
        if self._partial is not None and hasattr(loader, "load_state_dict"):
            # re-arm the loader at the saved position (after the checkpoints were written), so
            # that a later fit() in this process continues mid-epoch
            loader.load_state_dict(loader.state_dict())
        where = (f"in epoch {self.epoch + 1} after step {self._partial['step']}" if self._partial
                 else f"after epoch {self.epoch}")
        hint = (f"; resume with fit(..., resume={self.last_checkpoint!r})" if self.last_checkpoint
                else "; no checkpoint was written (no Checkpoint callback)")
        print(f"\nTraining interrupted {where}{hint}", file=sys.stderr)

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self, loader):
        """``{"loss", "accuracy", "n"}`` over ``loader`` in eval mode (the model's mode is
        restored). The loss is the mean of the batch losses weighted by batch size; accuracy is
        None when the targets are not class labels."""
        return self._evaluate(loader, "evaluation")

    def _evaluate(self, loader, where):
        was_training = self.model.training
        self.model.eval()
        total, correct, n = 0.0, 0, 0
        try:
            for x, y in loader:
                with no_grad():
                    out = self.model(x)
                if not np.isfinite(out).all():
                    self._non_finite("the model's outputs", where, self.epoch + 1, None)
                total += self.loss(out, y) * len(y)
                c = _correct(out, y)
                correct = None if c is None or correct is None else correct + c
                n += len(y)
        finally:
            self.model.train(was_training)
        n1 = max(n, 1)
        return {"loss": total / n1, "accuracy": None if correct is None else correct / n1, "n": n}

    def predict(self, x, batch_size=256, transform=None):
        """Logits (N, num_classes) for the inputs ``x`` (N, ...), in eval mode, ``batch_size`` at a
        time (None: all at once); ``transform`` (e.g. the test transform) is applied per batch."""
        bs = len(x) if batch_size is None else int(batch_size)
        was_training = self.model.training
        self.model.eval()
        try:
            with no_grad():
                outs = [self.model(x[i:i + bs] if transform is None else transform(x[i:i + bs]))
                        for i in range(0, len(x), bs)]
        finally:
            self.model.train(was_training)
        return np.concatenate(outs) if outs else np.zeros((0,), np.float32)

    # -- checkpoints ----------------------------------------------------------------------------
    def state_arrays(self):
        """The whole training state as a flat dict of arrays (layout in ``npnet.train.checkpoint``)."""
        return state.training_state(self)

    def save_checkpoint(self, path):
        """Writes the training state to ``path`` (``.npz``) atomically; returns the path."""
        ckpt.save_checkpoint(path, self.state_arrays())
        self.last_checkpoint = str(path)
        return path

    def load_checkpoint(self, path):
        """Restores the state saved by ``save_checkpoint``; the loaders given to ``fit`` (if any)
        get their saved state too. Returns the stored config."""
        config = state.restore_training_state(self, ckpt.load_checkpoint(path), path)
        self.last_checkpoint = str(path)
        return config


def _correct(out, y):
    """Number of rows of ``out`` (N, C) whose argmax is the label in ``y`` (N,), or None when
    ``y`` holds no class labels."""
    y = np.asarray(y)
    if out.ndim != 2 or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        return None
    return int(np.sum(out.argmax(axis=1) == y))

