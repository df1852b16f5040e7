"""Winograd F(2x2, 3x3) and F(4x4, 3x3) convolution (m = 2, 4): the Numba kernels against their NumPy
references (float32 and float64), the references against the direct convolution, the float32 error
bounds, the choice of algorithm, gradient checks through Conv2d, and (where installed) PyTorch."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npnet import kernels as K, nn
from npnet.gradcheck import check_module
from test_kernels import assert_close, rand

SETTINGS = settings(max_examples=30, deadline=None)
DTYPES = [np.float32, np.float64]
TILES = [2, 4]


@st.composite
def geometry(draw):
    """(N, C, O, H, W, ph, pw): odd sizes whose tiles overhang, padding 0/1/2, at least one output pixel."""
    N, C, O = draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H = draw(st.integers(max(1, 3 - 2 * ph), 13))
    W = draw(st.integers(max(1, 3 - 2 * pw), 13))
    return N, C, O, H, W, ph, pw


@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(g=geometry(), bias=st.booleans(), relu=st.booleans(), residual=st.booleans(), need_dx=st.booleans(),
       need_dw=st.booleans(), seed=st.integers(0, 2**16))
def test_winograd_matches_ref(m, dtype, g, bias, relu, residual, need_dx, need_dw, seed):
    N, C, O, H, W, ph, pw = g
    rng = np.random.default_rng(seed)
    x, w = rand(rng, (N, C, H, W), dtype), rand(rng, (O, C, 3, 3), dtype)
    b = rand(rng, (O,), dtype) if bias else None
    res = rand(rng, (N, O, H + 2 * ph - 2, W + 2 * pw - 2), dtype) if residual else None
    y = K.winograd_forward(x, w, b, ph, pw, relu, m=m, residual=res)
    assert_close(y, K.winograd_forward_ref(x, w, b, ph, pw, relu, m=m, residual=res))
    assert y.dtype == dtype
    dy = rand(rng, y.shape, dtype)
    got = K.winograd_backward(x, w, dy, ph, pw, need_dx, need_dw, m=m)
    want = K.winograd_backward_ref(x, w, dy, ph, pw, need_dx, need_dw, m=m)
    assert (got[0] is None) == (not need_dx) and (got[1] is None) == (not need_dw)
    for a, e in zip(got, want):
        if e is not None:
            assert_close(a, e)
            assert a.flags.c_contiguous and a.dtype == dtype


@pytest.mark.parametrize("m", TILES)
@SETTINGS
@given(g=geometry(), seed=st.integers(0, 2**16))
def test_winograd_ref_is_the_convolution(m, g, seed):
    """In float64 the Winograd algorithm equals the direct convolution (and its gradients) to rounding."""
    N, C, O, H, W, ph, pw = g
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, (N, C, H, W), np.float64), rand(rng, (O, C, 3, 3), np.float64), rand(rng, (O,), np.float64)
    y = K.winograd_forward_ref(x, w, b, ph, pw, m=m)
    assert_close(y, K.conv2d_forward_ref(x, w, b, 1, 1, ph, pw))
    dy = rand(rng, y.shape, np.float64)
    for a, e in zip(K.winograd_backward_ref(x, w, dy, ph, pw, m=m), K.conv2d_backward_ref(x, w, dy, 1, 1, ph, pw)):
        assert_close(a, e)


# (m, bound relative to max |exact|, factor over the direct float32 convolution's error)
ERROR_BOUNDS = [(2, 1e-6, 4), (4, 1.5e-5, 40)]


@pytest.mark.parametrize("m, bound, factor", ERROR_BOUNDS)
@pytest.mark.parametrize("C, HW", [(16, 32), (64, 8)])
def test_float32_error_against_direct_convolution(C, HW, m, bound, factor):
    """The bounds the module docstring states: F(2x2) float32 within 1e-6 of max |y| (resp. |dx|, |dw|)
    of the exact (float64) result and at most 4x the error of the direct float32 convolution; F(4x4)
    within 1.5e-5 and 40x (measured 2-8e-6, 10-25x)."""
    rng = np.random.default_rng(C)
    x = rng.standard_normal((4, C, HW, HW))
    w = rng.standard_normal((C, C, 3, 3)) * np.sqrt(2 / (9 * C))
    exact = [K.conv2d_forward_ref(x, w, None, 1, 1, 1, 1)]
    dy = rng.standard_normal(exact[0].shape)
    exact += list(K.conv2d_backward_ref(x, w, dy, 1, 1, 1, 1)[:2])
    x32, w32, dy32 = (a.astype(np.float32) for a in (x, w, dy))
    wino = [K.winograd_forward(x32, w32, None, 1, 1, m=m)] + list(K.winograd_backward(x32, w32, dy32, 1, 1, m=m)[:2])
    direct = [K.conv2d_forward(x32, w32, None, 1, 1, 1, 1, algorithm="im2col")]
    direct += list(K.conv2d_backward(x32, w32, dy32, 1, 1, 1, 1, algorithm="im2col")[:2])
    for name, a, d, e in zip(("y", "dx", "dw"), wino, direct, exact):
        scale = np.abs(e).max()
        err, err_direct = np.abs(a - e).max() / scale, np.abs(d - e).max() / scale
        assert err < bound, (name, err)
        assert err < factor * err_direct + 1e-7, (name, err, err_direct)


def test_algorithm_choice():
    assert K.conv_algorithm(16, 16, 3, 3, 1, 1) == "winograd"
    assert K.conv_algorithm(64, 128, 3, 3, 1, 1) == "winograd"
    for shape in [(3, 16, 3, 3, 1, 1), (16, 8, 3, 3, 1, 1), (16, 32, 3, 3, 2, 2), (32, 32, 5, 5, 1, 1),
                  (32, 32, 3, 1, 1, 1)]:
        assert K.conv_algorithm(*shape) == "im2col"
    x, w5 = np.zeros((1, 2, 6, 6), np.float32), np.zeros((2, 2, 5, 5), np.float32)
    with pytest.raises(ValueError, match="winograd needs a 3x3 kernel and stride 1"):
        K.conv2d_forward(x, w5, None, 1, 1, 0, 0, algorithm="winograd")
    with pytest.raises(ValueError, match="winograd4 needs a 3x3 kernel and stride 1"):
        K.conv2d_forward(x, w5[:, :, :3, :3], None, 2, 2, 0, 0, algorithm="winograd4")
    with pytest.raises(ValueError, match="output tile size m must be one of"):
        K.winograd_forward(x, w5[:, :, :3, :3], None, 0, 0, m=3)
    with pytest.raises(ValueError, match=r"residual must have the output's shape \(1, 2, 4, 4\)"):
        K.conv2d_forward(x, w5[:, :, :3, :3], None, 1, 1, 0, 0, residual=np.zeros((1, 2, 6, 6), np.float32))
    with pytest.raises(ValueError, match="algorithm must be one of"):
        K.conv2d_backward(x, w5, np.zeros((1, 2, 2, 2), np.float32), 1, 1, 0, 0, algorithm="fft")


@pytest.mark.parametrize("algorithm", ["winograd", "winograd4"])
@pytest.mark.parametrize("padding, bias, shape", [(1, False, (2, 16, 5, 6)), (0, True, (1, 16, 7, 4)),
                                                  (2, True, (2, 16, 9, 3))])
def test_conv2d_gradcheck_through_winograd(padding, bias, shape, algorithm):
    """Float64 finite differences through Conv2d with the algorithm set on the layer."""
    layer = nn.Conv2d(16, 16, 3, padding=padding, bias=bias, rng=np.random.default_rng(0),
                      algorithm=algorithm).astype(np.float64)
    check_module(layer, np.random.default_rng(1).standard_normal(shape), tol=1e-6)
    assert layer.algorithm == algorithm


@pytest.mark.parametrize("m", TILES)
def test_inputs_need_not_be_contiguous_and_buffers_are_reused_safely(m):
    rng = np.random.default_rng(0)
    x = rand(rng, (3, 40, 9, 8), np.float32)[:, ::2, ::-1]             # (3, 20, 9, 8), non-contiguous
    w = rand(rng, (18, 40, 3, 3), np.float32)[:, ::2]                  # (18, 20, 3, 3), non-contiguous
    y1 = K.winograd_forward(x, w, None, 1, 1, m=m)
    K.winograd_forward(rand(rng, (5, 7, 11, 13), np.float32), rand(rng, (2, 7, 3, 3), np.float32), None, 0, 2,
                       m=6 - m)                                          # the other m, another shape
    np.testing.assert_array_equal(K.winograd_forward(x, w, None, 1, 1, m=m), y1)
    assert_close(y1, K.winograd_forward_ref(np.ascontiguousarray(x), np.ascontiguousarray(w), None, 1, 1, m=m))


@pytest.mark.parametrize("m", TILES)
def test_concurrent_callers_get_their_own_buffers(m):
    rng = np.random.default_rng(4)
    jobs = [(rand(rng, (3, 16, 8, 8), np.float32), rand(rng, (16, 16, 3, 3), np.float32)) for _ in range(8)]
    dy = np.ones((3, 16, 8, 8), np.float32)
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda j: K.winograd_backward(j[0], j[1], dy, 1, 1, m=m), jobs))
    for (x, w), got in zip(jobs, outs):
        for a, e in zip(got, K.winograd_backward_ref(x, w, dy, 1, 1, m=m)):
            assert_close(a, e)


@pytest.mark.parametrize("algorithm, dtype, tol", [("winograd", np.float64, 1e-10), ("winograd", np.float32, 1e-5),
                                                   ("winograd4", np.float64, 1e-10), ("winograd4", np.float32, 1e-4)])
def test_conv2d_matches_pytorch_through_winograd(algorithm, dtype, tol):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    ours = nn.Conv2d(16, 24, 3, padding=1, rng=rng, algorithm=algorithm).astype(dtype)
    theirs = torch.nn.Conv2d(16, 24, 3, padding=1).to(getattr(torch, np.dtype(dtype).name))
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.weight.data))
        theirs.bias.copy_(torch.from_numpy(ours.bias.data))
    x = rng.standard_normal((3, 16, 9, 10)).astype(dtype)
    y = ours(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = ours.backward(dy)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = theirs(xt)
    yt.backward(torch.from_numpy(dy))
    for a, e in [(y, yt), (dx, xt.grad), (ours.weight.grad, theirs.weight.grad), (ours.bias.grad, theirs.bias.grad)]:
        e = e.detach().numpy()
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * np.abs(e).max())
