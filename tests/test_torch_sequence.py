"""The sequence-model layers against PyTorch (float64): a PyTorch state dict turned into NumPy
loads as it is, and the forward, the input gradient and every parameter gradient agree.
Skipped without torch."""
import numpy as np
import pytest

from npnet import nn
from npnet.nn.utils import clip_grad_norm_

torch = pytest.importorskip("torch")
tnn = torch.nn

RNG = np.random.default_rng(0)


def load_from(ours, theirs):
    ours.astype(np.float64)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours


def assert_close(a, b, name):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11, err_msg=name)


def assert_param_grads(ours, theirs):
    grads = dict(theirs.named_parameters())
    names = [n for n, _ in ours.named_parameters()]
    assert names == list(grads), "parameter names differ from PyTorch's"
    for name, p in ours.named_parameters():
        assert_close(p.grad, grads[name].grad.numpy(), name)


def compare_layer(ours, theirs, x):
    theirs = theirs.double()
    load_from(ours, theirs)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    dout = RNG.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dout))
    y = ours(x.copy())
    assert_close(y, yt.detach().numpy(), "output")
    assert_close(ours.backward(dout), xt.grad.numpy(), "input grad")
    assert_param_grads(ours, theirs)


X = RNG.standard_normal((3, 4, 5)) * 2


@pytest.mark.parametrize("ours,theirs", [
    (nn.GELU(), tnn.GELU()), (nn.GELU("tanh"), tnn.GELU("tanh")), (nn.SiLU(), tnn.SiLU()),
    (nn.Softmax(1), tnn.Softmax(1)), (nn.Softmax(-1), tnn.Softmax(-1)),
    (nn.LogSoftmax(0), tnn.LogSoftmax(0)), (nn.LogSoftmax(2), tnn.LogSoftmax(2)),
    (nn.LayerNorm(5), tnn.LayerNorm(5)), (nn.LayerNorm((4, 5), eps=1e-3), tnn.LayerNorm((4, 5), eps=1e-3)),
    (nn.LayerNorm(5, bias=False), tnn.LayerNorm(5, bias=False)),
    (nn.LayerNorm(5, elementwise_affine=False), tnn.LayerNorm(5, elementwise_affine=False))],
    ids=lambda m: repr(m).replace(" ", ""))
def test_elementwise_and_layernorm_match_pytorch(ours, theirs):
    torch.manual_seed(0)
    with torch.no_grad():  # a non-trivial affine
        for p in theirs.parameters():
            p.uniform_(0.5, 1.5)
    compare_layer(ours, theirs, X)


def test_embedding_matches_pytorch():
    torch.manual_seed(0)
    theirs = tnn.Embedding(9, 4, padding_idx=3).double()
    ours = load_from(nn.Embedding(9, 4, padding_idx=3), theirs)
    ids = np.array([[3, 1, 1, 8], [0, 3, 2, 1]])
    yt = theirs(torch.tensor(ids))
    dout = RNG.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dout))
    assert_close(ours(ids), yt.detach().numpy(), "output")
    ours.backward(dout)
    assert_param_grads(ours, theirs)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
def test_clip_grad_norm_matches_pytorch(norm_type):
    grads = [RNG.standard_normal((3, 4)), RNG.standard_normal(5)]
    tparams = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    ours = [nn.Parameter(np.zeros(g.shape)) for g in grads]
    for tp, p, g in zip(tparams, ours, grads):
        tp.grad = torch.tensor(g)
        p.grad[...] = g
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, 0.7, norm_type=norm_type)
    assert clip_grad_norm_(ours, 0.7, norm_type=norm_type) == pytest.approx(float(ttotal), rel=1e-12)
    for tp, p in zip(tparams, ours):
        assert_close(p.grad, tp.grad.numpy(), "clipped grad")
