"""BLAS thread setup for the convolution kernels, and a pool of reusable per-thread work buffers.

Why SciPy's BLAS is made single-threaded
----------------------------------------
``np.dot`` inside an ``@njit`` function does not call NumPy's BLAS: Numba binds to the ``?gemm`` of
``scipy.linalg.cython_blas``, i.e. to the OpenBLAS that the SciPy wheel bundles (``scipy.libs/
libscipy_openblas*.so``). NumPy's wheel bundles a *different* OpenBLAS build (``numpy.libs/
libscipy_openblas64_*.so``) with its own thread pool and its own thread count.

The conv kernels run one GEMM per image inside a Numba ``prange`` over the batch, so every Numba worker
calls SciPy's OpenBLAS at the same time. If that OpenBLAS is allowed two threads, each call also wakes
its own pool and the 2 cores get 4 busy threads: measured on the 2-core box, Conv2d(64, 128, 3, padding=1)
forward on (128, 64, 32, 32) float32 took 190-290 ms instead of 110 ms. So SciPy's OpenBLAS is set to
1 thread here, and NumPy's OpenBLAS keeps its threads because it is another library.

The setting goes through ``threadpoolctl`` (the library scikit-learn uses for this): of the BLAS
libraries loaded in the process it picks the one whose file lies in SciPy's wheel folders
(``scipy.libs`` on Linux and Windows, ``scipy/.dylibs`` on macOS) and limits only that one; all
BLAS libraries together would also pin NumPy's. ``threadpoolctl.threadpool_info()`` shows the
result: SciPy's file at 1 thread, NumPy's at its own count. If SciPy's BLAS is not found (e.g. a
SciPy linked to a system BLAS shared with NumPy), nothing is changed and ``blas_setup()`` says so;
the kernels stay correct, only slower if that BLAS is multi-threaded.

Known interaction, not fixed here: after a multi-threaded NumPy matmul, NumPy's OpenBLAS worker keeps
spinning for a while (OpenBLAS's THREAD_TIMEOUT, ~2^28 cycles) and takes a core from the Numba workers
that run next. Measured: a 3 ms matmul followed by an 8.4 ms conv took 24 ms instead of 11.5, a 3.2 ms
max-pool 8-10.6 ms instead of 6.3. ``OPENBLAS_THREAD_TIMEOUT=4`` in the environment before NumPy is first
imported removed most of it (11.9-16.3 and 7.3 ms, noisy); npnet cannot set it once NumPy is loaded.
"""
import os
import threading

import numpy as np

_setup = {"library": None, "threads": None}


def _scipy_blas_folders():
    import scipy
    import scipy.linalg.cython_blas  # noqa: F401  loads the library Numba's np.dot will call
    root = os.path.dirname(os.path.realpath(scipy.__file__))
    return root + ".libs" + os.sep, os.path.join(root, ".dylibs") + os.sep


def _limit_scipy_blas(n_threads=1):
    """Set SciPy's bundled BLAS to ``n_threads``; return the library path, or None if not found."""
    from threadpoolctl import ThreadpoolController

    folders = _scipy_blas_folders()
    controller = ThreadpoolController()
    paths = [lib["filepath"] for lib in controller.info() if lib["user_api"] == "blas"
             and os.path.realpath(lib["filepath"]).startswith(folders)]
    if not paths:
        return None
    scipy_blas = controller.select(filepath=paths)
    scipy_blas.limit(limits=n_threads)  # stays set: the limiter is not used as a context manager
    _setup["library"] = paths[0]
    _setup["threads"] = scipy_blas.info()[0]["num_threads"]
    return paths[0]


def blas_setup():
    """What was done at import: ``{"library": path or None, "threads": SciPy BLAS threads or None}``."""
    return dict(_setup)


_limit_scipy_blas(1)


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
