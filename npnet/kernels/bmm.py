"""Batched matrix products for attention, on npnet's workers (``_threads.run_workers``): each worker
multiplies a block of the batch's matrices, one single-threaded BLAS call each. A plain NumPy
reference beside it (``bmm_ref``: ``np.matmul``).

Shapes: a (..., M, K) @ b (..., K, N) -> (..., M, N); the batch dims broadcast. Each matrix is read
where it lies (``blas.gemm`` with its leading dimension): a head of a projection, (N, L, h, d)
viewed as (N, h, L, d), a transposed key ``k^T``, needs no copy, and the output may be such a view
too (``out``, last axis adjacent), e.g. the heads' outputs written straight into (N, L, E).

Why not ``a @ b``: NumPy's matmul copies a non-contiguous operand (the heads' views) and runs the
products on NumPy's own OpenBLAS threads, which keep spinning after each call and then take a core
from npnet's workers (``_threads``'s docstring). Measured on a 2-core AMD EPYC (Zen 4), 8 December,
machine ~2/3 busy: one layer's q k^T of issue 34 ((64, 4) heads of (128, 32) viewed in a (64, 128, 384)
projection), ``np.matmul`` 9.2 ms -> 5.6 ms at 2 threads (1 thread: 6.5 and 6.8 ms, no gain alone;
the gain is the step's: no NumPy BLAS threads spinning between npnet's kernels).
"""
import numpy as np

from ._jit import CACHE, njit
from ._threads import one_blas_thread, run_workers, workers_for
from .blas import gemm
from .reference import reference_enabled


@njit(nogil=True, cache=CACHE)
def _bmm_items(t, T, ta, tb, M, N, K, a, oa, lda, b, ob, ldb, c, oc, ldc):
    # worker t of T: C_i = A_i @ B_i for items i of block t; item i of each operand starts at its
    # offset (oa[i], ...) in the flat array
    B = oc.size
    for i in range(t * B // T, (t + 1) * B // T):
        gemm(ta, tb, M, N, K, a[oa[i]:], lda, b[ob[i]:], ldb, 0.0, c[oc[i]:], ldc)


def _operand(x, batch):
    """(flat, offsets (B,), transposed, ld) of x (..., R, C) broadcast to the batch shape: each
    matrix as ``blas.gemm`` reads it, without a copy when one of its last two axes is adjacent."""
    if x.shape[:-2] != batch:
        x = np.broadcast_to(x, batch + x.shape[-2:])     # read-only: never an output
    isz = x.itemsize
    rows, cols = x.shape[-2:]
    rs, cs = x.strides[-2] // isz, x.strides[-1] // isz
    if any(s < 0 for s in x.strides) or not (cols == 1 or cs == 1 or rows == 1 or rs == 1):
        x = np.ascontiguousarray(x)
        rs, cs = cols, 1
    trans = not (cols == 1 or cs == 1)
    ld = max(1, rows, cs) if trans else max(1, cols, rs)
    offsets = np.zeros(batch, np.int64)
    for axis, (n, s) in enumerate(zip(batch, x.strides[:-2])):
        shape = [1] * len(batch)
        shape[axis] = n
        offsets = offsets + (np.arange(n, dtype=np.int64) * (s // isz)).reshape(shape)
    span = int(offsets.max(initial=0)) + (rows - 1) * rs + (cols - 1) * cs + 1
    flat = np.lib.stride_tricks.as_strided(x, (max(span, 1),), (isz,))
    return flat, offsets.reshape(-1), trans, ld


def bmm(a, b, out=None):
    """a (..., M, K) @ b (..., K, N) -> (..., M, N) in their dtype (which must agree), batch dims
    broadcast; ``out``: an array of the result's shape whose last axis is adjacent (it may be a
    view, e.g. heads written into (N, L, E)), written and returned."""
    if reference_enabled() or a.dtype not in (np.float32, np.float64):
        return bmm_ref(a, b, out)
    if a.dtype != b.dtype or a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"bmm: cannot multiply {a.dtype} {a.shape} and {b.dtype} {b.shape}")
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    (M, K), N = a.shape[-2:], b.shape[-1]
    if out is None:
        out = np.empty(batch + (M, N), dtype=a.dtype)
    elif out.shape != batch + (M, N) or out.dtype != a.dtype or (N > 1 and out.strides[-1] != out.itemsize):
        raise ValueError(f"bmm: out must be {a.dtype} of shape {batch + (M, N)} with adjacent columns")
    if out.size == 0:
        return out
    if K == 0:
        out[...] = 0
        return out
    (af, oa, ta, lda), (bf, ob, tb, ldb) = _operand(a, batch), _operand(b, batch)
    cf, oc, _, ldc = _operand(out, batch)
    with one_blas_thread():
        run_workers(_bmm_items, workers_for(oc.size), ta, tb, M, N, K, af, oa, lda, bf, ob, ldb, cf, oc, ldc)
    return out


def bmm_ref(a, b, out=None):
    """Plain NumPy :func:`bmm`."""
    return np.matmul(a, b, out=out)
