"""``gemm`` callable from Numba code: C = A @ B + beta C on strided 2-D views, with a NumPy reference.

Numba's ``np.dot`` inside ``@njit`` code multiplies contiguous arrays only (it copies any other) and
always overwrites its output. ``gemm`` calls the same BLAS entry point that ``np.dot`` calls
(``numba_xxgemm`` of Numba's helper library, which forwards to the ``sgemm`` / ``dgemm`` of
``scipy.linalg.cython_blas``; Numba's own ``np.linalg.pinv`` calls it the same way), with the
leading dimensions and the ``beta`` that BLAS takes, so that a block of columns of a matrix is
multiplied where it lies, and a product can be added into an accumulator. It runs on the calling
thread: inside npnet's kernels SciPy's BLAS is at one thread (``_threads.one_blas_thread``).

Shapes: a (M, K), b (K, N), c (M, N); each of a and b has one axis of adjacent elements (a row-major
block such as ``x[:, k0:k1]``, or a transposed one such as ``w.T``); c is row-major (``c.strides[1]``
is one element). float32 or float64, all three alike.
"""
import numpy as np
from numba import njit, types
from numba.extending import overload

from ._jit import CACHE

_SIG = {dt: types.ExternalFunction("numba_xxgemm", types.intc(
    types.char, types.char, types.char,                      # kind, transa, transb
    types.intp, types.intp, types.intp,                      # m, n, k
    types.CPointer(dt), types.CPointer(dt), types.intp,      # alpha, a, lda
    types.CPointer(dt), types.intp,                          # b, ldb
    types.CPointer(dt), types.CPointer(dt), types.intp))     # beta, c, ldc
    for dt in (types.float32, types.float64)}


def _xxgemm(tb, ta, N, M, K, ab, b, ldb, a, lda, c, ldc):
    """The BLAS call of the dtype of c (a stub: Numba compiles the overload below in its place)."""
    raise NotImplementedError


@overload(_xxgemm)
def _xxgemm_of_dtype(tb, ta, N, M, K, ab, b, ldb, a, lda, c, ldc):
    fn, kind = _SIG[c.dtype], ord("s" if c.dtype == types.float32 else "d")

    def call(tb, ta, N, M, K, ab, b, ldb, a, lda, c, ldc):
        return fn(kind, tb, ta, N, M, K, ab[0:].ctypes, b.ctypes, ldb, a.ctypes, lda, ab[1:].ctypes, c.ctypes, ldc)
    return call


@njit(cache=CACHE)
def _layout(x):
    """(trans, ld) of a 2-D view as BLAS reads it in column-major order: a row-major view is its own
    transpose with leading dimension = its row stride; a column-major one is itself."""
    isz = x.itemsize
    if x.shape[1] == 1 or x.strides[1] == isz:
        return ord("n"), max(1, x.strides[0] // isz, x.shape[1])
    return ord("t"), max(1, x.strides[1] // isz, x.shape[0])


@njit(cache=CACHE)
def gemm(a, b, c, beta):
    """c[...] = a @ b + beta * c (beta 0: c's old values are not read, even NaN ones).

    Row-major c is column-major c^T = b^T a^T: BLAS gets b first. Raises ValueError on a layout BLAS
    cannot take (an array with no axis of adjacent elements)."""
    M, K = a.shape
    N = b.shape[1]
    if M == 0 or N == 0:
        return
    if K == 0:                                          # an empty sum: BLAS would only scale c
        for i in range(M):
            for j in range(N):
                c[i, j] = 0 if beta == 0 else beta * c[i, j]
        return
    isz = a.itemsize
    if (a.strides[1] != isz and a.strides[0] != isz) or (b.strides[1] != isz and b.strides[0] != isz) \
            or (c.strides[1] != isz and N > 1):
        raise ValueError("gemm: every operand needs an axis of adjacent elements, and c rows of them")
    tb, ldb = _layout(b)
    ta, lda = _layout(a)
    ldc = max(1, c.strides[0] // isz, N)
    ab = np.empty(2, dtype=c.dtype)
    ab[0], ab[1] = 1, beta
    # in BLAS's column-major terms: c^T (N x M) = op(b) (N x K) op(a) (K x M)
    r = _xxgemm(tb, ta, N, M, K, ab, b, ldb, a, lda, c, ldc)
    if r < 0:
        raise ValueError("gemm: BLAS reported an invalid argument")


def gemm_ref(a, b, c, beta):
    """Plain NumPy :func:`gemm`."""
    c[...] = a @ b if beta == 0 else a @ b + beta * c
