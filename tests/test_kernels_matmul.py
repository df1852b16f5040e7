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


def test_matmul_refuses_mixed_or_integer_dtypes():
    with pytest.raises(TypeError, match="float32"):
        K.matmul(np.ones((2, 2), np.float32), np.ones((2, 2)))
    with pytest.raises(TypeError, match="int64"):
        K.matmul(np.ones((2, 2), np.int64), np.ones((2, 2), np.int64))
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2, 2\)"):
        K.matmul(np.ones((2, 3)), np.ones((2, 2)))

