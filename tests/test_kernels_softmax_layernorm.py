"""The softmax, LayerNorm and batched-product kernels of the Transformer layers against their NumPy
twins (float32 and float64; one row, widths not a multiple of 8 or 16, masks with -inf rows, NaN),
and ``use_reference()`` running the twins from the layers."""
import inspect

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npnet import kernels as K, nn
from npnet.nn.attention import attention_backward, attention_forward

SETTINGS = settings(max_examples=25, deadline=None)
DTYPES = [np.float32, np.float64]


def assert_close(actual, expected):
    """Equal up to rounding (1e-5 float32, 1e-12 float64, relative to the largest value); NaN where NaN."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    tol = 1e-5 if expected.dtype == np.float32 else 1e-12
    scale = max(float(np.nanmax(np.abs(expected), initial=0.0)), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


@st.composite
def scores(draw):
    """(batch shape, L, S, mask shape or None): S from 1, not a multiple of 8 too."""
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    L, S = draw(st.integers(1, 5)), draw(st.sampled_from([1, 3, 7, 8, 13, 16, 17, 33]))
    kind = draw(st.sampled_from(["none", "full", "rows", "keys", "column"]))
    full = batch + (L, S)
    mask = {"none": None, "full": full, "rows": (L, S), "keys": batch[:1] + (1,) * max(len(batch) - 1, 0) + (1, S),
            "column": (L, 1)}[kind]
    return batch, L, S, mask


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(g=scores(), scale=st.sampled_from([1.0, 0.17]), zero_empty=st.booleans(), seed=st.integers(0, 2**16))
def test_softmax_matches_ref(dtype, g, scale, zero_empty, seed):
    batch, L, S, mshape = g
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(batch + (L, S)) * 4).astype(dtype)
    mask = None
    if mshape is not None:
        mask = np.where(rng.random(mshape) < 0.3, -np.inf, rng.standard_normal(mshape)).astype(dtype)
    y = K.softmax_forward(x, scale, mask, zero_empty)
    want = K.softmax_forward_ref(x, scale, mask, zero_empty)
    assert_close(y, want)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    np.testing.assert_array_equal(y == 0, want == 0)                  # masked keys: exactly 0, as the twin
    dy = rng.standard_normal(x.shape).astype(dtype)
    want = np.nan_to_num(want)
    y = np.nan_to_num(y)
    assert_close(K.softmax_backward(dy, y, scale), K.softmax_backward_ref(dy, want, scale))
    d2 = dy.copy()
    assert K.softmax_backward(d2, y, scale, out=d2) is d2               # in place, as attention uses it
    assert_close(d2, K.softmax_backward_ref(dy, want, scale))
    x2 = x.copy()
    assert K.softmax_forward(x2, scale, mask, zero_empty, out=x2) is x2
    np.testing.assert_array_equal(np.nan_to_num(x2), y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_empty_rows_nan_and_inf_as_numpy(dtype):
    inf, nan = np.inf, np.nan
    x = np.array([[-inf] * 19, [1.0, nan] + [2.0] * 17, [-inf, nan] + [-inf] * 17, [inf] + [0.0] * 18,
                  list(np.linspace(-90, 0, 19))], dtype=dtype)
    for zero_empty in (False, True):
        got, want = K.softmax_forward(x, zero_empty_rows=zero_empty), K.softmax_forward_ref(x, zero_empty_rows=zero_empty)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        assert_close(np.nan_to_num(got), np.nan_to_num(want))
        assert np.all(got[0] == 0) if zero_empty else np.isnan(got[0]).all()    # the empty row


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_large_rows_and_threads(dtype):
    """Rows split over the workers (more than one worker's share), long rows, one row."""
    rng = np.random.default_rng(1)
    for shape in [(4, 64, 129), (1, 1, 1), (1, 1000), (300, 257)]:
        x = (rng.standard_normal(shape) * 30).astype(dtype)
        assert_close(K.softmax_forward(x, 0.5), K.softmax_forward_ref(x, 0.5))
        y = K.softmax_forward_ref(x)
        dy = rng.standard_normal(shape).astype(dtype)
        assert_close(K.softmax_backward(dy, y), K.softmax_backward_ref(dy, y))


def test_softmax_errors_and_other_dtypes():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"mask of shape \(3, 5\) does not broadcast to the input's \(2, 3, 4\)"):
        K.softmax_forward(x, mask=np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="out must be C-ordered float32"):
        K.softmax_forward(x, out=np.zeros((2, 4, 3), np.float32).transpose(0, 2, 1))
    h = np.arange(6, dtype=np.float16).reshape(2, 3)
    assert K.softmax_forward(h).dtype == np.float16                   # the twin runs other dtypes


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(R=st.integers(1, 600), D=st.sampled_from([1, 3, 7, 8, 13, 128]), affine=st.sampled_from(["both", "weight", "none"]),
       need_dx=st.booleans(), seed=st.integers(0, 2**16))
