"""Embedding, LayerNorm, GELU, SiLU, Softmax, LogSoftmax and gradient clipping: float64 gradient
checks against central differences, dtype kept, clear errors. PyTorch comparisons are in
tests/test_torch_sequence.py."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from npnet import nn
from npnet.gradcheck import check_module, numerical_gradient
from npnet.nn.utils import clip_grad_norm_, clip_grad_value_

TOL = 1e-6


@pytest.mark.parametrize("make", [nn.GELU, lambda: nn.GELU("tanh"), nn.SiLU, lambda: nn.Softmax(1),
                                  lambda: nn.Softmax(-1), lambda: nn.LogSoftmax(0), lambda: nn.LogSoftmax(-1)])
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4), seed=st.integers(0, 999))
def test_activations_gradcheck(make, shape, seed):
    check_module(make(), np.random.default_rng(seed).standard_normal(shape) * 3, tol=TOL)


@pytest.mark.parametrize("make", [nn.GELU, lambda: nn.GELU("tanh"), nn.SiLU, lambda: nn.Softmax(1),
                                  lambda: nn.LogSoftmax(1), lambda: nn.LayerNorm(5)])
def test_float32_stays_float32(make):
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    layer = make()
    y = layer(x)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == np.float32 and dx.dtype == np.float32


def test_softmax_rows_sum_to_one_and_log_softmax_is_its_log():
    x = np.random.default_rng(1).standard_normal((2, 3, 4)) * 10
    p = nn.Softmax(1)(x)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(nn.LogSoftmax(1)(x), np.log(p), rtol=1e-10, atol=1e-12)


def test_activation_errors():
    with pytest.raises(ValueError, match="GELU: approximate must be"):
        nn.GELU("fast")
    with pytest.raises(TypeError, match="Softmax: dim must be an int"):
        nn.Softmax()
    with pytest.raises(ValueError, match=r"LogSoftmax\(dim=3\): dim 3 is out of range"):
        nn.LogSoftmax(3)(np.zeros((2, 3)))


@pytest.mark.parametrize("shape,affine,bias", [((3, 6), True, True), ((2, 3, 4), True, False),
                                               ((2, 3, 4), False, True)])
def test_layernorm_gradcheck_last_dim(shape, affine, bias):
    rng = np.random.default_rng(2)
    layer = nn.LayerNorm(shape[-1], elementwise_affine=affine, bias=bias)
    if affine:
        layer.weight.data[:] = rng.uniform(0.5, 2, shape[-1])
    if layer.bias is not None:
        layer.bias.data[:] = rng.standard_normal(shape[-1])
    check_module(layer, rng.standard_normal(shape) * 2 + 1, tol=TOL)


def test_layernorm_over_two_dims_gradcheck_and_statistics():
    rng = np.random.default_rng(3)
    layer = nn.LayerNorm((3, 4), eps=1e-3)
    layer.weight.data[:] = rng.uniform(0.5, 2, (3, 4))
    layer.bias.data[:] = rng.standard_normal((3, 4))
    check_module(layer, rng.standard_normal((2, 3, 4)), tol=TOL)
    plain = nn.LayerNorm((3, 4), elementwise_affine=False, eps=0.0, dtype=np.float64)
    y = plain(rng.standard_normal((5, 3, 4)) * 7 + 2)
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(1, 2)), 1, rtol=1e-12)
    assert plain.state_dict() == {}


def test_layernorm_errors():
    layer = nn.LayerNorm((3, 4))
    with pytest.raises(ValueError, match=r"LayerNorm\(\(3, 4\).*last dims are \(3, 4\), got \(2, 4, 3\)"):
        layer(np.zeros((2, 4, 3), np.float32))
    with pytest.raises(TypeError, match="float64 does not match the layer's float32"):
        layer(np.zeros((2, 3, 4)))


def test_embedding_gradient_padding_and_repeats():
    rng = np.random.default_rng(4)
    emb = nn.Embedding(7, 3, padding_idx=2, rng=rng, dtype=np.float64)
    assert np.all(emb.weight.data[2] == 0) and np.any(emb.weight.data[0] != 0)
    ids = np.array([[1, 2, 1], [6, 0, 2]])  # token 1 twice: its gradient rows add up
    out = emb(ids)
    assert out.shape == (2, 3, 3)
    dout = rng.standard_normal(out.shape)
    assert emb.backward(dout) is None

    def f():
        return float(np.sum(emb(ids) * dout))

    numeric = numerical_gradient(f, emb.weight.data)
    numeric[2] = 0  # the padding row gets no gradient (PyTorch), though the function depends on it
    np.testing.assert_allclose(emb.weight.grad, numeric, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(emb.weight.grad[1], dout[0, 0] + dout[0, 2])


def test_embedding_errors_and_negative_padding_idx():
    emb = nn.Embedding(5, 2, padding_idx=-1)
    assert emb.padding_idx == 4 and emb(np.array([4])).dtype == np.float32
    with pytest.raises(ValueError, match=r"Embedding\(5, 2, padding_idx=4\): token ids must be in \[0, 5\), got 5"):
        emb(np.array([0, 5]))
    with pytest.raises(ValueError, match="got -1"):
        emb(np.array([[-1, 0]]))
    with pytest.raises(TypeError, match="integer token ids, got dtype float32"):
        emb(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="padding_idx must be within"):
        nn.Embedding(5, 2, padding_idx=5)


def _params(grads, dtype=np.float32):
    ps = []
    for g in grads:
        p = nn.Parameter(np.zeros(np.shape(g), dtype=dtype))
        p.grad[...] = g
        ps.append(p)
    return ps


def test_clip_grad_norm_scales_all_together_and_returns_the_total_norm():
    ps = _params([[3.0, 0.0], [[0.0, 4.0]]])  # joint 2-norm 5
    total = clip_grad_norm_(ps, 1.0)
    assert total == pytest.approx(5.0)
    np.testing.assert_allclose(ps[0].grad, [3 / (5 + 1e-6), 0], rtol=1e-6)
    np.testing.assert_allclose(ps[1].grad, [[0, 4 / (5 + 1e-6)]], rtol=1e-6)
    assert ps[0].grad.dtype == np.float32
    small = _params([[0.3, 0.4]])
    assert clip_grad_norm_(small[0], 1.0) == pytest.approx(0.5)  # a single Parameter, below the limit
    np.testing.assert_array_equal(small[0].grad, np.float32([0.3, 0.4]))


def test_clip_grad_norm_other_orders_frozen_and_nonfinite():
    ps = _params([[1.0, -2.0], [-6.0]])
    assert clip_grad_norm_(ps, 100.0, norm_type=1) == pytest.approx(9.0)
    assert clip_grad_norm_(ps, 3.0, norm_type=float("inf")) == pytest.approx(6.0)
    np.testing.assert_allclose(ps[1].grad, [-3.0], rtol=1e-6)
    frozen = _params([[10.0]])[0]
    frozen.requires_grad = False
    assert clip_grad_norm_([frozen] + _params([[2.0]]), 100.0) == pytest.approx(2.0)
    bad = _params([[np.inf, 1.0]])
    with pytest.raises(RuntimeError, match="clip_grad_norm_: the total norm"):
        clip_grad_norm_(bad, 1.0, error_if_nonfinite=True)
    assert bad[0].grad[1] == 1.0  # nothing changed
    with pytest.raises(TypeError, match="clip_grad_norm_: expected Parameters"):
        clip_grad_norm_([np.zeros(2)], 1.0)


def test_clip_grad_value_clamps_in_place():
    ps = _params([[-3.0, 0.5, 2.0]])
    assert clip_grad_value_(ps, 1.0) is None
    np.testing.assert_array_equal(ps[0].grad, np.float32([-1.0, 0.5, 1.0]))


@given(lead=st.lists(st.integers(1, 3), min_size=1, max_size=2), norm=st.lists(st.integers(2, 4), min_size=1, max_size=2),
       seed=st.integers(0, 999))
def test_layernorm_gradcheck_drawn_shapes(lead, norm, seed):
    rng = np.random.default_rng(seed)
    layer = nn.LayerNorm(tuple(norm))
    layer.weight.data[:] = rng.uniform(0.5, 2, norm)
    layer.bias.data[:] = rng.standard_normal(norm)
    check_module(layer, rng.standard_normal(lead + norm) * 2 + 1, tol=TOL)
