"""Batch-norm kernels against their NumPy references, and the references against the textbook
formulas."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npnet import kernels as K

SETTINGS = settings(max_examples=30, deadline=None)
DTYPES = [np.float32, np.float64]
shapes = st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(1, 20))  # (N, C, L)


def draw_x(seed, shape, dtype, offset=0.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * rng.uniform(0.1, 3) + offset).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_channel_stats_matches_ref(dtype, shape, seed):
    x = draw_x(seed, shape, dtype)
    mean, var = K.channel_stats(x)
    ref_mean, ref_var = K.channel_stats_ref(x)
    assert mean.dtype == var.dtype == np.float64
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(var, ref_var, rtol=1e-10, atol=1e-12)


def test_channel_stats_stays_accurate_with_a_large_mean():
    # sum-of-squares variance without the shift would lose every digit here in float32 data
    x = draw_x(0, (64, 3, 100), np.float32, offset=1e4)
    mean, var = K.channel_stats(x)
    ref_mean, ref_var = K.channel_stats_ref(x)
    np.testing.assert_allclose(var, ref_var, rtol=1e-9)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12)


def test_nan_reaches_the_statistics():
    x = draw_x(0, (2, 3, 4), np.float32)
    x[1, 2, 3] = np.nan
    mean, var = K.channel_stats(x)
    assert np.isnan(mean[2]) and np.isnan(var[2]) and np.isfinite(mean[:2]).all()


def affine_case(dtype, shape, seed):
    """x, dout (N, C, L), per-channel a, b, d (C,) and the tolerance of dtype."""
    rng = np.random.default_rng(seed)
    x, dout = draw_x(seed, shape, dtype), draw_x(seed + 1, shape, dtype)
    a, b, d = (rng.standard_normal(shape[1]) for _ in range(3))
    return x, dout, a, b, d, (1e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_channel_affine_maps_match_ref(dtype, shape, seed):
    x, dout, a, b, d, tol = affine_case(dtype, shape, seed)
    y = K.channel_affine(x, a, b)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, K.channel_affine_ref(x, a, b), rtol=tol, atol=tol)
    z = K.channel_affine2(dout, x, a, b, d)
    assert z.dtype == dtype
    np.testing.assert_allclose(z, K.channel_affine2_ref(dout, x, a, b, d), rtol=tol, atol=10 * tol)


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_channel_grad_sums_match_ref(dtype, shape, seed):
    x, dout = draw_x(seed, shape, dtype), draw_x(seed + 1, shape, dtype)
    mean = K.channel_stats_ref(x)[0]
    got, ref = K.channel_grad_sums(dout, x, mean), K.channel_grad_sums_ref(dout, x, mean)
    for g, r in zip(got, ref):
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10)


def test_refs_equal_textbook_formulas():
    x, dout = draw_x(3, (4, 3, 5), np.float64), draw_x(4, (4, 3, 5), np.float64)
    mean, var = K.channel_stats_ref(x)
    for c in range(3):
        v = x[:, c].ravel()
        assert mean[c] == pytest.approx(sum(v) / len(v), rel=1e-14)
        assert var[c] == pytest.approx(sum((t - mean[c]) ** 2 for t in v) / len(v), rel=1e-12)
    s_d, s_dxc = K.channel_grad_sums_ref(dout, x, mean)
    assert s_dxc[1] == pytest.approx(float(np.dot(dout[:, 1].ravel(), x[:, 1].ravel() - mean[1])), rel=1e-12)
    assert s_d[2] == pytest.approx(float(dout[:, 2].sum()), rel=1e-12)


def test_non_contiguous_input_is_accepted():
    x = draw_x(5, (3, 4, 10), np.float32)[:, ::2]            # (3, 2, 10), strided channels
    np.testing.assert_allclose(K.channel_stats(x)[1], K.channel_stats_ref(x)[1], rtol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_fused_relu_variants_match_ref(dtype, shape, seed):
    """relu in the affine map; the backward kernels masked by a fused ReLU's output."""
    x, dout, a, b, d, tol = affine_case(dtype, shape, seed)
    rng = np.random.default_rng(seed + 2)
    y = K.channel_affine(x, a, b, relu=True)
    np.testing.assert_allclose(y, K.channel_affine_ref(x, a, b, relu=True), rtol=tol, atol=tol)
    np.testing.assert_array_equal(y, np.maximum(K.channel_affine(x, a, b), 0))
    mean = rng.standard_normal(shape[1])
    for got, want in zip(K.channel_grad_sums(dout, x, mean, y), K.channel_grad_sums_ref(dout, x, mean, y)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    masked = dout * (y > 0)  # what a separate ReLU's backward hands the layer
    for got, want in zip(K.channel_grad_sums(dout, x, mean, y), K.channel_grad_sums(masked, x, mean)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)  # float64 sums, order may differ
    z = K.channel_affine2(dout, x, a, b, d, y)
    np.testing.assert_allclose(z, K.channel_affine2_ref(dout, x, a, b, d, y), rtol=tol, atol=10 * tol)
    np.testing.assert_allclose(z, K.channel_affine2(masked, x, a, b, d), rtol=tol, atol=10 * tol)


def test_masked_gradient_keeps_nan_like_relu_backward():
    x = draw_x(0, (2, 2, 3), np.float32)
    y = np.zeros_like(x)                                  # every unit clamped: gradient 0 ...
    dout = np.ones_like(x)
    dout[1, 1, 2] = np.nan                                # ... but NaN * 0 is NaN, as dout * (y > 0)
    s, sx = K.channel_grad_sums(dout, x, np.zeros(2), y)
    assert s[0] == 0 and np.isnan(s[1])
    z = K.channel_affine2(dout, x, np.ones(2), np.zeros(2), np.zeros(2), y)
    np.testing.assert_array_equal(np.isnan(z), np.isnan(dout * (y > 0)))
