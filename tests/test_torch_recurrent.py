"""RNN, LSTM, GRU against PyTorch (float64): a PyTorch state dict turned into NumPy loads as it is;
output, final states, input gradient, initial states' gradient and every weight gradient agree.
Skipped without torch."""
import numpy as np
import pytest

from npnet import nn

torch = pytest.importorskip("torch")
tnn = torch.nn

PAIRS = {"RNN": (nn.RNN, tnn.RNN), "LSTM": (nn.LSTM, tnn.LSTM), "GRU": (nn.GRU, tnn.GRU)}
CASES = [dict(), dict(num_layers=2, bidirectional=True), dict(batch_first=True, num_layers=3),
         dict(bias=False, bidirectional=True), dict(nonlinearity="relu", num_layers=2)]


def to_torch(a):
    return torch.tensor(a, requires_grad=True)


def assert_close(a, b, name):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11, err_msg=name)


GRID = [(kind, kw) for kind in PAIRS for kw in CASES if kind == "RNN" or "nonlinearity" not in kw]


@pytest.mark.parametrize("kind,kw", GRID, ids=[f"{k}-{','.join(kw) or 'default'}" for k, kw in GRID])
def test_matches_pytorch(kind, kw):
    ours_cls, theirs_cls = PAIRS[kind]
    torch.manual_seed(0)
    theirs = theirs_cls(3, 5, **kw).double()
    ours = ours_cls(3, 5, **kw).astype(np.float64)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    rng = np.random.default_rng(1)
    D, L = 2 if kw.get("bidirectional") else 1, kw.get("num_layers", 1)
    x = rng.standard_normal((2, 6, 3) if kw.get("batch_first") else (6, 2, 3))
    hx = [rng.standard_normal((L * D, 2, 5)) for _ in range(2 if kind == "LSTM" else 1)]
    xt, hxt = to_torch(x), [to_torch(h) for h in hx]
    yt, st = theirs(xt, tuple(hxt) if kind == "LSTM" else hxt[0])
    st = list(st) if kind == "LSTM" else [st]
    ups = [rng.standard_normal(tuple(a.shape)) for a in [yt] + st]
    torch.autograd.backward([yt] + st, [torch.tensor(u) for u in ups])

    y, ost = ours(x, tuple(hx) if kind == "LSTM" else hx[0])
    ost = list(ost) if kind == "LSTM" else [ost]
    dx = ours.backward((ups[0], tuple(ups[1:]) if kind == "LSTM" else ups[1]))
    assert_close(y, yt.detach().numpy(), "output")
    for i, (a, b) in enumerate(zip(ost, st)):
        assert_close(a, b.detach().numpy(), f"final state {i}")
    assert_close(dx, xt.grad.numpy(), "input grad")
    hx_grad = ours.hx_grad if kind == "LSTM" else (ours.hx_grad,)
    for i, (a, b) in enumerate(zip(hx_grad, hxt)):
        assert_close(a, b.grad.numpy(), f"initial state {i} grad")
    grads = dict(theirs.named_parameters())
    assert [n for n, _ in ours.named_parameters()] == list(grads)
    for name, p in ours.named_parameters():
        assert_close(p.grad, grads[name].grad.numpy(), name)


def test_lstm_float32_matches_pytorch_without_states():
    torch.manual_seed(0)
    theirs = tnn.LSTM(4, 8, num_layers=2, batch_first=True)
    ours = nn.LSTM(4, 8, num_layers=2, batch_first=True)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(2).standard_normal((3, 7, 4)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt, (ht, _) = theirs(xt)
    ht[-1].sum().backward()  # a classifier on the last layer's final state
    y, (h, _) = ours(x)
    dh = np.zeros_like(h)
    dh[-1] = 1
    dx = ours.backward((None, (dh, None)))
    assert dx.dtype == np.float32
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-6)
    grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, grads[name].grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
