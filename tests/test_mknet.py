"""mknet6, the course report's multi-kernel network: shape, parameter count (derived by hand and
as documented), float64 gradient checks of the gate, of a block and of a whole small net, and a
PyTorch twin with the same state-dict keys (skipped without torch)."""
import numba
import numpy as np
import pytest

from npnet.gradcheck import check_module
from npnet.models import MODELS, KernelGate, MultiKernelConv, build_model

KS = (1, 3, 5)


def conv(cin, cout, k):
    return cin * k * k * cout + cout


def lin(i, o):
    return i * o + o


def block(cin, cout, ks=KS):
    hidden = max(cin // 4, 4)
    return sum(conv(cin, cout, k) for k in ks) + lin(cin, hidden) + lin(hidden, len(ks)) + 2 * cout


@pytest.fixture
def one_thread():
    """Gradient checks run thousands of forwards on a few hundred numbers; on a shared 2-core box,
    waking a second Numba worker for each kernel can cost 100x the work (measured: 3 ms vs 0.3 s
    per forward of the tiny net below), so these tests run on one thread."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


def mknet6_count(cin, widths=(16, 32, 32, 64, 64, 128), hidden=256, classes=10):
    chans = (cin,) + widths
    blocks = sum(block(a, b) for a, b in zip(chans, widths))
    return blocks + lin(widths[-1], hidden) + 2 * hidden + lin(hidden, classes)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_shape_and_documented_parameter_count(shape):
    model = build_model("mknet6", shape, 10, rng=0)
    count = mknet6_count(shape[0])
    assert model.num_parameters() == count
    assert f"{shape[0]}x{shape[1]}x{shape[2]}: {count:,} parameters" in MODELS["mknet6"].__doc__
    x = np.random.default_rng(0).standard_normal((2,) + shape).astype(np.float32)
    out = model(x)
    assert out.shape == (2, 10) and out.dtype == np.float32


def test_layout_follows_the_report():
    model = build_model("mknet6", (1, 28, 28), rng=0)
    kinds = [type(m).__name__ for m in model]
    assert kinds.count("MultiKernelConv") == 6
    assert [i for i, k in enumerate(kinds) if k == "MaxPool2d"] == [6, 13, 17]  # after blocks 2, 4, 5
    assert kinds[-7:] == ["GlobalAvgPool2d", "Flatten", "Linear", "ReLU", "BatchNorm1d", "Dropout",
                          "Linear"]
    assert all(m.kernel_sizes == KS and m.gate.kind == "sigmoid"
               for m in model if isinstance(m, MultiKernelConv))


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_gate_gradcheck(kind, one_thread):
    gate = KernelGate(3, 3, 4, kind, rng=0)
    x = np.random.default_rng(1).standard_normal((4, 3, 3, 2))
    errors = check_module(gate, x)
    assert set(errors) == {"input", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    a = gate(x)
    assert a.shape == (4, 3) and np.all((a > 0) & (a < 1))
    if kind == "softmax":
        np.testing.assert_allclose(a.sum(axis=1), 1)


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_block_gradcheck_every_branch_and_the_gate(kind, one_thread):
    blk = MultiKernelConv(2, 3, KS, rng=0, gate_kind=kind)
    x = np.random.default_rng(2).standard_normal((3, 2, 5, 4))
    errors = check_module(blk, x)
    names = {f"conv{k}.{p}" for k in KS for p in ("weight", "bias")}
    names |= {f"gate.fc{i}.{p}" for i in (1, 2) for p in ("weight", "bias")}
    assert set(errors) == names | {"input"}


def test_sigmoid_gate_scales_each_branch_independently():
    blk = MultiKernelConv(2, 3, KS, rng=0, gate_kind="sigmoid")
    x = np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(np.float32)
    out = blk(x)
    a, ys = blk.cache
    assert np.all(np.abs(a.sum(axis=1) - 1) > 1e-3)  # not a convex mix
    mixed = sum(a[:, k, None, None, None] * y for k, y in enumerate(ys))
    np.testing.assert_allclose(out, mixed, rtol=1e-6)


def test_whole_net_gradcheck_on_a_tiny_input(one_thread):
    # every layer of the real layout, at widths of 1-2 channels and an 8x8 image
    model = build_model("mknet6", (1, 8, 8), 3, rng=0, widths=(1, 2, 1, 2, 1, 2), hidden=4,
                        dropout=0.0)
    x = np.random.default_rng(3).standard_normal((3, 1, 8, 8))
    errors = check_module(model, x, tol=1e-5)
    assert len(errors) == 1 + len(list(model.parameters()))


def test_bad_gate_and_too_small_input():
    with pytest.raises(ValueError, match="KernelGate: kind must be one of softmax, sigmoid"):
        build_model("mknet6", gate="relu")
    with pytest.raises(ValueError, match="mknet6.*too small for 3 2x2 max-pools"):
        build_model("mknet6", (1, 7, 7))


# -- the PyTorch twin ---------------------------------------------------------------------------
def torch_twin(torch, in_channels, widths, ks, pool_after, kind, hidden, classes):
    """mknet6 written with torch.nn, child names chosen so that the state-dict keys are npnet's."""
    tnn = torch.nn

    class Gate(tnn.Module):
        def __init__(self, cin, k):
            super().__init__()
            self.fc1, self.fc2 = tnn.Linear(cin, max(cin // 4, 4)), tnn.Linear(max(cin // 4, 4), k)

        def forward(self, x):
            z = self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3)))))
            return torch.softmax(z, dim=1) if kind == "softmax" else torch.sigmoid(z)

    class Block(tnn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            for k in ks:
                setattr(self, f"conv{k}", tnn.Conv2d(cin, cout, k, padding=k // 2))
            self.gate = Gate(cin, len(ks))

        def forward(self, x):
            a = self.gate(x)
            return sum(a[:, i, None, None, None] * getattr(self, f"conv{k}")(x)
                       for i, k in enumerate(ks))

    layers, c = [], in_channels
    for i, w in enumerate(widths, start=1):
        layers += [Block(c, w), tnn.BatchNorm2d(w), tnn.ReLU()]
        layers += [tnn.MaxPool2d(2)] if i in pool_after else []
        c = w
    return tnn.Sequential(*layers, tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(c, hidden),
                          tnn.ReLU(), tnn.BatchNorm1d(hidden), tnn.Dropout(0.0),
                          tnn.Linear(hidden, classes))


@pytest.mark.parametrize("kind, widths, hidden, shape", [
    ("sigmoid", (16, 32, 32, 64, 64, 128), 256, (1, 28, 28)),  # the zoo's mknet6, dropout 0
    ("softmax", (4, 6, 8, 8, 6, 4), 16, (3, 16, 16)),
])
def test_matches_a_pytorch_twin(kind, widths, hidden, shape):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    twin = torch_twin(torch, shape[0], widths, KS, (2, 4, 5), kind, hidden, 10).double().train()
    model = build_model("mknet6", shape, 10, rng=0, widths=widths, gate=kind, hidden=hidden,
                        dropout=0.0).astype(np.float64)
    state = {k: v.detach().numpy().copy() for k, v in twin.state_dict().items()}
    assert list(state) == list(model.state_dict())
    model.load_state_dict(state)

    rng = np.random.default_rng(4)
    x = rng.standard_normal((4,) + shape)
    dout = rng.standard_normal((4, 10))
    xt = torch.tensor(x, requires_grad=True)
    yt = twin(xt)
    yt.backward(torch.tensor(dout))
    out = model(x)
    model.zero_grad()
    dx = model.backward(dout)

    np.testing.assert_allclose(out, yt.detach().numpy(), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-8, atol=1e-12)
    grads = dict(model.named_parameters())
    for name, p in twin.named_parameters():
        np.testing.assert_allclose(grads[name].grad, p.grad.numpy(), rtol=1e-8, atol=1e-10,
                                   err_msg=name)
    for name, value in twin.state_dict().items():  # BatchNorm running statistics after one step
        np.testing.assert_allclose(model.state_dict()[name], value.numpy(), rtol=1e-9, err_msg=name)