def test_layernorm_matches_ref(dtype, R, D, affine, need_dx, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((R, D)) * 3 + 5).astype(dtype)   # a mean far from 0
    w = rng.standard_normal(D).astype(dtype) if affine != "none" else None
    b = rng.standard_normal(D).astype(dtype) if affine == "both" else None
    got, want = K.layernorm_forward(x, w, b, 1e-5), K.layernorm_forward_ref(x, w, b, 1e-5)
    for a, e in zip(got, want):
        assert_close(a, e)
    dout = rng.standard_normal((R, D)).astype(dtype)
    got = K.layernorm_backward(dout, x, want[1], want[2], w, need_dx)
    want = K.layernorm_backward_ref(dout, x, want[1], want[2], w, need_dx)
    assert (got[0] is None) == (not need_dx) == (want[0] is None)
    for a, e in zip(got, want):
        if e is not None:
            assert_close(a, e)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bmm_matches_ref_on_views(dtype):
    """Heads of a (N, L, 3E) projection as (N, h, L, d) views, transposed operands, broadcast batch
    dims, outputs written into views, and a copy for a view with no adjacent axis."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 5, 3 * 12)).astype(dtype)
    heads = (lambda a: a.reshape(3, 5, 4, 3).transpose(0, 2, 1, 3))
    q, k = heads(x[..., :12]), heads(x[..., 12:24])
    kt = np.swapaxes(k, -1, -2)
    assert_close(K.bmm(q, kt), K.bmm_ref(q, kt))
    assert_close(K.bmm(q, kt[:1]), K.bmm_ref(q, kt[:1]))                 # broadcast over the batch
    assert_close(K.bmm(q[0, 0], kt[0, 0]), q[0, 0] @ kt[0, 0])            # 2-D
    s = K.bmm_ref(q, kt)
    out = np.zeros((3, 5, 12), dtype)
    K.bmm(s, k, out=heads(out))
    assert_close(out, K.bmm_ref(s, k).transpose(0, 2, 1, 3).reshape(3, 5, 12))
    odd = rng.standard_normal((2, 6, 8)).astype(dtype)[:, ::2, ::2]      # no adjacent axis: copied
    assert_close(K.bmm(odd, odd.transpose(0, 2, 1)), K.bmm_ref(odd, odd.transpose(0, 2, 1)))
    assert K.bmm(np.zeros((2, 3, 0), dtype), np.zeros((2, 0, 4), dtype)).tolist() == np.zeros((2, 3, 4)).tolist()


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_backward_matches_ref(dtype):
    rng = np.random.default_rng(4)
    ids = rng.integers(0, 7, 300)                                         # many repeats
    dout = rng.standard_normal((300, 13)).astype(dtype)
    grad = rng.standard_normal((7, 13)).astype(dtype)
    got = K.embedding_backward(ids, dout, grad.copy())
    assert_close(got, K.embedding_backward_ref(ids, dout, grad.copy()))
    assert K.embedding_backward(ids[:0], dout[:0], grad.copy()).tolist() == grad.tolist()


def test_twins_have_the_kernels_signatures():
    for fast, ref in [(K.softmax_forward, K.softmax_forward_ref), (K.softmax_backward, K.softmax_backward_ref),
                      (K.layernorm_forward, K.layernorm_forward_ref), (K.layernorm_backward, K.layernorm_backward_ref),
                      (K.bmm, K.bmm_ref), (K.embedding_backward, K.embedding_backward_ref)]:
        assert inspect.signature(fast) == inspect.signature(ref)


def test_use_reference_runs_the_twins(monkeypatch):
    """Inside ``use_reference()`` LayerNorm, Softmax, attention and MultiheadAttention run the NumPy
    twins (the names the entry points look up in their modules), and agree with the kernels."""
    bmm, layernorm, softmax = (inspect.getmodule(f) for f in (K.bmm, K.layernorm_forward, K.softmax_forward))
    called = set()
    for module, name in [(softmax, "softmax_forward_ref"), (softmax, "softmax_backward_ref"),
                         (layernorm, "layernorm_forward_ref"), (layernorm, "layernorm_backward_ref"),
                         (bmm, "bmm_ref")]:
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _r=real, _n=name, **k: called.add(_n) or _r(*a, **k))
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32)
    results = []
    for ref in (False, True):
        with K.use_reference(ref):
            layer.zero_grad()
            out = layer(x, src_mask=nn.causal_mask(5))
            dx = layer.backward(np.ones_like(out))
            sm = nn.Softmax(-1)
            p = sm(x)
            results.append((out, dx, layer.norm1.weight.grad.copy(), p, sm.backward(x)))
        if not ref:
            assert called == set()
    assert called == {"softmax_forward_ref", "softmax_backward_ref", "layernorm_forward_ref",
                      "layernorm_backward_ref", "bmm_ref"}
    for a, b in zip(*results):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_attention_keeps_float32_and_matches_the_twin_with_an_empty_row():
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in [(2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 2)])
    mask = np.where(rng.random((4, 6)) < 0.4, -np.inf, 0).astype(np.float32)
    mask[1] = -np.inf                                                     # query 1 sees nothing
    outs = []
    for ref in (False, True):
        with K.use_reference(ref):
            out, w, cache = attention_forward(q, k, v, mask, zero_empty_rows=True)
            outs.append((out, w) + attention_backward(np.ones_like(out), cache, np.ones_like(w)))
    for a, b in zip(*outs):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert np.all(outs[0][1][:, :, 1] == 0)
