"""A restricted unpickler for the CIFAR-10 python batches.

Unpickling runs whatever callables a pickle names, so a hostile file could run `os.system`.
`find_class` is the only way a pickle reaches a callable; ours admits exactly what the official
batches contain (a dict of numpy arrays, lists, ints and strings) and refuses everything else
before anything is called.
"""
import io
import pickle

import numpy as np

_reconstruct = np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's array rebuilder, whatever its module


def _latin1_encode(text, encoding="latin1"):
    """Stand-in for `_codecs.encode`, which Python 3 protocol-2 pickles use to store bytes."""
    if encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError(f"refused codec {encoding!r} (only latin1 is allowed)")
    return text.encode("latin1")


ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,   # pickles written by numpy 1.x
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # pickles written by numpy 2.x
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose globals are limited to `ALLOWED`; anything else raises UnpicklingError."""

    def find_class(self, module, name):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: only numpy arrays, lists, dicts, numbers and "
                "strings may appear in a CIFAR-10 batch") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused persistent id")


def safe_loads(data, label):
    """Unpickle `data` (bytes) with the restricted unpickler; errors name `label` (the file)."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as err:
        raise ValueError(f"{label}: refused to unpickle ({err})") from err
