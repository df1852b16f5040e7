"""Weights in and out of npnet as safetensors files: ``npnet.save(state_dict, path)`` and
``npnet.load(path)``.

safetensors is the format PyTorch and Hugging Face users exchange weights in: a JSON header (names,
dtypes, shapes, byte offsets) followed by the raw little-endian bytes. Reading one runs no code (no
pickle). npnet's state dicts already have PyTorch's keys and layouts, so a file goes both ways::

    npnet.save(model.state_dict(), "model.safetensors")
    twin.load_state_dict(safetensors.torch.load_file("model.safetensors"))    # in PyTorch
    safetensors.torch.save_file(twin.state_dict(), "twin.safetensors")        # and back
    model.load_state_dict(npnet.load("twin.safetensors"))

Files are written through ``safetensors.numpy.save`` (the bytes) and ``npnet._io.atomic_write`` (a
temporary file beside ``path``, then a rename), so an interrupted save leaves the previous file
whole; they are read with ``safetensors.numpy.load_file``. The header's metadata gets
``{"format": "pt"}``: the arrays are in PyTorch's layouts, and Hugging Face's loaders look for that
field.

Trainer checkpoints: decided to keep them ``.npz`` (``npnet.train.checkpoint``), not safetensors.
A checkpoint is npnet's own resume file, not an exchange file: besides the weights it holds the
optimizer and scheduler state in npnet's flat layout, loader and callback state, the config, the
history and the RNG states, which are JSON strings (a PCG64 state has 128-bit integers that fit no
tensor dtype). safetensors stores only numeric tensors, so all of those would move into its
string-to-string metadata, a second untyped channel beside the tensors, and no PyTorch or Hugging
Face tool could use them anyway. Both formats are pickle-free as npnet reads them (``np.load`` with
``allow_pickle=False``) and both are written atomically, so moving would gain no safety. What a
user exchanges is the weights: ``npnet.save(model.state_dict(), ...)`` after training, or from a
checkpoint ``npnet.save(section(load_checkpoint(path), "model"), ...)`` with the two helpers of
``npnet.train.checkpoint``.
"""
from collections.abc import Mapping
import os

import numpy as np

from ._io import atomic_write

__all__ = ["save", "load"]

_HINT = "; NumPy has no bfloat16: convert those tensors to float32 before saving"
# what safetensors stores that NumPy also has (no bfloat16 or float8 in NumPy)
_DTYPES = frozenset(np.dtype(t) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
                                          np.uint16, np.uint32, np.uint64, np.float16, np.float32,
                                          np.float64))


def save(state_dict, path, metadata=None):
    """Writes ``state_dict`` (``str -> array``, e.g. ``model.state_dict()``) to the safetensors
    file ``path``, atomically. ``metadata``: optional ``str -> str`` pairs for the header (added to
    ``{"format": "pt"}``). Returns ``path``.

    Raises TypeError naming the key for a value that is not a numeric array safetensors can hold
    (bool, int8-64, uint8-64, float16/32/64), and OSError naming ``path`` if it cannot be written.
    """
    from safetensors.numpy import save as to_bytes

    path = os.fspath(path)
    arrays = _arrays(state_dict, path)
    header = {"format": "pt", **_metadata(metadata, path)}
    data = to_bytes(arrays, metadata=header)
    try:
        return atomic_write(path, lambda f: f.write(data))
    except OSError as e:
        raise type(e)(e.errno, f"npnet.save: cannot write {path} ({e.strerror})") from e


def load(path):
    """The state dict stored in the safetensors file ``path``: ``{key: numpy array}``.

    Raises FileNotFoundError if ``path`` is not a file and ValueError naming ``path`` if it is not
    a safetensors file NumPy can read (e.g. a bfloat16 tensor: convert it to float32 first).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"npnet.load: no such file: {path}")
    try:
        arrays = dict(load_file(path))
    except (SafetensorError, TypeError, ValueError) as e:
        hint = _HINT if "bfloat16" in str(e) else ""
        raise ValueError(f"npnet.load: {path} is not a safetensors file NumPy can read ({e}){hint}") \
            from None
    # with ml_dtypes imported (onnx imports it) safetensors hands out bfloat16 / float8 arrays,
    # which npnet's layers cannot use: the same error with or without it
    odd = {k: a.dtype for k, a in arrays.items() if a.dtype not in _DTYPES}
    if odd:
        raise ValueError(f"npnet.load: {path} is not a safetensors file NumPy can read (tensors "
                         f"{', '.join(f'{k} of {d}' for k, d in odd.items())}){_HINT}")
    return arrays


def _arrays(state_dict, path):
    """``{key: C-contiguous native-order array}``, checked key by key."""
    if not isinstance(state_dict, Mapping):
        hint = " (pass model.state_dict())" if hasattr(state_dict, "state_dict") else ""
        raise TypeError(f"npnet.save({path}): expected a dict of str -> array{hint}, "
                        f"got {type(state_dict).__name__}")
    arrays = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"npnet.save({path}): keys must be str, got {key!r}")
        try:
            array = np.asarray(value)
        except Exception as e:  # e.g. a tensor on another device
            raise TypeError(f"npnet.save({path}): {key}: cannot be read as an array ({e})") from None
        native = array.dtype.newbyteorder("=")
        if native not in _DTYPES:
            raise TypeError(f"npnet.save({path}): {key}: {type(value).__name__} of dtype {array.dtype} "
                            f"cannot be stored; expected a bool, integer or float16/32/64 array")
        arrays[key] = np.asarray(array, dtype=native, order="C")  # ascontiguousarray makes 0-d 1-d
    return arrays


def _metadata(metadata, path):
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError(f"npnet.save({path}): metadata must be a dict of str -> str, got {metadata!r}")
    return dict(metadata)
