"""The training state of a ``Trainer`` as flat arrays, and back (layout in ``checkpoint``)."""
import numpy as np

from . import checkpoint as ckpt
from .history import History


def training_state(trainer):
    """Everything a resumed run needs: counters, config, history, the running sums of a stopped
    epoch, and the state of the model, optimizer, scheduler, loaders, callbacks and RNGs."""
    partial = trainer._partial
    arrays = {"epoch": np.array(trainer.epoch, np.int64),
              "global_step": np.array(trainer.global_step, np.int64),
              "step": np.array(partial["step"] if partial else 0, np.int64),
              "config": ckpt.to_json_array(trainer.config),
              "history": ckpt.to_json_array(trainer.history.to_dict()),
              "progress": ckpt.to_json_array(partial or {})}
    arrays.update(ckpt.with_prefix("model", trainer.model.state_dict()))
    arrays.update(ckpt.with_prefix("optimizer", trainer.optimizer.state_dict()))
    if trainer.scheduler is not None:
        arrays.update(ckpt.with_prefix("scheduler", trainer.scheduler.state_dict()))
    for name in ("train_loader", "val_loader"):
        loader = getattr(trainer, name)
        if hasattr(loader, "state_dict"):
            arrays.update(ckpt.with_prefix(name, loader.state_dict()))
    for key, cb in _callback_keys(trainer.callbacks):
        arrays.update(ckpt.with_prefix(key, cb.state_dict()))
    arrays.update(ckpt.rng_arrays(trainer.model))
    return arrays


def restore_training_state(trainer, arrays, path):
    """Puts ``arrays`` (from ``training_state``) back into ``trainer``; returns the stored config.
    The loaders set on the trainer (by ``fit``) get their state too."""
    trainer.model.load_state_dict(ckpt.section(arrays, "model"))
    trainer.optimizer.load_state_dict(ckpt.section(arrays, "optimizer"))
    _restore_scheduler(trainer.scheduler, ckpt.section(arrays, "scheduler"), path)
    for name in ("train_loader", "val_loader"):
        saved, loader = ckpt.section(arrays, name), getattr(trainer, name)
        if saved and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(saved)
    for key, cb in _callback_keys(trainer.callbacks):
        saved = ckpt.section(arrays, key)
        if saved:
            cb.load_state_dict(saved)
    ckpt.restore_rngs(trainer.model, arrays)
    trainer.epoch, trainer.global_step = int(arrays["epoch"]), int(arrays["global_step"])
    trainer.history = History.from_dict(ckpt.from_json_array(arrays["history"]))
    trainer._partial = ckpt.from_json_array(arrays["progress"]) or None
    return ckpt.from_json_array(arrays["config"])


def _restore_scheduler(scheduler, saved, path):
    if bool(saved) != (scheduler is not None):
        raise ValueError(f"{path}: the checkpoint has {'a' if saved else 'no'} scheduler state "
                         f"but the Trainer has {'a' if scheduler is not None else 'no'} scheduler")
    if saved:
        scheduler.load_state_dict(saved)


def _callback_keys(callbacks):
    """``(callback/<ClassName>.<k>, cb)``, k counting callbacks of that class: a state goes back
    to the same kind of callback, whatever other callbacks are added or removed."""
    seen = {}
    for cb in callbacks:
        name = type(cb).__name__
        seen[name] = seen.get(name, -1) + 1
        yield f"callback/{name}.{seen[name]}", cb
