"""``gemm`` callable from Numba code: BLAS's matrix product with leading dimensions and beta, and its
NumPy reference.

Numba's ``np.dot`` inside ``@njit`` code multiplies contiguous arrays only (it copies any other) and
always overwrites its output. ``gemm`` calls the same BLAS entry point that ``np.dot`` calls
(``numba_xxgemm`` of Numba's helper library, which forwards to the ``sgemm`` / ``dgemm`` of
``scipy.linalg.cython_blas``; Numba's own ``np.linalg.pinv`` calls it the same way), with the
leading dimensions and the ``beta`` that BLAS takes, so that a block of a matrix is multiplied where
it lies, and a product can be added into an accumulator. It runs on the calling thread: inside
npnet's kernels SciPy's BLAS is at one thread (``_threads.one_blas_thread``).

Matrices are given as BLAS gives them, row-major here: a flat array holding the matrix from its first
element, and its leading dimension (the distance between rows). One compiled version per dtype
serves every layout (views of every layout would each compile their own).

    C[i, j] = sum_k A[i, k] B[k, j] + beta C[i, j],  i < M, j < N, k < K
    A[i, k] = a[i lda + k], or a[k lda + i] if ``ta`` (a holds A^T); B likewise with ``tb``;
    C[i, j] = c[i ldc + j].
"""
import numpy as np
from numba import types
from numba.extending import overload

from ._jit import CACHE, njit

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


@njit(cache=CACHE, inline="always")
def gemm(ta, tb, M, N, K, a, lda, b, ldb, beta, c, ldc):
    """C = A @ B + beta C (beta 0: C's old values are not read, NaN included), as in the module docstring.

    a, b, c: flat arrays of one dtype (float32 or float64), each starting at its matrix's first
    element. In BLAS's column-major terms this is C^T (N x M) = B^T A^T: BLAS gets b first.

    Inlined into its caller, it only converts the scalars: the kernels pass constants (``False``, ``1``),
    which Numba types as literals, one compiled copy of the product per combination (6 copies of it
    for cnn-small's float32 step, 1.5 s of compiling); as plain bool / int64 / float64 one copy per
    dtype serves every call."""
    _gemm(np.bool_(ta), np.bool_(tb), np.int64(M), np.int64(N), np.int64(K), a, np.int64(lda), b, np.int64(ldb),
          np.float64(beta), c, np.int64(ldc))


@njit(cache=CACHE)
def _gemm(ta, tb, M, N, K, a, lda, b, ldb, beta, c, ldc):
    # gemm's product, with plain scalar types
    if M <= 0 or N <= 0:
        return
    if K <= 0:                                          # an empty sum: BLAS would only scale C
        for i in range(M):
            for j in range(N):
                c[i * ldc + j] = 0 if beta == 0 else beta * c[i * ldc + j]
        return
    ab = np.empty(2, dtype=c.dtype)
    ab[0], ab[1] = 1, beta
    r = _xxgemm(ord("t") if tb else ord("n"), ord("t") if ta else ord("n"), N, M, K, ab, b, ldb, a, lda, c, ldc)
    if r < 0:
        raise ValueError("gemm: BLAS reported an invalid argument")


def _matrix(x, rows, cols, ld):
    """The (rows, cols) matrix that flat x holds with leading dimension ld, as a NumPy view."""
    return np.lib.stride_tricks.as_strided(x, (rows, cols), (ld * x.itemsize, x.itemsize), writeable=False)


def gemm_ref(ta, tb, M, N, K, a, lda, b, ldb, beta, c, ldc):
    """Plain NumPy :func:`gemm`."""
    if M <= 0 or N <= 0:
        return
    A = _matrix(a, K, M, lda).T if ta else _matrix(a, M, K, lda)
    B = _matrix(b, N, K, ldb).T if tb else _matrix(b, K, N, ldb)
    C = np.lib.stride_tricks.as_strided(c, (M, N), (ldc * c.itemsize, c.itemsize))
    C[...] = A @ B if beta == 0 else A @ B + beta * C


def blas_operand(x):
    """(flat, transposed, ld) of a 2-D array as :func:`gemm` takes it, without a copy where one of its
    axes holds adjacent elements (a C-ordered array, a transposed one, a block of columns or rows);
    any other view (also one with a reversed axis, ``x[::-1]``) is copied to C order first."""
    isz = x.itemsize
    rows, cols = x.shape
    if (rows > 1 and x.strides[0] < 0) or (cols > 1 and x.strides[1] < 0):
        return blas_operand(np.ascontiguousarray(x))        # a reversed view: BLAS reads forward only
    if cols == 1 or x.strides[1] == isz:
        base, trans, ld = x, False, max(1, cols, x.strides[0] // isz)
    elif rows == 1 or x.strides[0] == isz:
        base, trans, ld = x.T, True, max(1, rows, x.strides[1] // isz)
    else:
        return blas_operand(np.ascontiguousarray(x))
    if base.size == 0:
        return np.zeros(1, x.dtype), trans, ld
    # the flat array from the first element to the last one the matrix touches
    n = (base.shape[0] - 1) * ld + base.shape[1]
    return np.lib.stride_tricks.as_strided(base, (n,), (isz,)), trans, ld
