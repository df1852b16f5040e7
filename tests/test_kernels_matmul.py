"""The Numba matrix product of Linear against NumPy's, for every split and memory order."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npnet import kernels as K


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=40, deadline=None)
@given(m=st.integers(0, 40), k=st.integers(0, 400), p=st.integers(0, 30), ta=st.booleans(),
       tb=st.booleans(), seed=st.integers(0, 2**16))
def test_matmul_matches_numpy(dtype, m, k, p, ta, tb, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((p, k) if tb else (k, p)).astype(dtype)
    a, b = (a.T if ta else a), (b.T if tb else b)          # transposed views: F-ordered operands
    out = K.matmul(a, b)
    assert out.dtype == dtype and out.shape == (m, p) and out.flags.c_contiguous
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, K.matmul_ref(a, b), rtol=tol, atol=tol * max(k, 1) ** 0.5)


def test_matmul_of_strided_views_and_long_inner_dimension():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((10, 6000)).astype(np.float32)      # K > 8 M: the inner split
    b = rng.standard_normal((12000, 7)).astype(np.float32)[::2]   # neither C- nor F-ordered
    np.testing.assert_allclose(K.matmul(a, b), a @ b, rtol=1e-4, atol=1e-3)


def test_matmul_of_reversed_views():
    """x[::-1] (a recurrent layer's reverse direction) has a negative stride: copied, never read
    forward from its first element (until 8 December its rows came out of memory past the array)."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((6, 4)), rng.standard_normal((4, 3))
    for x, y in ((a[::-1], b), (a[:, ::-1], b), (a, b[::-1]), (a[::-1, :1], b[:1]), (a[::-2].T, b[:, ::-1][:3])):
        np.testing.assert_allclose(K.matmul(x, y), x @ y, rtol=1e-12, atol=1e-12)


def test_matmul_refuses_mixed_or_integer_dtypes():
    with pytest.raises(TypeError, match="float32"):
        K.matmul(np.ones((2, 2), np.float32), np.ones((2, 2)))
    with pytest.raises(TypeError, match="int64"):
        K.matmul(np.ones((2, 2), np.int64), np.ones((2, 2), np.int64))
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2, 2\)"):
        K.matmul(np.ones((2, 3)), np.ones((2, 2)))



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 30), k=st.integers(0, 300), p=st.integers(1, 20), k0=st.integers(0, 7),
       accumulate=st.booleans(), seed=st.integers(0, 2**16))
def test_matmul_of_column_blocks_into_out(dtype, m, k, p, k0, accumulate, seed):
    """Blocks of columns (row stride longer than the row) are read in place, and ``out`` receives the
    product or the product added to it, in both splits (K > 8 M takes the inner split)."""
    rng = np.random.default_rng(seed)
    big_a = rng.standard_normal((m, k + 9)).astype(dtype)
    big_b = rng.standard_normal((p, k + 9)).astype(dtype)
    a, b = big_a[:, k0:k0 + k], big_b[:, k0:k0 + k].T                # (m, k), (k, p) views
    out = rng.standard_normal((m, p)).astype(dtype)
    want = (out if accumulate else 0) + a @ b
    got = K.matmul(a, b, out=out, accumulate=accumulate)
    assert got is out
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol * max(k, 1) ** 0.5)
    ref = rng.standard_normal((m, p)).astype(dtype)
    ref_want = (ref if accumulate else 0) + a @ b
    np.testing.assert_allclose(K.matmul_ref(a, b, out=ref, accumulate=accumulate), ref_want, rtol=tol,
                               atol=tol * max(k, 1) ** 0.5)


def test_matmul_into_a_non_contiguous_out_and_bad_out():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 40)).astype(np.float32), rng.standard_normal((40, 6)).astype(np.float32)
    out = np.ones((6, 5), np.float32).T                               # F-ordered
    K.matmul(a, b, out=out, accumulate=True)
    np.testing.assert_allclose(out, 1 + a @ b, rtol=1e-5, atol=1e-5)
    assert K.matmul(a, b, out=out) is out                              # overwritten, not added to
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"out must be a float32 array of shape \(5, 6\)"):
        K.matmul(a, b, out=np.zeros((5, 7), np.float32))
    with pytest.raises(ValueError, match="accumulate=True needs out"):
        K.matmul(a, b, accumulate=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=30, deadline=None)
@given(m=st.integers(0, 12), k=st.integers(0, 40), p=st.integers(0, 12), ta=st.booleans(), tb=st.booleans(),
       beta=st.sampled_from([0.0, 1.0, -0.5]), seed=st.integers(0, 2**16))
def test_gemm_matches_its_reference(dtype, m, k, p, ta, tb, beta, seed):
    """``blas.gemm`` (called from Numba code) on blocks of row-major and transposed matrices (leading
    dimensions longer than the rows), with beta 0 (C's old values ignored, NaN included), 1 and -0.5,
    against ``gemm_ref``; the matrices around the blocks are left alone."""
    from numba import njit
    from npnet.kernels.blas import gemm, gemm_ref

    @njit
    def run(ta, tb, M, N, K, a, lda, b, ldb, beta, c, ldc):
        gemm(ta, tb, M, N, K, a, lda, b, ldb, beta, c, ldc)

    rng = np.random.default_rng(seed)
    lda, ldb, ldc = (m if ta else k) + 3, (k if tb else p) + 2, p + 4
    a = rng.standard_normal(((k if ta else m) + 1) * lda).astype(dtype)
    b = rng.standard_normal(((p if tb else k) + 1) * ldb).astype(dtype)
    c0 = rng.standard_normal((m + 2) * ldc).astype(dtype)
    if beta == 0 and m and p:
        c0[ldc + 1] = np.nan                                          # inside C (its element (0, 0))
    got, want = c0.copy(), c0.copy()
    args = (ta, tb, m, p, k, a[1:], lda, b[1:], ldb, dtype(beta))
    run(*args, got[ldc + 1:], ldc)
    gemm_ref(*args, want[ldc + 1:], ldc)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(k, 1) ** 0.5)
    A = np.lib.stride_tricks.as_strided(a[1:], (k, m) if ta else (m, k), (lda * a.itemsize, a.itemsize))
    B = np.lib.stride_tricks.as_strided(b[1:], (p, k) if tb else (k, p), (ldb * b.itemsize, b.itemsize))
    C = want[ldc + 1:ldc + 1 + m * ldc].reshape(m, ldc)[:, :p] if m else np.zeros((0, p))
    C0 = c0[ldc + 1:ldc + 1 + m * ldc].reshape(m, ldc)[:, :p] if m else np.zeros((0, p))
    expect = (A.T if ta else A) @ (B.T if tb else B) + (0 if beta == 0 else beta * C0)
    np.testing.assert_allclose(C, expect, rtol=tol, atol=tol * max(k, 1) ** 0.5)
