"""The recurrent kernels (``npnet.kernels.recurrent``) against their NumPy twins, float32 and float64,
and the layers through both; the twins are what ``kernels.use_reference()`` runs. The layers'
gradient checks and PyTorch comparisons (tests/test_recurrent.py, tests/test_torch_recurrent.py)
run through the kernels."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npnet import kernels as K, nn
from npnet.kernels import recurrent as R

DTYPES = [np.float32, np.float64]
# (L, N, H): one sequence; H not a multiple of 8 (a vector's tail); N below and above the rows
# that make a second worker pay (``_MIN_ROWS`` 16: 33 rows are 2 workers' blocks of 16 and 17)
SHAPES = [(1, 1, 1), (3, 1, 9), (5, 3, 7), (4, 33, 13), (2, 40, 16)]


def assert_close(actual, expected):
    """Equal to rounding relative to the magnitude of ``expected`` (float32: 2e-5, float64: 1e-12)."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    tol = 2e-5 if expected.dtype == np.float32 else 1e-12
    scale = max(float(np.abs(expected).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


def operands(rng, L, N, H, gates, dtype, bias=True):
    """xw (L, N, gates H), h0, c0 (N, H), w_hh scaled as the layers initialise it, two biases."""
    def r(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dtype)
    b = (r(gates * H), r(gates * H)) if bias else (None, None)
    return r(L, N, gates * H), r(N, H), r(N, H), r(gates * H, H, scale=1 / np.sqrt(H)), b


def both(kernel, twin, *args, overwritten=0):
    """The kernel's and the twin's results, each on its own copy of the argument it overwrites."""
    first = [a.copy() if i == overwritten else a for i, a in enumerate(args)]
    second = [a.copy() if i == overwritten else a for i, a in enumerate(args)]
    return kernel(*first), twin(*second)


def assert_all_close(got, want):
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    assert len(got) == len(want)
    for a, e in zip(got, want):
        assert_close(a, e)
        assert a.flags.c_contiguous


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_kernels_match_their_twins(dtype, shape, bias):
    L, N, H = shape
    rng = np.random.default_rng(L * 100 + N)
    xw, h0, c0, w, (bi, bh) = operands(rng, L, N, H, 4, dtype, bias)
    got, want = both(K.lstm_forward, K.lstm_forward_ref, xw, h0, c0, w, bi, bh)
    assert_all_close(got, want)
    hs, cs, gates = want
    dhs, dhT, dcT = (rng.standard_normal(a.shape).astype(dtype) for a in (hs, h0, c0))
    got, want = both(K.lstm_backward, K.lstm_backward_ref, dhs, dhT, dcT, gates, cs, c0, w, overwritten=3)
    assert_all_close(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_gru_kernels_match_their_twins(dtype, shape, bias):
    L, N, H = shape
    rng = np.random.default_rng(L * 100 + N)
    xw, h0, _, w, (bi, bh) = operands(rng, L, N, H, 3, dtype, bias)
    got, want = both(K.gru_forward, K.gru_forward_ref, xw, h0, w, bi, bh)
    assert_all_close(got, want)
    hs, gates, hns = want
    dhs, dhT = rng.standard_normal(hs.shape).astype(dtype), rng.standard_normal(h0.shape).astype(dtype)
    got, want = both(K.gru_backward, K.gru_backward_ref, dhs, dhT, gates, hns, hs, h0, w, overwritten=2)
    assert_all_close(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("relu", [False, True])
def test_rnn_kernels_match_their_twins(dtype, shape, bias, relu):
    L, N, H = shape
    rng = np.random.default_rng(L * 100 + N)
    xw, h0, _, w, (bi, bh) = operands(rng, L, N, H, 1, dtype, bias)
    got, hs = both(K.rnn_forward, K.rnn_forward_ref, xw, h0, w, bi, bh, relu)
    assert_all_close(got, hs)
    dhs, dhT = rng.standard_normal(hs.shape).astype(dtype), rng.standard_normal(h0.shape).astype(dtype)
    assert_all_close(K.rnn_backward(dhs, dhT, hs, w, relu), K.rnn_backward_ref(dhs, dhT, hs, w, relu))


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=15, deadline=None)
@given(L=st.integers(1, 6), N=st.integers(1, 40), H=st.integers(1, 20), seed=st.integers(0, 2**16))
def test_drawn_shapes_match_their_twins(dtype, L, N, H, seed):
    rng = np.random.default_rng(seed)
    xw, h0, c0, w, (bi, bh) = operands(rng, L, N, H, 4, dtype)
    assert_all_close(*both(K.lstm_forward, K.lstm_forward_ref, xw, h0, c0, w, bi, bh))
    xw, h0, _, w, (bi, bh) = operands(rng, L, N, H, 3, dtype)
    assert_all_close(*both(K.gru_forward, K.gru_forward_ref, xw, h0, w, bi, bh))


def test_the_forward_kernels_write_their_gates_over_xw_and_keep_nan():
    rng = np.random.default_rng(3)
    xw, h0, c0, w, (bi, bh) = operands(rng, 3, 20, 5, 4, np.float32)
    xw[1, 2, 0] = np.nan
    hs, cs, gates = K.lstm_forward(xw, h0, c0, w, bi, bh)
    assert gates is xw and np.isnan(hs[1, 2, 0]) and np.isnan(hs[2, 2]).all()  # NaN spreads, as in NumPy
    assert not np.isnan(hs[:, :2]).any()
    xw, h0, _, w, (bi, bh) = operands(rng, 3, 20, 5, 1, np.float32)
    assert K.rnn_forward(xw, h0, w, bi, bh, False) is xw


def test_extreme_pre_activations_saturate_as_the_twin():
    """Large |a|: float32 tanh is +-1 outside +-7.9 and sigmoid 0 or 1, as NumPy's."""
    rng = np.random.default_rng(4)
    xw, h0, c0, w, (bi, bh) = operands(rng, 2, 17, 6, 4, np.float32)
    xw *= 1e4
    assert_all_close(*both(K.lstm_forward, K.lstm_forward_ref, xw, h0, c0, w, bi, bh))


def test_bad_operands_are_refused_with_their_shapes():
    rng = np.random.default_rng(5)
    xw, h0, c0, w, (bi, bh) = operands(rng, 2, 3, 4, 4, np.float32)
    with pytest.raises(TypeError, match="one dtype, got float32, float64"):
        K.lstm_forward(xw, h0.astype(np.float64), c0, w, bi, bh)
    with pytest.raises(ValueError, match=r"states \(3, 4\), w_hh \(16, 4\) and biases \(16,\), got \[\(4, 4\)\]"):
        K.lstm_forward(xw, h0, c0, w[:4], bi, bh)
    with pytest.raises(ValueError, match=r"\(L, N, 3H\) pre-activations, got \(2, 3, 16\)"):
        K.gru_forward(xw, h0, w, None, None)
    with pytest.raises(ValueError, match=r"expected \(2, 3, 4\) float32 sequences"):
        K.lstm_backward(np.zeros((2, 3, 5), np.float32), h0, c0, xw, np.zeros((2, 3, 4), np.float32), c0, w)


# -- through the layers ------------------------------------------------------------------------------
LAYERS = [(nn.LSTM, {}), (nn.GRU, {}), (nn.RNN, {}), (nn.RNN, {"nonlinearity": "relu"})]


def run_layer(layer, x, dtype):
    """(output, final states, d_x, weight gradients) of one forward and backward."""
    layer.zero_grad()
    y, st = layer(x)
    states = st if isinstance(st, tuple) else (st,)
    rng = np.random.default_rng(1)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dst = tuple(rng.standard_normal(s.shape).astype(dtype) for s in states)
    dx = layer.backward((dy, dst if len(dst) == 2 else dst[0]))
    return (y, *states, dx, *(p.grad.copy() for p in layer.parameters()))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls,kw", LAYERS, ids=["lstm", "gru", "rnn", "rnn-relu"])
@pytest.mark.parametrize("bias", [True, False])
def test_layers_agree_with_reference_mode(dtype, cls, kw, bias):
    """Both directions, 2 layers, batch_first, bias or not: the kernels and the twins agree."""
    layer = cls(5, 11, num_layers=2, bidirectional=True, batch_first=True, bias=bias, rng=0, **kw).astype(dtype)
    x = np.random.default_rng(0).standard_normal((18, 4, 5)).astype(dtype)  # (N, T, I)
    fast = run_layer(layer, x, dtype)
    with K.use_reference():
        slow = run_layer(layer, x, dtype)
    for a, e in zip(fast, slow):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, e, rtol=1e-4 if dtype == np.float32 else 1e-11,
                                   atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
def test_reference_mode_runs_the_numpy_twins(cls, monkeypatch):
    """Inside ``use_reference()`` the layer's entry points call the ``*_ref`` twins (the names their
    first lines look up in ``kernels/recurrent.py``); outside, the Numba code runs and no twin."""
    cell = {nn.LSTM: "lstm", nn.GRU: "gru", nn.RNN: "rnn"}[cls]
    called = []
    for name in (f"{cell}_forward_ref", f"{cell}_backward_ref"):
        twin = getattr(R, name)
        monkeypatch.setattr(R, name, lambda *a, _t=twin, _n=name: called.append(_n) or _t(*a))
    layer = cls(3, 4, bidirectional=True, rng=0)
    x = np.zeros((2, 5, 3), np.float32)
    layer.backward(np.ones_like(layer(x)[0]))
    assert called == []
    with K.use_reference():
        layer.backward(np.ones_like(layer(x)[0]))
    assert called == [f"{cell}_forward_ref"] * 2 + [f"{cell}_backward_ref"] * 2


def test_an_empty_sequence_keeps_the_initial_state():
    lstm = nn.LSTM(3, 4, rng=0)
    h0 = np.ones((1, 2, 4), np.float32)
    y, (h, c) = lstm(np.zeros((0, 2, 3), np.float32), (h0, 2 * h0))
    assert y.shape == (0, 2, 4)
    np.testing.assert_array_equal(h, h0)
    np.testing.assert_array_equal(c, 2 * h0)
    dh, dc = np.full_like(h0, 3), np.full_like(h0, 4)
    assert lstm.backward((np.zeros_like(y), (dh, dc))).shape == (0, 2, 3)
    np.testing.assert_array_equal(lstm.hx_grad[0], dh)                 # passed through unchanged
    np.testing.assert_array_equal(lstm.hx_grad[1], dc)
