"""SciPy's BLAS at one thread around npnet's kernels, and a pool of reusable per-thread work buffers.

Why SciPy's BLAS runs single-threaded inside npnet's kernels
-----------------------------------------------------------
``np.dot`` inside an ``@njit`` function does not call NumPy's BLAS: Numba binds to the ``?gemm`` of
``scipy.linalg.cython_blas``, i.e. to the OpenBLAS that the SciPy wheel bundles (``scipy.libs/
libscipy_openblas*.so``). NumPy's wheel bundles a *different* OpenBLAS build (``numpy.libs/
libscipy_openblas64_*.so``) with its own thread pool and its own thread count.

The conv kernels run one GEMM per image on each of npnet's worker threads, so every worker calls
SciPy's OpenBLAS at the same time. If that OpenBLAS is allowed two threads, each call also wakes
its own pool and the 2 cores get 4 busy threads: measured on a 2-core AMD EPYC, Conv2d(64, 128, 3,
padding=1) forward on (128, 64, 32, 32) float32 took 190-290 ms instead of 110 ms.

So every kernel that calls BLAS from Numba is wrapped in :func:`one_blas_thread`: SciPy's OpenBLAS is
set to 1 thread when the outermost such call starts and given back its previous count when it ends.
The user's own SciPy code, before, after or between npnet's calls, keeps its threads; importing npnet
changes nothing. NumPy's OpenBLAS is another library and is never touched. The count is switched with
OpenBLAS's own ``openblas_set_num_threads`` (a C call of ~1 us) through ``threadpoolctl``, which finds
the library among those loaded: the one whose file lies in SciPy's wheel folders (``scipy.libs`` on
Linux and Windows, ``scipy/.dylibs`` on macOS). If there is none (e.g. a SciPy linked to a system BLAS
shared with NumPy), nothing is changed and :func:`blas_setup` says so; the kernels stay correct, only
slower if that BLAS is multi-threaded. Concurrent Python threads in npnet's kernels share one count:
the first to enter sets it, the last to leave restores it.

Why the large kernels run on a pool of Python threads, not in a ``prange``
-------------------------------------------------------------------------
The convolution and matrix-product kernels give each worker one contiguous share of the work (a
block of images, of rows): the loop over workers does nothing but call one serial function per
worker. Written as a Numba ``prange`` that loop made Numba compile a parallel kernel (parfor passes,
a gufunc) around the serial code: measured on Zen 4, the Winograd F(2x2) forward compiled in 4.7 s as
a ``prange`` kernel and 0.9 s as the same serial loop; a minimal one-line ``prange`` wrapper still
cost ~0.5 s per kernel. So the kernel is a serial ``@njit(nogil=True)`` function of the worker index
``t`` and the worker count ``T``, and :func:`run_workers` calls it for t = 0 on the calling thread and
for t = 1 .. T-1 on npnet's pool of Python threads (created at the first call, T - 1 threads, idle
between calls: they wait on a queue and spin not at all). ``nogil`` lets the calls run at the same
time; T is :func:`num_threads` (``numba.get_num_threads()``), so Numba's thread setting still rules
every kernel. Since
7 December no npnet kernel is a ``prange`` kernel (``tests/test_kernels.py`` checks): the OpenMP
threads of Numba's parallel loops keep spinning after each loop and took a core from these workers
(ResNet-32's train step at 2 threads ~1.6x slower while ReLU and pooling were still ``prange``).

Known interaction, not fixed here: after a multi-threaded NumPy matmul, NumPy's OpenBLAS worker keeps
spinning for a while (OpenBLAS's THREAD_TIMEOUT, ~2^28 cycles) and takes a core from the Numba workers
that run next. Measured: a 3 ms matmul followed by an 8.4 ms conv took 24 ms instead of 11.5, a 3.2 ms
max-pool 8-10.6 ms instead of 6.3. ``OPENBLAS_THREAD_TIMEOUT=4`` in the environment before NumPy is first
imported removed most of it (11.9-16.3 and 7.3 ms, noisy); npnet cannot set it once NumPy is loaded.
"""
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

_blas = {"found": False, "controller": None, "library": None}
_blas_lock = threading.Lock()
_blas_users = {"depth": 0, "saved": None}


def _scipy_blas_folders():
    import scipy
    import scipy.linalg.cython_blas  # noqa: F401  loads the library Numba's np.dot will call
    root = os.path.dirname(os.path.realpath(scipy.__file__))
    return root + ".libs" + os.sep, os.path.join(root, ".dylibs") + os.sep


def _scipy_blas():
    """threadpoolctl's controller of SciPy's bundled BLAS, or None; looked up once, at first use."""
    if not _blas["found"]:
        from threadpoolctl import ThreadpoolController

        folders = _scipy_blas_folders()
        libs = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"
                and os.path.realpath(lib.filepath).startswith(folders)]
        _blas.update(found=True, controller=libs[0] if libs else None,
                     library=libs[0].filepath if libs else None)
    return _blas["controller"]


class _OneBlasThread(contextlib.ContextDecorator):
    """``with one_blas_thread():`` (or ``@one_blas_thread()``): SciPy's BLAS at 1 thread inside the
    block, the caller's count restored after the outermost block (blocks nest, across threads)."""

    def __enter__(self):
        lib = _scipy_blas()
        if lib is not None:
            with _blas_lock:
                if _blas_users["depth"] == 0:
                    _blas_users["saved"] = lib.get_num_threads()
                    if _blas_users["saved"] != 1:
                        lib.set_num_threads(1)
                _blas_users["depth"] += 1
        return self

    def __exit__(self, *exc):
        lib = _scipy_blas()
        if lib is not None:
            with _blas_lock:
                _blas_users["depth"] -= 1
                if _blas_users["depth"] == 0 and _blas_users["saved"] != 1:
                    lib.set_num_threads(_blas_users["saved"])
        return False


