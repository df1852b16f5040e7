"""Matrix products for ``Linear``, on npnet's workers (``_threads.run_workers``, as the convolutions):
each worker multiplies a block of rows with SciPy's single-threaded BLAS. A plain NumPy reference beside it.

Why not ``a @ b``: NumPy's matmul uses NumPy's own multi-threaded OpenBLAS, whose worker threads keep
spinning for a while after each call. Between the Numba kernels of a CNN (convolution, pooling), that
is a third busy thread on two cores: measured on a 2-core AMD EPYC, a cnn-small train step took 130 ms
with NumPy's BLAS at 2 threads and 85 ms at 1 thread, although the Linear layers are 7% of the work.
Splitting rows over the same workers that run the convolutions keeps one pool for everything,
and a large product still uses every core.

Shapes: a (M, K), b (K, P) -> (M, P); both may be views with one axis of adjacent elements (a
transposed weight, a block of columns): BLAS reads them where they lie (``blas.gemm``). Before
6 December ``a`` was copied to C order and the long-K split copied both: cnn-small's Linear
forward, (128, 4096) @ (4096, 64) with the weight transposed, took 3.4 ms instead of 0.6.
"""
import numpy as np
from ._threads import num_threads

from ._jit import CACHE, njit
from .reference import reference_enabled
from ._threads import one_blas_thread, run_workers
from .blas import gemm, blas_operand


@njit(nogil=True, cache=CACHE)
def _matmul_rows(t, T, ta, tb, M, N, K, a, lda, b, ldb, beta, c):
    # worker t of T (``_threads.run_workers``): C[rows of block t] = A[rows of block t] @ B + beta C[...];
    # C is (M, N) C-ordered
    lo, hi = t * M // T, (t + 1) * M // T
    if hi > lo:
        gemm(ta, tb, hi - lo, N, K, a[lo:] if ta else a[lo * lda:], lda, b, ldb, beta, c[lo * N:], N)


@njit(nogil=True, cache=CACHE)
def _matmul_inner(t, T, ta, tb, M, N, K, a, lda, b, ldb, parts):
    # worker t of T: parts[t] = A[:, block t] @ B[block t], the inner dimension split over workers, blocks
    # read in place
    lo, hi = t * K // T, (t + 1) * K // T
    gemm(ta, tb, M, N, hi - lo, a[lo * lda:] if ta else a[lo:], lda, b[lo:] if tb else b[lo * ldb:], ldb,
         0.0, parts[t].reshape(-1), N)


def matmul(a, b, out=None, accumulate=False):
    """a (M, K) @ b (K, P) -> (M, P), in the dtype of a and b (which must agree); ``out``: an (M, P)
    array to write into (returned), ``accumulate=True`` adds the product to it instead (``weight.grad
    += ...``: BLAS adds it in its own pass when out is C-ordered, with no temporary).

    Usually the rows of ``a`` are split over the workers; when the inner dimension K is much longer
    than M, K is split instead and the blocks' products summed. a and b may be views (a transposed
    weight, a block of columns): BLAS reads them where they lie (``blas.blas_operand``); a view with
    no axis of adjacent elements is copied first.
    """
    if reference_enabled():
        return matmul_ref(a, b, out, accumulate)
    if a.dtype != b.dtype or a.dtype not in (np.float32, np.float64):
        raise TypeError(f"matmul: expected two float32 or two float64 arrays, got {a.dtype} and {b.dtype}")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: cannot multiply shapes {a.shape} and {b.shape}")
    (M, K), N = a.shape, b.shape[1]
    if out is None:
        if accumulate:
            raise ValueError("matmul: accumulate=True needs out")
        out = np.empty((M, N), dtype=a.dtype)
    elif out.shape != (M, N) or out.dtype != a.dtype:
        raise ValueError(f"matmul: out must be a {a.dtype} array of shape {(M, N)}, got {out.dtype} {out.shape}")
    elif not out.flags.c_contiguous:                    # BLAS writes C-ordered rows: go through a temporary
        if accumulate:
            out += matmul(a, b)
        else:
            out[...] = matmul(a, b)
        return out
    if out.size == 0:
        return out
    if K == 0:
        out[...] = out if accumulate else 0
        return out
    with one_blas_thread():
        return _matmul_into(a, b, out, accumulate, M, N, K)


def _matmul_into(a, b, out, accumulate, M, N, K):
    """out (M, N) = a @ b (+ out when accumulating): the rows or the inner dimension split over
    Numba's workers."""
    (af, ta, lda), (bf, tb, ldb) = blas_operand(a), blas_operand(b)
    T = num_threads()
    if K > 4 * M and T > 1:
        # few rows, long inner dimension (dW of a full-batch linear model: (10, 54000) @ (54000, 784);
        # Linear's forward on a batch: (128, 4096) @ (4096, 64), (500, 3072) @ (3072, 200)): split the
        # inner dimension and add the per-worker products, so that each worker reads half of b instead
        # of all of it. Measured on Zen 4, 2 threads: the mlp's (500, 3072) @ (3072, 200) 3.7 ms
        # against 4.0 by rows; its weight gradient (200, 500) @ (500, 3072), K = 2.5 M, 4.8 against
        # 4.4 ms by rows, hence 4 M (8 M until 6 December)
        parts = np.empty((T, M, N), dtype=a.dtype)
        run_workers(_matmul_inner, T, ta, tb, M, N, K, af, lda, bf, ldb, parts)
        return np.add(out, parts.sum(axis=0), out=out) if accumulate else np.sum(parts, axis=0, out=out)
    run_workers(_matmul_rows, max(1, min(T, M)), ta, tb, M, N, K, af, lda, bf, ldb, 1.0 if accumulate else 0.0,
                out.reshape(-1))
    return out


def matmul_ref(a, b, out=None, accumulate=False):
    """Plain NumPy :func:`matmul`."""
    if out is None:
        return a @ b
    out[...] = out + a @ b if accumulate else a @ b
    return out
