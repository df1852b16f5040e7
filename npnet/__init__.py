"""npnet: a deep-learning library written from scratch on NumPy, every backward pass by hand.

``import npnet`` imports no submodule: ``npnet.nn``, ``npnet.optim``, ``npnet.models``,
``npnet.train``, ``npnet.plots``, ``npnet.data``, ... and the names below (``npnet.save``,
``npnet.no_grad``, ...) are imported on first use (PEP 562 ``__getattr__``), so a script or the
CLI pays only for what it touches (``npnet.nn`` brings in Numba and SciPy, ``npnet.plots``
matplotlib). ``from npnet import nn`` works as usual.
"""
import functools
import importlib
import pkgutil
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> (submodule, attribute), resolved on first use
_NAMES = {
    "save": ("serialization", "save"),
    "load": ("serialization", "load"),
    "manual_seed": ("init", "manual_seed"),
    "no_grad": ("nn", "no_grad"),
    "is_grad_enabled": ("nn", "is_grad_enabled"),
    "fuse": ("nn.fusion", "fuse"),
    "unfuse": ("nn.fusion", "unfuse"),
    "tune": ("nn.tuning", "tune"),
    "load_run": ("run.trained", "load_run"),
}
__all__ = sorted(_NAMES)

if TYPE_CHECKING:  # for editors and type checkers; at run time __getattr__ does this
    from . import data, functional, gradcheck, init, losses, metrics, models, nn, optim, plots, train
    from .init import manual_seed
    from .nn import is_grad_enabled, no_grad
    from .nn.fusion import fuse, unfuse
    from .nn.tuning import tune
    from .run.trained import load_run
    from .serialization import load, save


@functools.lru_cache(maxsize=None)
def _submodules():
    """Names of the public submodules and subpackages (no leading underscore)."""
    return frozenset(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def __getattr__(name):
    if name in _NAMES:
        module, attr = _NAMES[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    elif name in _submodules():
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups find it without coming here
    return value


def __dir__():
    """The public names only: ``__all__``, the public submodules and ``__version__`` (not the
    helpers this file imports, nor the dunders every module has)."""
    return sorted(set(__all__) | _submodules() | {"__version__"})
