"""Numba kernels against their NumPy references, the references against naive loops and adjoint
identities, and (where installed) everything against PyTorch."""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npnet import kernels as K

SETTINGS = settings(max_examples=30, deadline=None)
DTYPES = [np.float32, np.float64]


def assert_close(actual, expected, dtype=None):
    """Equal up to rounding, relative to the magnitude of ``expected`` (1e-5 float32, 1e-12 float64)."""
    dtype = np.dtype(dtype or expected.dtype)
    assert actual.dtype == dtype and actual.shape == expected.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    scale = max(float(np.abs(expected).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


@st.composite
def geometry(draw, pooling=False):
    """(N, C, H, W, kh, kw, sh, sw, ph, pw) with at least one output pixel; strides need not tile."""
    N, C = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if pooling:     # PyTorch's rule: padding at most half the kernel
        ph, pw = draw(st.integers(0, min(2, kh // 2))), draw(st.integers(0, min(2, kw // 2)))
    else:
        ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H = draw(st.integers(max(1, kh - 2 * ph), 12))
    W = draw(st.integers(max(1, kw - 2 * pw), 12))
    return N, C, H, W, kh, kw, sh, sw, ph, pw


def rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------ Numba kernels == NumPy references

@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(g=geometry(), seed=st.integers(0, 2**16))
def test_im2col_col2im_match_ref(dtype, g, seed):
    N, C, H, W, kh, kw, sh, sw, ph, pw = g
    rng = np.random.default_rng(seed)
    x = rand(rng, (N, C, H, W), dtype)
    cols = K.im2col(x, kh, kw, sh, sw, ph, pw)
    np.testing.assert_array_equal(cols, K.im2col_ref(x, kh, kw, sh, sw, ph, pw))   # a pure copy
    assert cols.dtype == dtype
    c = rand(rng, cols.shape, dtype)
    assert_close(K.col2im(c, C, H, W, kh, kw, sh, sw, ph, pw), K.col2im_ref(c, C, H, W, kh, kw, sh, sw, ph, pw))


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(g=geometry(), O=st.integers(1, 5), bias=st.booleans(), need_dx=st.booleans(),
       need_dw=st.booleans(), seed=st.integers(0, 2**16))
def test_conv_matches_ref(dtype, g, O, bias, need_dx, need_dw, seed):
    N, C, H, W, kh, kw, sh, sw, ph, pw = g
    rng = np.random.default_rng(seed)
    x, w = rand(rng, (N, C, H, W), dtype), rand(rng, (O, C, kh, kw), dtype)
    b = rand(rng, (O,), dtype) if bias else None
    y = K.conv2d_forward(x, w, b, sh, sw, ph, pw)
    assert_close(y, K.conv2d_forward_ref(x, w, b, sh, sw, ph, pw))
    res = rand(rng, y.shape, dtype)                       # fused inference: + residual, then the clamp
    for relu in (False, True):
        got = K.conv2d_forward(x, w, b, sh, sw, ph, pw, algorithm="im2col", relu=relu, residual=res)
        assert_close(got, K.conv2d_forward_ref(x, w, b, sh, sw, ph, pw, algorithm="im2col", relu=relu, residual=res))
        assert_close(got, np.maximum(y + res, 0) if relu else y + res)
    dy = rand(rng, y.shape, dtype)
    got = K.conv2d_backward(x, w, dy, sh, sw, ph, pw, need_dx, need_dw)
    want = K.conv2d_backward_ref(x, w, dy, sh, sw, ph, pw, need_dx, need_dw)
    assert (got[0] is None) == (not need_dx) == (want[0] is None)
    assert (got[1] is None) == (not need_dw) == (want[1] is None)
    for a, e in zip(got, want):
        if e is not None:
            assert_close(a, e)
            assert a.flags.c_contiguous


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(g=geometry(pooling=True), ties=st.booleans(), seed=st.integers(0, 2**16))
def test_maxpool_matches_ref(dtype, g, ties, seed):
    N, C, H, W, kh, kw, sh, sw, ph, pw = g
    rng = np.random.default_rng(seed)
    # small integers make many ties: the first maximum in row-major window order must win
    x = rng.integers(-2, 3, (N, C, H, W)).astype(dtype) if ties else rand(rng, (N, C, H, W), dtype)
    y, arg = K.maxpool2d_forward(x, kh, kw, sh, sw, ph, pw)
    y_ref, arg_ref = K.maxpool2d_forward_ref(x, kh, kw, sh, sw, ph, pw)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    assert y.dtype == dtype and arg.dtype == np.int64
    dy = rand(rng, y.shape, dtype)
    assert_close(K.maxpool2d_backward(dy, arg, H, W), K.maxpool2d_backward_ref(dy, arg, H, W))


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(g=geometry(pooling=True), seed=st.integers(0, 2**16))
def test_avgpool_matches_ref(dtype, g, seed):
    N, C, H, W, kh, kw, sh, sw, ph, pw = g
    rng = np.random.default_rng(seed)
    x = rand(rng, (N, C, H, W), dtype)
    y = K.avgpool2d_forward(x, kh, kw, sh, sw, ph, pw)
    assert_close(y, K.avgpool2d_forward_ref(x, kh, kw, sh, sw, ph, pw))
    dy = rand(rng, y.shape, dtype)
    assert_close(K.avgpool2d_backward(dy, H, W, kh, kw, sh, sw, ph, pw),
                 K.avgpool2d_backward_ref(dy, H, W, kh, kw, sh, sw, ph, pw))


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(N=st.integers(1, 3), C=st.integers(1, 4), H=st.integers(2, 11), W=st.integers(2, 11),
       values=st.sampled_from(["normal", "ties", "nans"]), seed=st.integers(0, 2**16))
def test_maxpool_2x2_fast_path_matches_ref(dtype, N, C, H, W, values, seed):
    """The 2x2 stride-2 kernel (odd sizes drop the last row/column, as PyTorch): same winners,
    first maximum on ties, the last NaN of a window."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, (N, C, H, W)).astype(dtype) if values == "ties" else rand(rng, (N, C, H, W), dtype)
    if values == "nans":
        x[rng.random(x.shape) < 0.2] = np.nan
    y, arg = K.maxpool2d_forward(x, 2, 2, 2, 2, 0, 0)
    y_ref, arg_ref = K.maxpool2d_forward_ref(x, 2, 2, 2, 2, 0, 0)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)


def test_maxpool_nan_wins_like_pytorch():
    x = np.array([[[[1.0, np.nan], [np.nan, 5.0]]]])
    for fwd in (K.maxpool2d_forward, K.maxpool2d_forward_ref):
        y, arg = fwd(x, 2, 2, 2, 2, 0, 0)
        assert np.isnan(y[0, 0, 0, 0]) and arg[0, 0, 0, 0] == 2     # the last NaN, as PyTorch's CPU kernel


def test_inputs_need_not_be_contiguous_and_buffers_are_reused_safely():
    rng = np.random.default_rng(0)
    x = rand(rng, (3, 5, 9, 8), np.float32)[:, ::2, ::-1]             # (3, 3, 9, 8), non-contiguous
    w = rand(rng, (4, 8, 3, 3), np.float32)[:, ::-1][:, :3]          # (4, 3, 3, 3), non-contiguous
    y1 = K.conv2d_forward(x, w, None, 1, 2, 1, 0)
    K.conv2d_forward(rand(rng, (5, 7, 11, 11), np.float32), rand(rng, (2, 7, 5, 5), np.float32), None,
                     1, 1, 2, 2)                                     # another shape through the same pool
    np.testing.assert_array_equal(K.conv2d_forward(x, w, None, 1, 2, 1, 0), y1)
    assert_close(y1, K.conv2d_forward_ref(x, w, None, 1, 2, 1, 0))


def test_concurrent_callers_get_their_own_buffers():
    from concurrent.futures import ThreadPoolExecutor
    rng = np.random.default_rng(4)
    jobs = [(rand(rng, (3, 2, 8, 8), np.float32), rand(rng, (3, 2, 3, 3), np.float32)) for _ in range(8)]
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda j: K.conv2d_backward(j[0], j[1], np.ones((3, 3, 8, 8), np.float32),
                                                         1, 1, 1, 1), jobs))
    for (x, w), got in zip(jobs, outs):
        for a, e in zip(got, K.conv2d_backward_ref(x, w, np.ones((3, 3, 8, 8), np.float32), 1, 1, 1, 1)):
            assert_close(a, e)


def test_non_float_input_is_a_type_error():
    with pytest.raises(TypeError, match="float32 or float64"):
        K.conv2d_forward(np.ones((1, 1, 3, 3), np.int64), np.ones((1, 1, 1, 1)), None, 1, 1, 0, 0)
    with pytest.raises(TypeError, match="float32 or float64"):
        K.maxpool2d_forward(np.ones((1, 1, 2, 2), np.float16), 2, 2, 2, 2, 0, 0)


def test_scipy_blas_is_single_threaded_inside_the_kernels():
    setup = K.blas_setup()
    if setup["library"] is None:
        pytest.skip("SciPy's bundled OpenBLAS not found; nothing was changed")
    lib = K._threads._scipy_blas()
    outside = lib.get_num_threads()
    seen = K._threads.one_blas_thread(lib.get_num_threads)()
    assert setup["threads"] == seen == 1 and lib.get_num_threads() == outside


def test_numba_cache_switch():
    """NPNET_NUMBA_CACHE=0 compiles every kernel afresh: Numba's dispatcher gets no disk cache."""
    code = ("import npnet.kernels as K; from npnet.kernels import _jit; "
            "print(_jit.CACHE, type(K.conv._conv_forward._cache).__name__)")
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600,
                           env={**os.environ, "NPNET_NUMBA_CACHE": v}).stdout.split() for v in ("0", "1")]
    assert outs[0] == ["False", "NullCache"] and outs[1][0] == "True" and outs[1][1] != "NullCache"


@pytest.mark.parametrize("threads", [1, 2])
def test_conv_does_not_depend_on_thread_count(threads):
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("not enough Numba threads")
    rng = np.random.default_rng(1)
    x, w, dy = rand(rng, (5, 3, 7, 7), np.float64), rand(rng, (4, 3, 3, 3), np.float64), None
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        y = K.conv2d_forward(x, w, None, 1, 1, 1, 1)
        dy = rand(rng, y.shape, np.float64)
        got = K.conv2d_backward(x, w, dy, 1, 1, 1, 1)
    finally:
        numba.set_num_threads(previous)
    assert_close(y, K.conv2d_forward_ref(x, w, None, 1, 1, 1, 1))
    for a, e in zip(got, K.conv2d_backward_ref(x, w, dy, 1, 1, 1, 1)):
        assert_close(a, e)


# --------------------------------------------------------- references against naive loops and identities

def naive_conv(x, w, b, sh, sw, ph, pw):
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    OH, OW = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    y = np.zeros((N, O, OH, OW))
    for n, o, oh, ow, c, i, j in np.ndindex(N, O, OH, OW, C, kh, kw):
        h, v = oh * sh + i - ph, ow * sw + j - pw
        if 0 <= h < H and 0 <= v < W:
            y[n, o, oh, ow] += w[o, c, i, j] * x[n, c, h, v]
    return y + (0 if b is None else b[:, None, None])


def naive_pool(x, kh, kw, sh, sw, ph, pw, op):
    N, C, H, W = x.shape
    OH, OW = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    y = np.zeros((N, C, OH, OW))
    for n, c, oh, ow in np.ndindex(N, C, OH, OW):
        h0, w0 = oh * sh - ph, ow * sw - pw
        window = x[n, c, max(h0, 0):h0 + kh, max(w0, 0):w0 + kw]
        y[n, c, oh, ow] = window.max() if op == "max" else window.sum() / (kh * kw)
    return y


GEOMS = [(2, 3, 6, 5, 3, 2, 1, 1, 1, 0), (1, 2, 7, 7, 3, 3, 2, 3, 1, 1), (2, 1, 5, 4, 5, 4, 3, 2, 2, 2)]


@pytest.mark.parametrize("g", GEOMS)
def test_conv_ref_equals_naive_loops(g):
    N, C, H, W, kh, kw, sh, sw, ph, pw = g
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((3, C, kh, kw)), rng.standard_normal(3)
    assert_close(K.conv2d_forward_ref(x, w, b, sh, sw, ph, pw), naive_conv(x, w, b, sh, sw, ph, pw))
    # backward by linearity: dw[o,c,i,j] = <dy, conv(x, e_ocij)>, db[o] = <dy[:, o], 1>
    dy = rng.standard_normal(naive_conv(x, w, None, sh, sw, ph, pw).shape)
    dx, dw, db = K.conv2d_backward_ref(x, w, dy, sh, sw, ph, pw)
    for idx in np.ndindex(w.shape):
        e = np.zeros_like(w)
        e[idx] = 1.0
        assert np.isclose(dw[idx], np.sum(dy * naive_conv(x, e, None, sh, sw, ph, pw)), rtol=1e-12, atol=1e-12)
    assert_close(db, dy.sum(axis=(0, 2, 3)))
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = 1.0
        assert np.isclose(dx[idx], np.sum(dy * naive_conv(e, w, None, sh, sw, ph, pw)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("g", [g for g in GEOMS if g[8] <= g[4] // 2 and g[9] <= g[5] // 2])
def test_pool_refs_equal_naive_loops(g):
    N, C, H, W, kh, kw, sh, sw, ph, pw = g
    x = np.random.default_rng(3).standard_normal((N, C, H, W))
    y, arg = K.maxpool2d_forward_ref(x, kh, kw, sh, sw, ph, pw)
    assert_close(y, naive_pool(x, kh, kw, sh, sw, ph, pw, "max"))
    np.testing.assert_array_equal(np.take_along_axis(x.reshape(N, C, -1), arg.reshape(N, C, -1), 2),
                                  y.reshape(N, C, -1))           # argmax points at the winner
    assert_close(K.avgpool2d_forward_ref(x, kh, kw, sh, sw, ph, pw), naive_pool(x, kh, kw, sh, sw, ph, pw, "avg"))


def vdot(a, b):
    return float(np.dot(a.ravel(), b.ravel()))


@SETTINGS
@given(g=geometry(), seed=st.integers(0, 2**16))
def test_backward_refs_are_adjoints(g, seed):
    """<A x, c> == <x, A^T c> for each linear map: im2col/col2im, conv in x and in w, pooling."""
    N, C, H, W, kh, kw, sh, sw, ph, pw = g
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((N, C, H, W)), rng.standard_normal((2, C, kh, kw))
    cols = K.im2col_ref(x, kh, kw, sh, sw, ph, pw)
    c = rng.standard_normal(cols.shape)
    assert np.isclose(vdot(cols, c), vdot(x, K.col2im_ref(c, C, H, W, kh, kw, sh, sw, ph, pw)), rtol=1e-10)
    y = K.conv2d_forward_ref(x, w, None, sh, sw, ph, pw)
    dy = rng.standard_normal(y.shape)
    dx, dw, _ = K.conv2d_backward_ref(x, w, dy, sh, sw, ph, pw)
    assert np.isclose(vdot(y, dy), vdot(x, dx), rtol=1e-10)
    assert np.isclose(vdot(y, dy), vdot(w, dw), rtol=1e-10)
    if ph <= kh // 2 and pw <= kw // 2:
        y, arg = K.maxpool2d_forward_ref(x, kh, kw, sh, sw, ph, pw)   # locally linear: y = x[arg]
        dy = rng.standard_normal(y.shape)
        assert np.isclose(vdot(y, dy), vdot(x, K.maxpool2d_backward_ref(dy, arg, H, W)), rtol=1e-10)
        y = K.avgpool2d_forward_ref(x, kh, kw, sh, sw, ph, pw)
        assert np.isclose(vdot(y, dy), vdot(x, K.avgpool2d_backward_ref(dy, H, W, kh, kw, sh, sw, ph, pw)),
                          rtol=1e-10)


# ----------------------------------------------------------------------------------------- PyTorch

@settings(max_examples=25, deadline=None)
@given(g=geometry(), O=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_conv_matches_torch(g, O, seed):
    torch = pytest.importorskip("torch")
    N, C, H, W, kh, kw, sh, sw, ph, pw = g
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((O, C, kh, kw)), rng.standard_normal(O)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, (sh, sw), (ph, pw))
    y = K.conv2d_forward(x, w, b, sh, sw, ph, pw)
    assert_close(y, ty.detach().numpy())
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    for a, t in zip(K.conv2d_backward(x, w, dy, sh, sw, ph, pw), (tx, tw, tb)):
        assert_close(a, t.grad.numpy())


@settings(max_examples=25, deadline=None)
@given(g=geometry(pooling=True), ties=st.booleans(), seed=st.integers(0, 2**16))
def test_pooling_matches_torch(g, ties, seed):
    torch = pytest.importorskip("torch")
    N, C, H, W, kh, kw, sh, sw, ph, pw = g
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, (N, C, H, W)).astype(np.float64) if ties else rng.standard_normal((N, C, H, W))
    F, tx = torch.nn.functional, torch.tensor(x, requires_grad=True)
    ty, tidx = F.max_pool2d(tx, (kh, kw), (sh, sw), (ph, pw), return_indices=True)
    y, arg = K.maxpool2d_forward(x, kh, kw, sh, sw, ph, pw)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(arg, tidx.numpy())
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    assert_close(K.maxpool2d_backward(dy, arg, H, W), tx.grad.numpy())

    tx.grad = None
    ty = F.avg_pool2d(tx, (kh, kw), (sh, sw), (ph, pw))            # count_include_pad=True by default
    assert_close(K.avgpool2d_forward(x, kh, kw, sh, sw, ph, pw), ty.detach().numpy())
    ty.backward(torch.tensor(dy))
    assert_close(K.avgpool2d_backward(dy, H, W, kh, kw, sh, sw, ph, pw), tx.grad.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_elementwise_kernels_match_ref(dtype, shape, seed):
    """ReLU forward / backward, the block's add-relu and the in-place add against their NumPy twins,
    with NaN in the input and the gradient, and non-contiguous inputs."""
    rng = np.random.default_rng(seed)
    x, d, s = (rand(rng, shape, dtype) for _ in range(3))
    x.flat[0], d.flat[-1] = np.nan, np.nan
    y = K.relu_forward(x)
    np.testing.assert_array_equal(y, K.relu_forward_ref(x))            # NaN stays NaN
    np.testing.assert_array_equal(K.relu_backward(d, y), K.relu_backward_ref(d, y))
    np.testing.assert_array_equal(K.add_relu(x, s), K.add_relu_ref(x, s))
    y2 = x.copy()
    assert K.add_relu(y2, s, out=y2) is y2                              # in place, as inference uses it
    np.testing.assert_array_equal(y2, K.add_relu_ref(x, s))
    a, a_ref = x.copy(), x.copy()
    np.testing.assert_array_equal(K.add_(a, s), K.add_ref(a_ref, s))
    np.testing.assert_array_equal(a, a_ref)
    big = rand(rng, (2,) + tuple(shape), dtype)
    view = big[:, ..., ::-1][1]                                         # reversed: not C-ordered
    np.testing.assert_array_equal(K.relu_forward(view), K.relu_forward_ref(view))
    np.testing.assert_array_equal(K.relu_backward(view, y), K.relu_backward_ref(view, y))
    for out in (K.relu_forward(x), K.relu_backward(d, y), K.add_relu(x, s)):
        assert out.dtype == dtype and out.shape == tuple(shape) and out.flags.c_contiguous


def test_elementwise_refuses_outputs_it_cannot_write():
    a = np.zeros((4, 6), np.float32)
    with pytest.raises(ValueError, match="must be C-ordered"):
        K.add_(a.T, np.ones((6, 4), np.float32))
    with pytest.raises(ValueError, match="out must be C-ordered float32 of shape"):
        K.add_relu(a, a, out=np.zeros((6, 4), np.float32).T)


def test_no_kernel_is_a_numba_parallel_kernel():
    """Every npnet kernel is a serial worker run by ``_threads.run_workers``: a ``prange`` kernel
    starts Numba's OpenMP pool, whose threads spin after each loop and took a core from the
    convolution's worker threads (ResNet-32's train step at 2 threads ~1.6x slower, 7 December)."""
    import importlib
    import pkgutil

    from numba.core.registry import CPUDispatcher

    import npnet.kernels
    parallel = []
    for info in pkgutil.iter_modules(npnet.kernels.__path__):
        module = importlib.import_module(f"npnet.kernels.{info.name}")
        for name, obj in vars(module).items():
            if isinstance(obj, CPUDispatcher) and obj.targetoptions.get("parallel"):
                parallel.append(f"{info.name}.{name}")
    assert parallel == [], f"parallel=True kernels: {parallel}"


_NO_POOL = """
import numpy as np
import npnet
from numba.np.ufunc import parallel
from npnet import losses, nn
from npnet.models import build_model
model = build_model("cnn-bn", num_classes=10)
x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
loss = losses.CrossEntropyLoss()
loss(model(x), np.arange(4) % 10)
model.backward(loss.backward())
nn.AvgPool2d(3, 2, 1)(x)
print(parallel._is_initialized)
"""


def test_npnet_never_starts_numbas_thread_pool():
    """npnet's kernels run on its own worker threads and ask ``_threads.num_threads`` for their
    count: Numba's OpenMP pool (started by ``numba.get_num_threads`` or ``set_num_threads``) stays
    unstarted, so it cannot slow a PyTorch imported later (its Transformer step: 7.9 s vs 0.23 s)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    out = subprocess.run([sys.executable, "-c", _NO_POOL], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False", "a train step started Numba's thread pool"
