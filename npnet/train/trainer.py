"""Trainer: the training loop, evaluation, prediction, checkpoints and resume.

Every step is ``train_step`` (``step.py``): zero_grad -> forward -> loss -> backward without the
input gradient -> optimizer step. The scheduler (if any) steps once after each epoch. Resuming
from a checkpoint restores the model (parameters and buffers), the optimizer, the scheduler, the
loaders' and the model's random generators, the callbacks and the history, so a resumed run
continues bit for bit as the uninterrupted one would have.

On several MPI ranks (``npnet.distributed``, world size > 1) ``fit`` trains one replica per rank
on its slice of every global batch and sums the gradients (``distributed.replicate``); the
History holds the global batch's numbers, evaluation is sharded and its counts summed, and rank 0
alone writes checkpoints, the progress bar and messages: the same run as on one process.
"""
import json
import os
import sys

import numpy as np

from .. import distributed
from .._io import from_json_array
from . import checkpoint as ckpt
from . import progress, state
from ..nn import no_grad
from .callbacks import EpochLogger
from .history import History
from .meter import Meter
from .step import NonFiniteError, check_finite, correct_count, train_step


class NonFiniteLossError(NonFiniteError):
    """Training met a NaN or infinite output or loss. ``epoch`` and ``step`` (1-based) say where;
    ``history`` holds everything measured before."""

    def __init__(self, message, epoch, step, history, what=None):
        FloatingPointError.__init__(self, message)
        self.what, self.epoch, self.step, self.history = what, epoch, step, history


