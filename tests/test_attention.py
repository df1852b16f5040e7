"""Attention and the Transformer encoder: float64 gradient checks (inputs, every parameter,
boolean / float / causal / padding masks, dropout), mask semantics, dtype kept, clear errors.
PyTorch comparisons are in tests/test_torch_attention.py."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npnet import kernels, nn
from npnet.gradcheck import numerical_gradient, relative_error
from npnet.nn.attention import attention_backward, attention_forward, sdpa_mask

TOL = 1e-6


def check(run, backward, inputs, module=None, seed=0):
    """run() -> output array or tuple of arrays; backward(upstreams) -> input grads (a tuple)."""
    rng = np.random.default_rng(seed)
    outs = run()
    outs = outs if isinstance(outs, tuple) else (outs,)
    ups = [rng.standard_normal(o.shape) for o in outs]

    def f():
        o = run()
        return float(sum(np.sum(a * g) for a, g in zip(o if isinstance(o, tuple) else (o,), ups)))

    run()
    if module is not None:
        module.zero_grad()
    grads = backward(ups)
    pairs = {f"input {i}": (g, numerical_gradient(f, x)) for i, (g, x) in enumerate(zip(grads, inputs))}
    if module is not None:
        pairs.update({n: (p.grad.copy(), numerical_gradient(f, p.data)) for n, p in module.named_parameters()})
    bad = {k: relative_error(a, n) for k, (a, n) in pairs.items() if relative_error(a, n) > TOL}
    assert not bad, f"gradient check failed: {bad}"


RNG = np.random.default_rng(0)

# The encoder checks run a few thousand tiny forwards through Linear: its Numba path costs ~1 ms a
# call on a loaded 2-core machine, its NumPy twin ~30 us. Linear's two paths are checked against
# each other in the kernel tests; here the composition is under test, so the twin runs it (the
# PyTorch comparison in test_torch_attention.py runs the default path).
reference_linear = kernels.use_reference


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float", "causal"])
def test_attention_functions_gradcheck(mask_kind):
    q, k, v = RNG.standard_normal((2, 3, 4, 5)), RNG.standard_normal((2, 3, 6, 5)), RNG.standard_normal((2, 3, 6, 2))
    attn_mask = {"none": None, "causal": None, "float": RNG.standard_normal((4, 6)),
                 "bool": RNG.random((4, 6)) > 0.3}[mask_kind]
    if mask_kind == "bool":
        attn_mask[:, 0] = True  # every query sees one key at least,
        attn_mask[1] = False  # but query 1: zero weights, zero gradients
    mask = sdpa_mask(attn_mask, mask_kind == "causal", 4, 6, q.dtype)
    cache = []

    def run():
        out, w, c = attention_forward(q, k, v, mask, zero_empty_rows=True)
        cache[:] = [c]
        return out, w

    check(run, lambda ups: attention_backward(ups[0], cache[0], ups[1]), (q, k, v))
    np.testing.assert_array_equal(nn.scaled_dot_product_attention(q, k, v, attn_mask, is_causal=mask_kind == "causal"),
                                  run()[0])


def test_sdpa_masks_mean_what_pytorch_says():
    q = k = RNG.standard_normal((1, 3, 4))
    v = np.eye(3)[None]  # the output rows are the attention weights
    w = nn.scaled_dot_product_attention(q, k, v, is_causal=True)[0]
    assert np.all(np.triu(w, 1) == 0) and w[0, 0] == 1
    allowed = np.array([[True, False, True]] * 3)  # sdpa: True = may attend
    assert np.all(nn.scaled_dot_product_attention(q, k, v, allowed)[0][:, 1] == 0)
    with pytest.raises(ValueError, match="attn_mask or is_causal"):
        nn.scaled_dot_product_attention(q, k, v, allowed, is_causal=True)
    column = np.array([[True], [True], [False]])  # (L, 1) broadcasts over the keys
    out = nn.scaled_dot_product_attention(q, k, v, column)[0]
    assert np.all(out[2] == 0) and np.all(np.isfinite(out))  # a query with no key: zeros, as PyTorch's
    with pytest.raises(ValueError, match=r"attn_mask broadcastable to \(\.\.\., 3, 3\), got \(3, 2\)"):
        nn.scaled_dot_product_attention(q, k, v, np.ones((3, 2), bool))


def mha_case(batch_first=False, bias=True, dropout=0.0, heads=2):
    mha = nn.MultiheadAttention(6, heads, dropout=dropout, bias=bias, batch_first=batch_first, rng=1)
    mha.astype(np.float64)
    if bias:  # non-zero biases, so their gradients are checked on something
        mha.in_proj_bias.data[:] = RNG.standard_normal(18)
        mha.out_proj.bias.data[:] = RNG.standard_normal(6)
    L, S, N = 4, 5, 2
    shape = (lambda T: (N, T, 6)) if batch_first else (lambda T: (T, N, 6))
    return mha, RNG.standard_normal(shape(L)), RNG.standard_normal(shape(S)), RNG.standard_normal(shape(S))


MASKS = {
    "none": lambda: {},
    "bool-attn": lambda: {"attn_mask": np.triu(np.ones((4, 5), bool), 1)},
    "float-attn-3d": lambda: {"attn_mask": RNG.standard_normal((2 * 2, 4, 5))},
    "padding": lambda: {"key_padding_mask": np.array([[False] * 5, [False, False, False, True, True]])},
    "both": lambda: {"attn_mask": RNG.standard_normal((4, 5)), "key_padding_mask": RNG.standard_normal((2, 5))},
}


@pytest.mark.parametrize("masks", list(MASKS))
@pytest.mark.parametrize("batch_first,bias,average", [(False, True, True), (True, False, False)])
def test_mha_gradcheck(masks, batch_first, bias, average):
    mha, q, k, v = mha_case(batch_first, bias)
    kw = MASKS[masks]()
    check(lambda: mha(q, k, v, average_attn_weights=average, **kw), lambda ups: mha.backward(tuple(ups)),
          (q, k, v), mha)


def test_mha_dropout_gradcheck_and_eval():
    mha, q, k, v = mha_case(dropout=0.3)

    def run():
        mha.rng = np.random.default_rng(3)  # the same weights' dropout mask on every forward
        return mha(q, k, v, need_weights=False)[0]

    check(run, lambda ups: mha.backward(ups[0]), (q, k, v), mha)
    mha.eval()
    y1, w = mha(q, k, v)
    np.testing.assert_allclose(w.sum(axis=-1), 1, rtol=1e-12)  # no dropout in eval
    mha.train()
    assert not np.allclose(y1, run())  # training does drop weights


def test_mha_padding_keys_get_zero_weight_and_float32_is_kept():
    mha = nn.MultiheadAttention(8, 4, batch_first=True, rng=0)
    x = RNG.standard_normal((2, 5, 8)).astype(np.float32)
    pad = np.zeros((2, 5), bool)
    pad[1, 3:] = True
    y, w = mha(x, x, x, key_padding_mask=pad, average_attn_weights=False)
    assert y.dtype == np.float32 and w.dtype == np.float32 and w.shape == (2, 4, 5, 5)
    assert np.all(w[1, :, :, 3:] == 0)
    grads = mha.backward(np.ones_like(y))
    assert all(g.dtype == np.float32 for g in grads)
    assert mha(x, x, x, need_weights=False)[1] is None


def test_mha_errors():
    mha = nn.MultiheadAttention(6, 2)
    x = np.zeros((4, 2, 6), np.float32)
    with pytest.raises(ValueError, match="embed_dim \\(6\\) must be divisible by num_heads \\(4\\)"):
        nn.MultiheadAttention(6, 4)
    with pytest.raises(ValueError, match=r"MultiheadAttention\(embed_dim=6, num_heads=2\): expected attn_mask "
                                         r"of shape \(4, 4\) or \(4, 4, 4\), got \(4, 5\)"):
        mha(x, x, x, attn_mask=np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match=r"expected key_padding_mask of shape \(2, 4\), got \(4, 2\)"):
        mha(x, x, x, key_padding_mask=np.zeros((4, 2), bool))
    with pytest.raises(TypeError, match="bool or float, got int64"):
        mha(x, x, x, attn_mask=np.zeros((4, 4), np.int64))
    with pytest.raises(ValueError, match=r"expected input of shape key \(L, N, E\) with size 6"):
        mha(x, np.zeros((4, 2, 5), np.float32), x)
    with pytest.raises(ValueError, match="share the batch size"):
        mha(x, np.zeros((4, 3, 6), np.float32), np.zeros((4, 3, 6), np.float32))


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_gradcheck_with_masks(norm_first, activation):
    layer = nn.TransformerEncoderLayer(4, 2, 6, dropout=0.0, activation=activation, norm_first=norm_first,
                                       batch_first=True, rng=2).astype(np.float64)
    for p in (layer.norm1.weight, layer.norm2.bias):
        p.data[:] = RNG.uniform(0.5, 1.5, 4)
    x = RNG.standard_normal((2, 4, 4))
    pad = np.array([[False] * 4, [False, False, False, True]])
    with reference_linear():
        check(lambda: layer(x, src_mask=nn.causal_mask(4, dtype=np.float64), src_key_padding_mask=pad),
              lambda ups: (layer.backward(ups[0]),), (x,), layer)


def test_encoder_stack_with_dropout_gradcheck():
    layer = nn.TransformerEncoderLayer(4, 2, 6, dropout=0.2, rng=3)
    enc = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(4), rng=4).astype(np.float64)
    assert enc.layers[0].dropout.rng is not enc.layers[1].dropout.rng
    x = RNG.standard_normal((3, 2, 4))

    def run():
        for i, m in enumerate(m for m in enc.modules() if hasattr(m, "rng")):
            m.rng = np.random.default_rng(i)
        return enc(x, mask=np.triu(np.ones((3, 3), bool), 1))

    with reference_linear():
        check(run, lambda ups: (enc.backward(ups[0]),), (x,), enc)
    assert list(enc.state_dict())[:2] == ["layers.0.self_attn.in_proj_weight", "layers.0.self_attn.in_proj_bias"]
    assert "norm.weight" in enc.state_dict() and "layers.1.norm2.bias" in enc.state_dict()


def test_positional_encoding_values_gradient_and_errors():
    pe = nn.PositionalEncoding(5, dropout=0.0, max_len=10)
    x = np.zeros((3, 2, 5))
    y = pe(x)
    np.testing.assert_allclose(y[2, 1, 0], np.sin(2.0))
    np.testing.assert_allclose(y[2, 0, 3], np.cos(2.0 / 10000 ** (2 / 5)))
    np.testing.assert_allclose(y[1, 0, 4], np.sin(1.0 / 10000 ** (4 / 5)))
    g = RNG.standard_normal(y.shape)
    np.testing.assert_array_equal(pe.backward(g), g)
    assert pe.state_dict() == {}
    bf = nn.PositionalEncoding(5, dropout=0.0, batch_first=True)
    y32 = bf(np.zeros((2, 3, 5), np.float32))
    assert y32.dtype == np.float32
    np.testing.assert_array_equal(y32[1], y[:, 0].astype(np.float32))
    with pytest.raises(ValueError, match="sequence length 11 exceeds max_len 10"):
        pe(np.zeros((11, 1, 5)))
    with pytest.raises(ValueError, match="activation must be 'relu' or 'gelu'"):
        nn.TransformerEncoderLayer(4, 2, activation="tanh")


@settings(max_examples=8)
@given(heads=st.integers(1, 3), head_dim=st.integers(1, 3), L=st.integers(1, 4), S=st.integers(1, 4),
       N=st.integers(1, 3), batch_first=st.booleans(), padded=st.booleans(), seed=st.integers(0, 999))
def test_mha_gradcheck_drawn_shapes(heads, head_dim, L, S, N, batch_first, padded, seed):
    rng = np.random.default_rng(seed)
    E = heads * head_dim
    mha = nn.MultiheadAttention(E, heads, batch_first=batch_first, rng=rng).astype(np.float64)
    mha.in_proj_bias.data[:] = rng.standard_normal(3 * E)
    shape = (lambda T: (N, T, E)) if batch_first else (lambda T: (T, N, E))
    q, k, v = rng.standard_normal(shape(L)), rng.standard_normal(shape(S)), rng.standard_normal(shape(S))
    kpm = None
    if padded:  # pad the last keys of the first sequence, keeping one
        kpm = np.zeros((N, S), bool)
        kpm[0, 1:] = True
    check(lambda: mha(q, k, v, key_padding_mask=kpm), lambda ups: mha.backward(tuple(ups)), (q, k, v), mha, seed)
