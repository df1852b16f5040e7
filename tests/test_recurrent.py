"""RNN, LSTM, GRU: float64 gradient checks of the output, the final states, every weight and the
initial states (num_layers, bidirectional, batch_first, dropout, bias=False), dtype kept, and clear
errors. The PyTorch comparison is in tests/test_torch_recurrent.py."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npnet import nn
from npnet.gradcheck import numerical_gradient, relative_error

TOL = 1e-6


def _states(out, cell):
    y, st = out
    return (y, *st) if cell else (y, st)


def check_recurrent(layer, x, hx=None, seed=0, reset=None):
    """Central differences of sum(y*gy) + sum(h_n*gh) (+ sum(c_n*gc)) against backward."""
    layer.astype(np.float64)
    cell = isinstance(layer, nn.LSTM)
    rng = np.random.default_rng(seed)

    def run():
        if reset is not None:
            reset()
        return _states(layer(x, hx), cell)

    ups = [rng.standard_normal(a.shape) for a in run()]

    def f():
        return float(sum(np.sum(a * g) for a, g in zip(run(), ups)))

    run()
    layer.zero_grad()
    dstates = (ups[1], ups[2]) if cell else ups[1]
    dx = layer.backward((ups[0], dstates))
    pairs = {"input": (dx, numerical_gradient(f, x))}
    pairs.update({n: (p.grad.copy(), numerical_gradient(f, p.data)) for n, p in layer.named_parameters()})
    if hx is not None:
        for name, a, b in zip(("h_0", "c_0"), hx if cell else (hx,), layer.hx_grad if cell else (layer.hx_grad,)):
            pairs[name] = (b, numerical_gradient(f, a))
    errors = {k: relative_error(a, n) for k, (a, n) in pairs.items()}
    bad = {k: e for k, e in errors.items() if e > TOL}
    assert not bad, f"{layer!r}: gradient check failed: {bad}"


def make_hx(cls, layers, dirs, n, h, rng):
    h0 = rng.standard_normal((layers * dirs, n, h))
    return (h0, rng.standard_normal(h0.shape)) if cls is nn.LSTM else h0


CASES = [dict(), dict(num_layers=2), dict(bidirectional=True), dict(num_layers=2, bidirectional=True),
         dict(batch_first=True, num_layers=2), dict(bias=False)]


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU])
@pytest.mark.parametrize("kw", CASES, ids=lambda kw: ",".join(kw) or "default")
@pytest.mark.parametrize("with_hx", [False, True])
def test_gradcheck(cls, kw, with_hx):
    rng = np.random.default_rng(len(kw))
    layer = cls(3, 4, rng=rng, **kw)
    T, N = 4, 2
    x = rng.standard_normal((N, T, 3) if kw.get("batch_first") else (T, N, 3))
    hx = make_hx(cls, kw.get("num_layers", 1), 2 if kw.get("bidirectional") else 1, N, 4, rng) if with_hx else None
    check_recurrent(layer, x, hx)


def test_relu_rnn_gradcheck():
    rng = np.random.default_rng(5)
    layer = nn.RNN(3, 5, num_layers=2, nonlinearity="relu", bidirectional=True, rng=rng)
    check_recurrent(layer, rng.standard_normal((5, 2, 3)), make_hx(nn.RNN, 2, 2, 2, 5, rng))


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU])
def test_dropout_between_layers_gradcheck_and_eval(cls):
    rng = np.random.default_rng(6)
    layer = cls(3, 4, num_layers=3, dropout=0.4, rng=rng)
    x = rng.standard_normal((4, 2, 3))

    def reseed():  # the same dropout masks on every forward of the check
        layer.rng = np.random.default_rng(1)

    check_recurrent(layer, x, reset=reseed)
    reseed()
    y_train = layer(x)[0]
    layer.eval()
    y_eval = layer(x)[0]
    layer.dropout = 0.0
    assert not np.allclose(y_train, y_eval)
    np.testing.assert_array_equal(y_eval, layer(x)[0])  # eval mode applies no dropout
    layer.train()
    np.testing.assert_array_equal(y_eval, layer(x)[0])


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU])
def test_float32_end_to_end_and_output_layout(cls):
    layer = cls(3, 4, num_layers=2, bidirectional=True, batch_first=True, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    y, st = layer(x)
    assert y.shape == (2, 5, 8) and y.dtype == np.float32
    h_n = st[0] if cls is nn.LSTM else st
    assert h_n.shape == (4, 2, 4) and h_n.dtype == np.float32
    np.testing.assert_array_equal(h_n[2], y[:, -1, :4])  # last layer, forward: its last output
    np.testing.assert_array_equal(h_n[3], y[:, 0, 4:])  # last layer, reverse: its output at t = 0
    dx = layer.backward(np.ones_like(y))
    assert dx.dtype == np.float32 and dx.shape == x.shape
    assert all(p.grad.dtype == np.float32 for p in layer.parameters())
    layer(x)
    assert layer.backward((None, None), input_grad=False) is None


def test_pytorch_parameter_names_shapes_and_init_range():
    layer = nn.LSTM(3, 5, num_layers=2, bidirectional=True, rng=0)
    shapes = {k: v.shape for k, v in layer.state_dict().items()}
    assert list(shapes)[:5] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_ih_l0_reverse"]
    assert shapes["weight_ih_l1_reverse"] == (20, 10) and shapes["weight_hh_l1"] == (20, 5)
    assert len(shapes) == 16
    bound = 1 / np.sqrt(5)
    assert all(np.abs(p.data).max() <= bound for p in layer.parameters())
    assert nn.GRU(3, 5, bias=False).state_dict().keys() == {"weight_ih_l0", "weight_hh_l0"}


def test_errors_name_the_layer():
    rnn = nn.GRU(3, 4, num_layers=2)
    x = np.zeros((5, 2, 3), np.float32)
    with pytest.raises(ValueError, match=r"GRU\(3, 4, num_layers=2\): expected input of shape \(L, N, input_size\)"):
        rnn(np.zeros((5, 2, 6), np.float32))
    with pytest.raises(ValueError, match=r"expected h_0 of shape \(2, 2, 4\)"):
        rnn(x, np.zeros((1, 2, 4), np.float32))
    with pytest.raises(ValueError, match="LSTM.*expected hx as a tuple"):
        nn.LSTM(3, 4)(x, np.zeros((1, 2, 4), np.float32))
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="dropout must be in"):
        nn.LSTM(3, 4, dropout=1.0)
    rnn(x)
    with pytest.raises(ValueError, match=r"GRU.*backward: expected gradient of shape \(2, 2, 4\)"):
        rnn.backward((None, np.zeros((1, 2, 4), np.float32)))
    rnn(x)
    with pytest.raises(ValueError, match=r"expected d_output or a pair \(d_output, d_states\), got a tuple of 3"):
        rnn.backward((None, None, None))
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward"):
        nn.RNN(3, 4).backward(np.zeros((5, 2, 4), np.float32))


@settings(max_examples=8)
@given(cls=st.sampled_from([nn.RNN, nn.LSTM, nn.GRU]), T=st.integers(1, 4), N=st.integers(1, 3),
       I=st.integers(1, 3), H=st.integers(1, 3), layers=st.integers(1, 2), bidirectional=st.booleans(),
       seed=st.integers(0, 999))
def test_gradcheck_drawn_shapes(cls, T, N, I, H, layers, bidirectional, seed):
    rng = np.random.default_rng(seed)
    layer = cls(I, H, num_layers=layers, bidirectional=bidirectional, rng=rng)
    hx = make_hx(cls, layers, 2 if bidirectional else 1, N, H, rng)
    check_recurrent(layer, rng.standard_normal((T, N, I)), hx)


def test_hooks_see_every_input_and_no_grad_keeps_no_cache():
    lstm = nn.LSTM(3, 2)
    seen = []
    lstm.register_forward_hook(lambda m, args, out: seen.append(len(args)))
    x = np.zeros((4, 1, 3), np.float32)
    h = np.zeros((1, 1, 2), np.float32)
    lstm(x, (h, h))
    assert seen == [2]
    with nn.no_grad():
        lstm(x)
    assert lstm.cache is None