class Trainer:
    """Trains ``model`` with ``loss`` (a criterion), ``optimizer`` and an optional epoch scheduler.

    callbacks: ``Callback`` objects (``Checkpoint``, ``EarlyStopping``, your own), run in order.
    config: a JSON-serialisable dict stored in every checkpoint (the run's configuration).
    progress: True shows a tqdm bar per epoch on stderr that moves with every batch (loss,
    accuracy, images/s); False shows nothing; None (default) shows the bar when stderr is a
    terminal and otherwise one plain line per epoch on stderr (epoch, train and validation loss
    and accuracy, lr, time, images/s), unless an ``EpochLogger`` callback writes that line.

    Attributes: ``history`` (a ``History``), ``epoch`` (completed epochs), ``global_step``,
    ``meter`` (the ``Meter`` of the current or last epoch), ``last_checkpoint`` (the path last
    written or resumed from), ``stop_training`` (set it from a callback to stop after the
    current epoch), ``interrupt_hint`` (default True: after a Ctrl-C, print on stderr where
    training stopped and how to resume with ``fit``; an application that says it in its own
    terms, such as ``npnet train``, sets it False).
    """

    def __init__(self, model, loss, optimizer, scheduler=None, callbacks=(), config=None,
                 progress=None):
        self.model, self.loss, self.optimizer, self.scheduler = model, loss, optimizer, scheduler
        self.callbacks = list(callbacks)
        self.config = {} if config is None else dict(config)
        json.dumps(self.config)  # fails now, not at the first checkpoint, if it cannot be stored
        self.progress = progress
        self.history, self.epoch, self.global_step = History(), 0, 0
        self.train_loader = self.val_loader = None
        self.stop_training, self.last_checkpoint, self.meter = False, None, None
        self.interrupt_hint = True
        self.stopped_by = None  # "SIGINT" (Ctrl-C) or "SIGTERM" after fit() stopped on a signal
        self._unfinished = None  # the Meter of an epoch stopped by Ctrl-C, continued by fit()
        self._replicas = None  # during fit() on several ranks: distributed.Replicas

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, train_loader, val_loader=None, epochs=1, resume=None):
        """Trains until ``epochs`` epochs are completed in total (counting resumed ones).

        resume: a checkpoint path; training continues from its state. The first Ctrl-C or
        SIGTERM stops after the current step and saves a resumable checkpoint through the
        ``Checkpoint`` callbacks (a second signal aborts at once); ``stopped_by`` names it. A non-finite loss raises ``NonFiniteLossError``.
        Returns ``self.history``.
        """
        _check_not_empty(train_loader, "training")
        _check_not_empty(val_loader, "validation")
        previous = self.train_loader, self.val_loader
        self.train_loader, self.val_loader = train_loader, val_loader
        if resume is not None:
            try:
                self.load_checkpoint(resume)
            except BaseException:
                self.train_loader, self.val_loader = previous
                raise
        self.stop_training = False
        for cb in self.callbacks:
            cb.on_fit_begin(self)
        self._replicas = distributed.replicate(self.model, train_loader)
        if distributed.is_writer():
            progress.say_cold_start(self.progress)
        with progress.ctrl_c_stops(quiet=not distributed.is_writer()) as ctrl_c:
            while self.epoch < epochs and not self.stop_training:
                self._run_epoch(epochs, ctrl_c)
                stop = ctrl_c.requested
                if self._replicas is not None:  # a Ctrl-C that reached any rank stops all
                    stop = self._replicas.any(stop)
                if stop:
                    self.stopped_by = self._stop_signal(ctrl_c)
                    self._interrupt()
                    break
        if self._replicas is not None:
            self._replicas.close()
            self._replicas = None
        for cb in self.callbacks:
            cb.on_fit_end(self)
        return self.history

    def _run_epoch(self, epochs, ctrl_c):
        e, lr = self.epoch + 1, self.optimizer.lr
        meter, self._unfinished = self._unfinished or Meter(), None
        self.meter = meter
        show = progress.mode(self.progress) if distributed.is_writer() else None
        bar = progress.epoch_bar(e, epochs, len(self.train_loader), meter.steps, show == "bar")
        try:
            if not self._train_epoch(e, meter, bar, ctrl_c):
                return  # stopped by Ctrl-C in the middle
            row = {"train_loss": meter.loss, "train_accuracy": meter.accuracy}
            if self.val_loader is not None:
                val = self._evaluate(self.val_loader, f"the validation of epoch {e}")
                row.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
            self.history.add_epoch(epoch=e, lr=lr, time=meter.time, **row)
            progress.show_epoch(bar, self.history.epochs[-1], meter.images_per_s)
        finally:
            bar.close()
        if show == "lines" and not any(isinstance(cb, EpochLogger) for cb in self.callbacks):
            print(progress.epoch_line(self.history.epochs[-1], epochs, meter.images_per_s),
                  file=sys.stderr, flush=True)
        self.epoch = e
        if self.scheduler is not None:
            self.scheduler.step()
        for cb in self.callbacks:
            cb.on_epoch_end(self, e, self.history.epochs[-1])
        self._write_due_checkpoints()

    def _train_epoch(self, e, meter, bar, ctrl_c):
        """One pass over the training loader; False if stopped by Ctrl-C before its end."""
        self.model.train()
        batches, replicas = len(self.train_loader), self._replicas
        for x, y in self.train_loader:
            try:
                loss, correct = train_step(self.model if replicas is None else replicas.model,
                                           self.loss, self.optimizer, x, y)
            except NonFiniteError as err:
                raise self._non_finite(err.what, f"epoch {e}, step {meter.steps + 1} of {batches}",
                                       e, meter.steps + 1) from None
            n, agreed = len(y), None
            if replicas is not None:  # the global batch's numbers; Ctrl-C on any rank stops all
                loss, correct, n, agreed = replicas.step(loss, correct, n, ctrl_c.requested)
            self.history.add_step(loss)
            self.global_step += 1
            meter.update(loss, correct, n)
            progress.show_step(bar, meter)
            for cb in self.callbacks:
                cb.on_batch_end(self, meter.steps, {"loss": loss, "batch_size": n})
            stop = ctrl_c.requested if agreed is None else agreed  # every rank alike
            if stop and meter.steps < batches:
                self._unfinished = meter
                return False
        if meter.seen == 0:  # a loader whose len() promised batches that never came
            raise ValueError(f"Trainer.fit: the training loader gave no batches in epoch {e}")
        return True

    def _non_finite(self, what, where, epoch, step):
        kept = (f"the last good checkpoint is kept: {self.last_checkpoint}" if self.last_checkpoint
                else "no checkpoint was written (add a Checkpoint callback to keep one)")
        return NonFiniteLossError(
            f"Trainer: non-finite values (NaN or inf) in {what} at {where} (global step "
            f"{self.global_step + 1}); training stopped and {kept}. A lower learning rate or "
            f"normalised float32 inputs usually help.", epoch, step, self.history, what)

    def _stop_signal(self, ctrl_c):
        """The signal that stopped training, the same on every rank: SIGTERM if it reached any
        (srun, scancel and mpirun send it to every rank, a terminal's Ctrl-C SIGINT)."""
        term = ctrl_c.signal == "SIGTERM"
        if self._replicas is not None:
            term = self._replicas.any(term)
        return "SIGTERM" if term else "SIGINT"

    def _interrupt(self):
        self.history.interrupted = True
        for cb in self.callbacks:
            cb.on_interrupt(self)
        self._write_due_checkpoints()
        loader = self.train_loader
        if self._unfinished is not None and hasattr(loader, "load_state_dict"):
            # re-arm the loader at the saved position (after the checkpoints were written), so
            # that a later fit() in this process continues mid-epoch
            loader.load_state_dict(loader.state_dict())
        where = (f"in epoch {self.epoch + 1} after step {self._unfinished.steps}"
                 if self._unfinished else f"after epoch {self.epoch}")
        hint = (f"; resume with fit(..., resume={self.last_checkpoint!r})" if self.last_checkpoint
                else "; no checkpoint was written (no Checkpoint callback)")
        if self.interrupt_hint and distributed.is_writer():
            print(f"\nTraining interrupted {where}{hint}", file=sys.stderr)

    def _write_due_checkpoints(self):
        """Writes the state once to every path the callbacks ask for, after all of them ran."""
        paths = [p for cb in self.callbacks for p in cb.checkpoint_paths()]
        if paths:
            arrays = self.state_dict() if distributed.is_writer() else None  # rank 0 writes
            for path in paths:
                if arrays is not None:
                    ckpt.save_checkpoint(path, arrays)
                self.last_checkpoint = os.fspath(path)

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self, loader):
        """``{"loss", "accuracy", "n"}`` over ``loader`` in eval mode (the model's mode is
        restored). The loss is the mean of the batch losses weighted by batch size; accuracy is
        None when the targets are not class labels. An empty loader raises ValueError."""
        return self._evaluate(loader, "evaluation")

    def _evaluate(self, loader, where):
        was_training = self.model.training
        self.model.eval()
        meter = Meter()
        shards = distributed.sharded_evaluation(self.model, loader)  # None in one process
        try:
            for x, y in loader:
                with no_grad():
                    out = self.model(x)
                try:
                    check_finite(out, "the model's outputs")
                except NonFiniteError as err:
                    raise self._non_finite(err.what, where, self.epoch + 1, None) from None
                meter.update(self.loss(out, y), correct_count(out, y), len(y))
        finally:
            self.model.train(was_training)
            if shards is not None:
                shards.close()
        if shards is not None:  # every rank's counts: the numbers of one process
            meter.loss_sum, meter.correct, meter.seen = shards.total(meter.loss_sum, meter.correct,
                                                                     meter.seen)
        if meter.seen == 0:
            raise ValueError(f"Trainer: {where}: the loader gave no batches")
        return {"loss": meter.loss, "accuracy": meter.accuracy, "n": meter.seen}

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

    # -- state and checkpoints ------------------------------------------------------------------
    def _stateful(self):
        loaders = {"train_loader": self.train_loader, "val_loader": self.val_loader}
        return state.stateful(self.model, self.optimizer, self.scheduler, loaders, self.callbacks)

    def state_dict(self):
        """The whole training state as a flat ``str -> numpy array`` dict (layout in
        ``npnet.train.checkpoint``): counters, config, history, an unfinished epoch's meter, and
        the state of the model, optimizer, scheduler, loaders (those given to ``fit``),
        callbacks and random generators."""
        return state.pack(self._stateful(), self.epoch, self.global_step, self.config,
                          self.history, self._unfinished)

    def load_state_dict(self, state_dict):
        """Restores a ``state_dict()``. Everything is checked first (model, optimizer, scheduler,
        loaders, callbacks, generators: keys and shapes), then assigned; a state that does not
        fit raises one ValueError listing the problems and changes nothing. The Trainer's
        ``config`` is kept (the stored one is returned by ``load_checkpoint``). Returns self."""
        objects = self._stateful()
        values = state.unpack(state_dict, objects)
        state.assign(state_dict, objects)
        self.epoch, self.global_step = values["epoch"], values["global_step"]
        self.history, self._unfinished = values["history"], values["unfinished"]
        return self

    def save_checkpoint(self, path):
        """Writes the training state to ``path`` (``.npz``) atomically; returns the path."""
        ckpt.save_checkpoint(path, self.state_dict())
        self.last_checkpoint = os.fspath(path)
        return path

    def load_checkpoint(self, path):
        """Restores the state saved by ``save_checkpoint`` (see ``load_state_dict``); the loaders
        given to ``fit`` (if any) get their saved state too. Returns the stored config. A file
        that cannot be read or does not fit raises a ValueError naming it and changes nothing."""
        path = os.fspath(path)
        arrays = ckpt.load_checkpoint(path)
        try:
            self.load_state_dict(arrays)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        self.last_checkpoint = path
        return from_json_array(arrays["config"])


def _check_not_empty(loader, what):
    """A loader with no batches would record an epoch of nothing (loss 0, accuracy 0)."""
    if loader is not None and hasattr(loader, "__len__") and len(loader) == 0:
        raise ValueError(f"Trainer.fit: the {what} loader has no batches ({loader!r}); give it "
                         "data, and with drop_last=True a batch_size no larger than the data")
