"""MultiheadAttention, scaled_dot_product_attention, TransformerEncoderLayer / TransformerEncoder
against PyTorch (float64): PyTorch state dicts load as they are; outputs, weights, input and
parameter gradients agree. Skipped without torch. PyTorch runs in training mode with dropout 0:
its eval-mode fast path changes padded positions (nested tensors)."""
import numpy as np
import pytest

from npnet import nn
from npnet.nn.attention import attention_backward, attention_forward, sdpa_mask

torch = pytest.importorskip("torch")
tnn, F = torch.nn, torch.nn.functional
RNG = np.random.default_rng(0)


def close(a, b, name):
    np.testing.assert_allclose(a, b.detach().numpy() if torch.is_tensor(b) else b, rtol=1e-9, atol=1e-11, err_msg=name)


def loaded(ours, theirs):
    ours.astype(np.float64).load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours


def param_grads(ours, theirs):
    tp = dict(theirs.named_parameters())
    assert [n for n, _ in ours.named_parameters()] == list(tp)
    for n, p in ours.named_parameters():
        close(p.grad, tp[n].grad, n)


@pytest.mark.parametrize("mask", ["bool", "float", "causal"])
def test_sdpa_and_its_backward(mask):
    q, k, v = (RNG.standard_normal(s) for s in [(2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 3)])
    m = {"bool": RNG.random((4, 6)) > 0.3, "float": RNG.standard_normal((2, 1, 4, 6)), "causal": None}[mask]
    if mask == "bool":
        m[:, 0] = True
        m[2] = False  # a query that may attend to nothing: PyTorch gives zeros
    causal = mask == "causal"
    qt, kt, vt = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    yt = F.scaled_dot_product_attention(qt, kt, vt, None if m is None else torch.tensor(m), is_causal=causal, scale=0.3)
    g = RNG.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(g))
    y, _, cache = attention_forward(q, k, v, sdpa_mask(m, causal, 4, 6, q.dtype), scale=0.3, zero_empty_rows=True)
    close(y, yt, "output")
    close(nn.scaled_dot_product_attention(q, k, v, m, is_causal=causal, scale=0.3), yt, "functional")
    for name, a, t in zip("qkv", attention_backward(g, cache), (qt, kt, vt)):
        close(a, t.grad, f"d{name}")


CASES = [dict(), dict(batch_first=True), dict(bias=False), dict(attn_mask="bool"), dict(attn_mask="float3d"),
         dict(key_padding_mask=True, average_attn_weights=False), dict(attn_mask="float", key_padding_mask=True)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(c) or "default")
def test_mha_matches_pytorch(case):
    case = dict(case)
    bf, bias = case.pop("batch_first", False), case.pop("bias", True)
    torch.manual_seed(0)
    theirs = tnn.MultiheadAttention(8, 2, bias=bias, batch_first=bf).double()
    if bias:
        with torch.no_grad():
            theirs.in_proj_bias.uniform_(-1, 1)
            theirs.out_proj.bias.uniform_(-1, 1)
    ours = loaded(nn.MultiheadAttention(8, 2, bias=bias, batch_first=bf), theirs)
    shape = (lambda T: (3, T, 8)) if bf else (lambda T: (T, 3, 8))
    q, k, v = RNG.standard_normal(shape(4)), RNG.standard_normal(shape(5)), RNG.standard_normal(shape(5))
    kw = {"average_attn_weights": case.get("average_attn_weights", True)}
    kind = case.get("attn_mask")
    if kind:
        kw["attn_mask"] = {"bool": np.triu(np.ones((4, 5), bool), 2), "float": RNG.standard_normal((4, 5)),
                           "float3d": RNG.standard_normal((6, 4, 5))}[kind]
    if case.get("key_padding_mask"):
        kw["key_padding_mask"] = np.array([[False] * 5, [False] * 3 + [True] * 2, [True] + [False] * 4])
        if kind == "float":  # PyTorch deprecates mixing a float and a boolean mask
            kw["key_padding_mask"] = RNG.standard_normal((3, 5))
    tensors = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    yt, wt = theirs(*tensors, **{n: (torch.tensor(a) if isinstance(a, np.ndarray) else a) for n, a in kw.items()})
    ups = [RNG.standard_normal(tuple(t.shape)) for t in (yt, wt)]
    torch.autograd.backward([yt, wt], [torch.tensor(u) for u in ups])
    y, w = ours(q, k, v, **kw)
    close(y, yt, "output")
    close(w, wt, "weights")
    for name, a, t in zip(("query", "key", "value"), ours.backward(tuple(ups)), tensors):
        close(a, t.grad, f"d {name}")
    param_grads(ours, theirs)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_matches_pytorch(norm_first, activation):
    torch.manual_seed(0)
    kw = dict(dim_feedforward=12, dropout=0.0, activation=activation, norm_first=norm_first, batch_first=True)
    theirs = tnn.TransformerEncoder(tnn.TransformerEncoderLayer(8, 2, **kw), 2, norm=tnn.LayerNorm(8),
                                    enable_nested_tensor=False).double().train()
    with torch.no_grad():
        for n, p in theirs.named_parameters():
            if "norm" in n:  # non-trivial LayerNorm affines
                p.uniform_(0.5, 1.5)
    ours = loaded(nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, **kw), 2, norm=nn.LayerNorm(8)), theirs)
    x = RNG.standard_normal((3, 5, 8))
    mask = np.triu(np.ones((5, 5), bool), 1)
    pad = np.zeros((3, 5), bool)
    pad[2, 4] = True
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt, mask=torch.tensor(mask), src_key_padding_mask=torch.tensor(pad))
    g = RNG.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(g))
    close(ours(x, mask=mask, src_key_padding_mask=pad), yt, "output")
    close(ours.backward(g), xt.grad, "input grad")
    param_grads(ours, theirs)


def test_encoder_layer_float32_matches_pytorch():
    torch.manual_seed(1)
    theirs = tnn.TransformerEncoderLayer(16, 4, 32, dropout=0.0).train()
    ours = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = RNG.standard_normal((6, 2, 16)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.ones_like(yt))
    y = ours(x)
    dx = ours.backward(np.ones_like(y))
    assert y.dtype == np.float32 and dx.dtype == np.float32
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-3, atol=1e-4)
