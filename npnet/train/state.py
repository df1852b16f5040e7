"""A training state as one flat dict of arrays (layout in ``checkpoint``), and back: every part
checked before any is assigned, so that a failed load changes nothing.

Pure functions over the values and the stateful objects they are given (model, optimizer,
scheduler, loaders, callbacks, random generators): the Trainer owns its fields and assigns them.
"""
import numpy as np

from .._io import from_json_array, to_json_array
from . import checkpoint as ckpt
from .history import History
from .meter import Meter

# objects whose state must be in the checkpoint exactly when the Trainer has them; loaders and
# callbacks are restored when both sides have a state (a callback may be added on resume)
STRICT = ("model", "optimizer", "scheduler", "rng")
# keys that an object's own load_state_dict accepts being absent / surplus: BatchNorm's counter
# (as PyTorch does), optimizer buffers (made at the first step; the optimizer checks them), and
# the states of generators the model no longer has
_MAY_MISS = {"model": lambda k: k.endswith("num_batches_tracked"),
             "optimizer": lambda k: k.startswith("state.")}
_MAY_ADD = {"optimizer": lambda k: k.startswith("state."), "rng": lambda k: True}


def stateful(model, optimizer, scheduler, loaders, callbacks):
    """``{section: object}`` of every part of a training state (``scheduler`` may be None;
    loaders without ``state_dict`` are left out; a callback's section is
    ``callback/<ClassName>.<k>``, k counting the callbacks of that class, so that a state goes
    back to the same kind of callback whatever other callbacks are added or removed)."""
    objects = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    for name, loader in loaders.items():
        if hasattr(loader, "state_dict"):
            objects[name] = loader
    seen = {}
    for cb in callbacks:
        kind = type(cb).__name__
        seen[kind] = seen.get(kind, -1) + 1
        objects[f"callback/{kind}.{seen[kind]}"] = cb
    objects["rng"] = ckpt.RandomState(model)
    objects["algorithms"] = ckpt.ConvAlgorithms(model)
    return objects


def pack(objects, epoch, global_step, config, history, unfinished):
    """The flat dict of arrays: counters, config, history, the meter of an ``unfinished`` epoch
    (or None) and every object's ``state_dict()`` under its section."""
    arrays = {"epoch": np.array(epoch, np.int64), "global_step": np.array(global_step, np.int64),
              "step": np.array(unfinished.steps if unfinished else 0, np.int64),
              "config": to_json_array(config), "history": to_json_array(history.to_dict()),
              "progress": to_json_array(unfinished.to_dict() if unfinished else {})}
    for name, obj in objects.items():
        if obj is not None:
            arrays.update(ckpt.with_prefix(name, obj.state_dict()))
    return arrays


def unpack(arrays, objects):
    """Checks ``arrays`` against ``objects`` without changing anything and returns the Trainer's
    own values: ``{"epoch", "global_step", "config", "history", "unfinished"}``. Every problem
    found is listed in one ValueError."""
    problems = []
    try:
        values = {"epoch": int(arrays["epoch"]), "global_step": int(arrays["global_step"]),
                  "config": from_json_array(arrays["config"]),
                  "history": History.from_dict(from_json_array(arrays["history"]))}
        progress = from_json_array(arrays["progress"])
        values["unfinished"] = Meter.from_dict(progress) if progress else None
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        problems.append(f"counters, config or history missing or unreadable ({type(e).__name__}: {e})")
    for name, obj in objects.items():
        problems += _check(name, ckpt.section(arrays, name), obj)
    if problems:
        raise ValueError("the checkpoint does not fit this Trainer: " + "; ".join(problems))
    return values


def _check(name, saved, obj):
    if obj is None or not saved:
        if name in STRICT and bool(saved) != (obj is not None):
            return [f"the checkpoint has {'a' if saved else 'no'} {name} state but the Trainer has "
                    f"{'a' if obj is not None else 'no'} {name}"]
        return []
    own = obj.state_dict()
    may_miss, may_add = _MAY_MISS.get(name, _never), _MAY_ADD.get(name, _never)
    problems = []
    missing = [k for k in own if k not in saved and not may_miss(k)]
    if missing:
        problems.append(f"{name}: missing keys {_few(missing)}")
    unexpected = [k for k in saved if k not in own and not may_add(k)]
    if unexpected:
        problems.append(f"{name}: unexpected keys {_few(unexpected)}")
    shapes = [f"{k} {np.shape(saved[k])} (expected {np.shape(own[k])})" for k in saved
              if k in own and np.shape(saved[k]) != np.shape(own[k])]
    if shapes:
        problems.append(f"{name}: wrong shapes {_few(shapes)}")
    return problems


def _never(key):
    return False


def _few(items, n=6):
    shown = ", ".join(items[:n])
    return shown + (f" (and {len(items) - n} more)" if len(items) > n else "")


def assign(arrays, objects):
    """Loads every object's section (after ``unpack`` found no problem). Should an object's own
    ``load_state_dict`` still refuse its state, that object and those loaded before it get their
    previous state back and the error propagates: all or nothing."""
    done = []  # (object, its state before the load)
    try:
        for name, obj in objects.items():
            saved = ckpt.section(arrays, name)
            if obj is not None and saved:
                done.append((obj, obj.state_dict()))
                obj.load_state_dict(saved)
    except BaseException:
        for obj, previous in reversed(done):
            obj.load_state_dict(previous)
        raise