def one_blas_thread(kernel=None):
    """SciPy's BLAS at 1 thread while a kernel runs, the caller's count restored afterwards: as a
    context manager (``with one_blas_thread():``, what the kernel entry points use: no extra call
    frame between a layer and its kernel) or as a decorator (``@one_blas_thread``)."""
    if kernel is None:
        return _OneBlasThread()
    return _OneBlasThread()(kernel)


def blas_architecture():
    """The kernel set SciPy's OpenBLAS runs (e.g. "Haswell", "SkylakeX"), or None if unknown."""
    lib = _scipy_blas()
    return getattr(lib, "architecture", None) if lib is not None else None


def blas_setup():
    """What :func:`one_blas_thread` acts on: ``{"library": path of SciPy's BLAS or None, "threads":
    its thread count inside npnet's kernels (1) or None if not found, "outside": its count now}``."""
    lib = _scipy_blas()
    return {"library": _blas["library"], "threads": None if lib is None else 1,
            "outside": None if lib is None else lib.get_num_threads()}


# ---------------------------------------------------------------------------------------------------
# Work buffers. The conv kernels need, per Numba thread, a column matrix of one image (C*kh*kw, OH*OW)
# and a few small accumulators. Allocating them fresh on every call costs page faults (a fresh 144 MiB
# buffer took ~16 ms to touch on this box), so flat buffers are kept in a pool and handed out by
# checkout: a caller owns its buffer until it gives it back, so concurrent Python threads never share one.
# A buffer grows to the largest request seen; one flat buffer per dtype serves every layer shape.

_pool_lock = threading.Lock()
_pool = {}          # dtype.str -> list of 1-D arrays not in use


def take_buffer(size, dtype):
    """A 1-D array of at least ``size`` elements of ``dtype`` (uninitialised); give it back with
    :func:`give_buffer`."""
    dtype = np.dtype(dtype)
    with _pool_lock:
        free = _pool.get(dtype.str)
        buf = free.pop() if free else None
    if buf is None or buf.size < size:
        buf = np.empty(size, dtype=dtype)
    return buf


def give_buffer(buf):
    """Return a buffer obtained from :func:`take_buffer` to the pool."""
    with _pool_lock:
        free = _pool.setdefault(buf.dtype.str, [])
        if len(free) < 4:           # bound the memory held for concurrent callers
            free.append(buf)


def clear_buffers():
    """Drop every pooled work buffer (frees their memory)."""
    with _pool_lock:
        _pool.clear()


# ---------------------------------------------------------------------------------------------------
# Workers (see the module docstring): serial kernels of (t, T, ...) on T threads.

_workers = {"pool": None, "size": 0}
_workers_lock = threading.Lock()


def _forget_workers():
    """In a forked child the pool's threads do not exist: start a new pool at the next call
    (a sweep's or a test's forked process would otherwise wait forever on the old one's queue)."""
    global _workers_lock
    _workers.update(pool=None, size=0)
    _workers_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


def _worker_pool(n):
    """npnet's pool of at least n Python threads, created (or grown) at first need."""
    with _workers_lock:
        if _workers["size"] < n:
            old = _workers["pool"]
            _workers.update(pool=ThreadPoolExecutor(max_workers=n, thread_name_prefix="npnet-kernel"), size=n)
            if old is not None:
                old.shutdown(wait=False)
        return _workers["pool"]


def num_threads():
    """T, the number of workers of npnet's kernels: ``numba.get_num_threads()`` once Numba's thread
    pool runs (``numba.set_num_threads`` starts it; its thread-local setting then rules), else the
    count it would start with (``NUMBA_NUM_THREADS``, all cores by default). Asking Numba itself
    would start that pool, an OpenMP runtime that npnet's kernels never use: started before PyTorch
    loads its own, it made PyTorch's train step of a small Transformer ~35x slower at 2 threads
    (7.9 s instead of 0.23 s, 7 December, benchmarks/README.md), and importing npnet must change
    nothing of the kind."""
    from numba.np.ufunc import parallel
    if getattr(parallel, "_is_initialized", True):  # a Numba without the flag: ask it (as before)
        return numba.get_num_threads()
    return numba.config.NUMBA_NUM_THREADS


def workers_for(items):
    """T for a kernel whose work is ``items`` independent pieces (images, planes, channels, rows):
    :func:`num_threads`, at most one worker per piece, at least 1."""
    return max(1, min(num_threads(), items))


def run_workers(kernel, T, *args):
    """``kernel(t, T, *args)`` for every worker t < T at the same time (t = 0 on the calling thread),
    returning when all have; the first error raised in any worker is raised here, after all ended.

    ``kernel``: a serial ``@njit(nogil=True)`` function that does worker t's share of the work.
    """
    if T <= 1:
        kernel(0, 1, *args)
        return
    pool = _worker_pool(T - 1)
    others = [pool.submit(kernel, t, T, *args) for t in range(1, T)]
    error = None
    try:
        kernel(0, T, *args)
    except BaseException as e:          # wait for the others before raising: they use the same buffers
        error = e
    for f in others:
        try:
            f.result()
        except BaseException as e:
            error = error or e
    if error is not None:
        raise error
