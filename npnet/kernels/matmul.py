"""Matrix products for ``Linear``, run by Numba's thread pool: each worker multiplies a block of rows
with SciPy's single-threaded BLAS. A plain NumPy reference beside it.

Why not ``a @ b``: NumPy's matmul uses NumPy's own multi-threaded OpenBLAS, whose worker threads keep
spinning for a while after each call. Between the Numba kernels of a CNN (convolution, pooling), that
is a third busy thread on two cores: measured on a 2-core AMD EPYC, a cnn-small train step took 130 ms
with NumPy's BLAS at 2 threads and 85 ms at 1 thread, although the Linear layers are 7% of the work.
Splitting rows over the same Numba pool that runs the convolutions keeps one pool for everything,
and a large product still uses every core.

Shapes: a (M, K), b (K, P) -> (M, P); both may be C- or F-ordered (a transposed view is fine).
"""
import numpy as np
from numba import njit, prange, get_num_threads

from ._jit import CACHE
from ._threads import one_blas_thread


@njit(parallel=True, cache=CACHE)
def _matmul_rows(a, b, out, T):
    # out[rows of block t] = a[rows of block t] @ b, one block per worker
    M = a.shape[0]
    for t in prange(T):
        lo, hi = t * M // T, (t + 1) * M // T
        if hi > lo:
            np.dot(a[lo:hi], b, out[lo:hi])


@njit(parallel=True, cache=CACHE)
def _matmul_inner(at, b, parts):
    # parts[t] = a[:, block t] @ b[block t] with a = at.T: the inner dimension split over workers
    K, T = b.shape[0], parts.shape[0]
    for t in prange(T):
        lo, hi = t * K // T, (t + 1) * K // T
        if hi > lo:
            np.dot(at[lo:hi].T, b[lo:hi], parts[t])
        else:
            parts[t] = 0


@one_blas_thread
def matmul(a, b):
    """a (M, K) @ b (K, P) -> (M, P) C-ordered, in the dtype of a and b (which must agree).

    Usually ``a`` is split into row blocks, so it is made C-ordered (a copy if it is a transposed
    view: cheap next to the product for the shapes of Linear); ``b`` may be C- or F-ordered. When
    the inner dimension K is much longer than M, K is split instead and the blocks' products summed.
    """
    if a.dtype != b.dtype or a.dtype not in (np.float32, np.float64):
        raise TypeError(f"matmul: expected two float32 or two float64 arrays, got {a.dtype} and {b.dtype}")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: cannot multiply shapes {a.shape} and {b.shape}")
    out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    if out.size == 0 or a.shape[1] == 0:  # nothing for BLAS to do
        out[...] = 0
        return out
    M, K = a.shape
    T = get_num_threads()
    if K > 8 * M and T > 1:
        # few rows, long inner dimension (dW of a full-batch linear model: (10, 54000) @ (54000, 784)):
        # split the inner dimension and add the per-worker products
        parts = np.empty((T,) + out.shape, dtype=a.dtype)
        _matmul_inner(np.ascontiguousarray(a.T), np.ascontiguousarray(b), parts)
        return np.sum(parts, axis=0, out=out)
    if not (b.flags.c_contiguous or b.flags.f_contiguous):
        b = np.ascontiguousarray(b)
    _matmul_rows(np.ascontiguousarray(a), b, out, max(1, min(T, M)))
    return out


def matmul_ref(a, b):
    return a @ b
