"""The Numba settings every kernel shares: ``njit`` and ``CACHE``.

Kernels write ``from ._jit import CACHE, njit`` and decorate with ``@njit(..., cache=CACHE)``.

``CACHE``: compiled kernels are kept on disk (in ``npnet/kernels/__pycache__``, or wherever Numba's own
rules put them, e.g. ``NUMBA_CACHE_DIR``) so that a new process starts in under a second instead of
compiling for ~15 s. ``NPNET_NUMBA_CACHE=0`` in the environment before npnet is imported turns the cache
off: nothing is read from or written to it, every kernel compiles afresh.

Why ``njit`` is npnet's own: Numba's cache checks only the file of the function it caches (its index
holds a hash of that one file). A cached kernel of ``conv.py`` has the code of the ``im2col.py``
helpers it calls compiled into it, so after an edit of ``im2col.py`` numba's ``njit(cache=True)``
would keep running the old im2col. npnet's ``njit`` is ``numba.njit`` with one difference: a kernel
with ``cache=True`` gets a :class:`KernelCache`, whose index stamp is Numba's stamp plus a hash of
every ``npnet/kernels/*.py`` (:func:`sources_digest`). An edit of any kernel file makes every index
stale: each kernel compiles afresh on its first call and overwrites its cache entry. Every file counts,
even one without kernels (``autotune.py``): a constant a kernel reads, frozen into its compiled code,
may come from any of them; the price is one full compile after such an edit. Nothing of
Numba's is changed (no environment variable, no ``numba.config``, no patched class): user code that
calls ``numba.njit(cache=True)`` caches as before.
"""
import functools
import hashlib
import inspect
import os

import numba
from numba.core.caching import CompileResultCacheImpl, FunctionCache
from numba.core.dispatcher import Dispatcher

CACHE = os.environ.get("NPNET_NUMBA_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")

_KERNELS = os.path.dirname(os.path.abspath(__file__))


@functools.lru_cache(maxsize=None)
def sources_digest(folder=_KERNELS):
    """SHA-256 (hex) of the names and bytes of every ``*.py`` in ``folder``, in name order.

    Computed once per process (~16 small files, well under a millisecond): the kernels a process runs
    are the ones it imported.
    """
    h = hashlib.sha256()
    for name in sorted(n for n in os.listdir(folder) if n.endswith(".py")):
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        h.update(b"%s\0%d\0" % (name.encode(), len(data)))
        h.update(data)
    return h.hexdigest()


class _KernelsLocator:
    """The cache locator Numba chose for a kernel, with :func:`sources_digest` added to its stamp.

    Everything else (where the cache lives, how files are named) is delegated to Numba's locator.
    """

    def __init__(self, locator):
        self._locator = locator

    def get_source_stamp(self):
        """Numba's stamp (a hash of the kernel's own file) and the hash of every kernel file."""
        return self._locator.get_source_stamp(), sources_digest()

    def __getattr__(self, name):
        return getattr(self._locator, name)


class _KernelCacheImpl(CompileResultCacheImpl):
    """Numba's cache of compile results, located by Numba's rules, stamped by :class:`_KernelsLocator`."""

    def __init__(self, py_func):
        super().__init__(py_func)
        self._locator = _KernelsLocator(self._locator)


class KernelCache(FunctionCache):
    """Numba's per-function disk cache, invalidated by an edit of any file in ``npnet/kernels``."""

    _impl_class = _KernelCacheImpl


def njit(*args, cache=False, **options):
    """``numba.njit`` (same options, used as ``@njit`` or ``@njit(...)``), whose ``cache=True`` keeps
    the kernel in a :class:`KernelCache`.

    Explicit signatures (eager compilation) are refused with ``cache=True``: numba would compile them
    before the cache is attached, and npnet's kernels all compile lazily.
    """
    if len(args) == 1 and inspect.isfunction(args[0]):
        return _with_cache(numba.njit(**options)(args[0]), cache)
    if args and cache:
        raise TypeError("npnet's njit: cache=True with explicit signatures is not supported "
                        f"(got {args!r}); let the kernel compile lazily")
    decorate = numba.njit(*args, **options)
    return lambda func: _with_cache(decorate(func), cache)


def _with_cache(dispatcher, cache):
    """Give ``dispatcher`` a :class:`KernelCache` if ``cache``, as ``Dispatcher.enable_caching`` gives
    a ``FunctionCache``. With ``NUMBA_DISABLE_JIT`` numba returns the plain function: left as it is."""
    if cache and isinstance(dispatcher, Dispatcher):
        dispatcher._cache = KernelCache(dispatcher.py_func)
    return dispatcher
