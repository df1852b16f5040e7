"""Checkpoint files: flat ``.npz`` archives written atomically and read without pickle.

Layout (every value a numpy array; no object arrays, so ``np.load(allow_pickle=False)`` reads it):

* ``format``: ``"npnet-checkpoint-1"``; ``epoch``: completed epochs; ``global_step``: steps taken;
  ``step``: batches already done in epoch ``epoch + 1`` (0 at an epoch boundary);
* ``config``, ``history``, ``progress``: JSON strings in 0-d unicode arrays (the run config, the
  ``History`` so far, and the running sums of an interrupted epoch);
* ``model/<key>``, ``optimizer/<key>``, ``scheduler/<key>``, ``train_loader/<key>``,
  ``val_loader/<key>``, ``callback/<ClassName>.<k>/<key>``: each object's own flat
  ``state_dict()``;
* ``algorithms/json``: ``{Conv2d name: algorithm}`` as a JSON string (``npnet.tune``'s choices, or
  the fixed rule's), so that a resumed run computes with the algorithms it was trained with;
* ``rng/<owner>``: ``bit_generator.state`` of a random Generator as a JSON string, for every
  Generator found on a module of the model (e.g. ``rng/model.14.rng`` for a Dropout) and for
  npnet's default generator (``rng/npnet.default``). NumPy's legacy global ``np.random`` state
  is not used by npnet and not saved.

Keys are ``<section>/<name>`` because the names inside a section (``0.weight``) contain dots.
"""
import os
import zipfile
import zlib

import numpy as np

from .. import init
from .._io import atomic_write, from_json_array, rng_state, set_rng_state, to_json_array
from ..nn.tuning import algorithms, set_algorithms

FORMAT = "npnet-checkpoint-1"


def save_checkpoint(path, arrays):
    """Writes the flat dict ``arrays`` (str -> numpy array) to ``path`` atomically."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    bad = [k for k, v in arrays.items() if v.dtype.hasobject]
    if bad:
        raise TypeError(f"save_checkpoint: object arrays would need pickle; keys {bad}")
    arrays.setdefault("format", np.array(FORMAT))
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path):
    """The flat dict of arrays stored at ``path`` (read with ``allow_pickle=False``).

    A file that is not a complete npnet checkpoint (not an archive, truncated, corrupt, another
    format, or holding object arrays) raises a ValueError naming it and saying which; a missing
    one FileNotFoundError."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as e:
        raise ValueError(f"{path}: {_unreadable(path, e)}") from None
    if str(arrays.get("format", "")) != FORMAT:
        raise ValueError(f"{path}: not an npnet checkpoint (format {arrays.get('format')!r}, "
                         f"expected {FORMAT!r})")
    return arrays


def _unreadable(path, error):
    """Why ``np.load`` could not read ``path``, in the terms of a checkpoint. NumPy's own message
    for a file that is not an archive suggests unpickling it, which npnet never does."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":  # every .npz (a zip archive) starts with a zip entry
        return ("not an npnet checkpoint (not an .npz archive at all); a checkpoint is the "
                "last.npz or best.npz of a run folder")
    if not zipfile.is_zipfile(path):  # no zip directory at the end
        return ("a truncated .npz archive (cut short by an interrupted copy or a full disk), not "
                "a complete npnet checkpoint")
    if "pickle" in str(error):
        return "not an npnet checkpoint (an .npz archive holding object arrays)"
    return (f"a damaged .npz archive, not a readable npnet checkpoint ({type(error).__name__}: "
            f"{error})")


def with_prefix(prefix, state):
    """``{"prefix/key": value}`` from a flat state dict."""
    return {f"{prefix}/{k}": np.asarray(v) for k, v in state.items()}


def section(arrays, prefix):
    """The sub-dict of ``arrays`` under ``prefix/``, with the prefix removed."""
    head = prefix + "/"
    return {k[len(head):]: v for k, v in arrays.items() if k.startswith(head)}


def generators(model):
    """``{owner: Generator}`` for every numpy Generator held by a module of ``model``, plus
    npnet's default generator. A Generator shared by several modules appears under each name."""
    found = {"npnet.default": init.get_rng()}
    for name, module in model.named_modules("model"):
        for attr, value in vars(module).items():
            if isinstance(value, np.random.Generator):
                found[f"{name}.{attr}"] = value
    return found


class RandomState:
    """The Generators of ``model`` (see ``generators``) as one stateful object, stored under
    ``rng/``: ``state_dict()`` is ``{owner: JSON state}``; ``load_state_dict`` checks every
    state it needs before it sets any (states of generators the model no longer has are
    ignored)."""

    def __init__(self, model):
        self.model = model

    def state_dict(self):
        return {k: rng_state(g) for k, g in generators(self.model).items()}

    def load_state_dict(self, state):
        own = generators(self.model)
        missing = sorted(set(own) - set(state))
        if missing:
            raise ValueError(f"checkpoint has no RNG state for {missing}; saved: {sorted(state)}")
        for key, gen in own.items():  # a trial on a copy: a bad state raises before any is set
            set_rng_state(np.random.Generator(type(gen.bit_generator)()), state[key], f"RNG {key}")
        for key, gen in own.items():
            set_rng_state(gen, state[key], f"RNG {key}")


class ConvAlgorithms:
    """The ``algorithm`` of every Conv2d of ``model`` as one stateful object, stored under
    ``algorithms/``; ``load_state_dict`` sets them (all or none: an unknown layer name or an
    algorithm the layer cannot run is an error before any is set)."""

    def __init__(self, model):
        self.model = model

    def state_dict(self):
        return {"json": to_json_array(algorithms(self.model))}

    def load_state_dict(self, state):
        set_algorithms(self.model, from_json_array(state["json"]))
