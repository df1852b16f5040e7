"""Pinning a trial to its share of the cores: Numba's thread pool and NumPy's BLAS.

Two trials on a 2-core machine with two threads each would run 4 busy threads on 2 cores and
both go slower than one after the other. So every trial of a sweep is given ``threads`` threads,
with ``workers x threads <= cores``, in two ways:

* ``thread_env(n)``: environment variables for a process that has not imported NumPy or Numba
  yet (a worker process, a Ray task's runtime environment); they fix the sizes of the pools.
* ``pin_threads(n)``: the same limits set at run time in a process that already runs, through
  ``numba.set_num_threads`` and threadpoolctl for NumPy's BLAS (``Linear``'s matrix products).
  SciPy's BLAS, which the convolution kernels call from inside Numba's threads, stays at the one
  thread ``npnet.kernels`` gave it (see ``npnet/kernels/_threads.py``).
"""
import os

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def thread_env(n):
    """``{variable: str(n)}`` for every thread-count variable of ``THREAD_VARS``."""
    return {var: str(int(n)) for var in THREAD_VARS}


def available_cores():
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pin_threads(n):
    """Limits this process to ``n`` Numba threads and ``n`` threads of NumPy's BLAS; returns what
    was set, e.g. ``{"numba": 1, "blas": [(path, 1)]}``."""
    import numba
    import npnet.kernels  # noqa: F401  SciPy's BLAS set to 1 thread first
    done = {"numba": min(int(n), numba.config.NUMBA_NUM_THREADS), "blas": []}
    numba.set_num_threads(done["numba"])
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # optional: NumPy's BLAS then keeps its default (OPENBLAS_NUM_THREADS)
        return done
    for lib in ThreadpoolController().lib_controllers:
        if lib.user_api == "blas" and "scipy" not in os.path.basename(os.path.dirname(lib.filepath)):
            lib.set_num_threads(int(n))
            done["blas"].append((lib.filepath, int(n)))
    return done
