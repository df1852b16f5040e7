"""Each layer against PyTorch: same weights (loaded from a PyTorch state dict turned into NumPy),
same input; forward, input gradient and parameter gradients must agree. Skipped without torch."""
import numpy as np
import pytest

from npnet import nn

torch = pytest.importorskip("torch")
tnn = torch.nn

pytestmark = pytest.mark.usefixtures("kernel_mode")  # Numba kernels and NumPy twins


def run_both(ours, theirs, x, train=True):
    """Loads theirs' weights into ours, runs forward/backward on both (float64); returns pairs."""
    theirs = theirs.double().train(train)
    ours.astype(np.float64).train(train)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    dout = np.random.default_rng(1).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dout))
    y = ours(x.copy())
    dx = ours.backward(dout)
    pairs = [("output", y, yt.detach().numpy()), ("input grad", dx, xt.grad.numpy())]
    grads = dict(theirs.named_parameters())
    pairs += [(name, p.grad, grads[name].grad.numpy()) for name, p in ours.named_parameters()]
    after = theirs.state_dict()
    pairs += [(k, v, after[k].numpy()) for k, v in ours.state_dict().items() if "running" in k]
    return pairs


def assert_match(pairs):
    for name, a, b in pairs:
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11, err_msg=name)


RNG = np.random.default_rng(0)
IMG = RNG.standard_normal((3, 4, 9, 8))

CASES = [
    ("linear", lambda: nn.Linear(6, 5), lambda: tnn.Linear(6, 5), RNG.standard_normal((4, 6))),
    ("linear-nobias", lambda: nn.Linear(6, 5, bias=False), lambda: tnn.Linear(6, 5, bias=False),
     RNG.standard_normal((4, 6))),
    ("conv", lambda: nn.Conv2d(4, 6, 3, padding=1), lambda: tnn.Conv2d(4, 6, 3, padding=1), IMG),
    ("conv-rect-stride", lambda: nn.Conv2d(4, 3, (3, 2), stride=(2, 3), padding=(1, 0), bias=False),
     lambda: tnn.Conv2d(4, 3, (3, 2), stride=(2, 3), padding=(1, 0), bias=False), IMG),
    ("conv-5x5-s2", lambda: nn.Conv2d(4, 2, 5, stride=2, padding=2),
     lambda: tnn.Conv2d(4, 2, 5, stride=2, padding=2), IMG),
    ("maxpool", lambda: nn.MaxPool2d(2), lambda: tnn.MaxPool2d(2), IMG),
    ("maxpool-3-2-1", lambda: nn.MaxPool2d(3, 2, 1), lambda: tnn.MaxPool2d(3, 2, 1), IMG),
    ("avgpool", lambda: nn.AvgPool2d((2, 3), 2, (1, 1)), lambda: tnn.AvgPool2d((2, 3), 2, (1, 1)), IMG),
    ("relu", nn.ReLU, tnn.ReLU, IMG), ("leaky", lambda: nn.LeakyReLU(0.2), lambda: tnn.LeakyReLU(0.2), IMG),
    ("sigmoid", nn.Sigmoid, tnn.Sigmoid, IMG * 5), ("tanh", nn.Tanh, tnn.Tanh, IMG),
    ("flatten", nn.Flatten, tnn.Flatten, IMG),
    ("bn1d", lambda: nn.BatchNorm1d(6), lambda: tnn.BatchNorm1d(6), RNG.standard_normal((5, 6)) * 2 + 3),
    ("bn1d-3d", lambda: nn.BatchNorm1d(4), lambda: tnn.BatchNorm1d(4), RNG.standard_normal((3, 4, 5))),
    ("bn2d", lambda: nn.BatchNorm2d(4), lambda: tnn.BatchNorm2d(4), IMG * 3 - 1),
    ("bn2d-cumulative", lambda: nn.BatchNorm2d(4, momentum=None), lambda: tnn.BatchNorm2d(4, momentum=None), IMG),
]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("name,ours,theirs,x", CASES, ids=[c[0] for c in CASES])
def test_layer_matches_pytorch(name, ours, theirs, x, train):
    torch.manual_seed(0)
    t = theirs()
    if isinstance(t, (tnn.BatchNorm1d, tnn.BatchNorm2d)):  # non-trivial affine and running stats
        with torch.no_grad():
            for buf in (t.weight, t.bias, t.running_mean):
                buf.uniform_(-1, 1)
            t.running_var.uniform_(0.5, 2)
    assert_match(run_both(ours(), t, x, train))


def test_global_avg_pool_matches_adaptive_avg_pool():
    theirs = tnn.Sequential(tnn.AdaptiveAvgPool2d(1), tnn.Flatten())
    assert_match(run_both(nn.GlobalAvgPool2d(), theirs, IMG))


def test_cnn_with_residual_matches_pytorch_in_float32():
    class Block(tnn.Module):  # torch twin of nn.Residual(branch) with the same child names
        def __init__(self):
            super().__init__()
            self.branch = tnn.Sequential(tnn.Conv2d(8, 8, 3, padding=1), tnn.BatchNorm2d(8), tnn.ReLU(),
                                         tnn.Conv2d(8, 8, 3, padding=1))

        def forward(self, x):
            return self.branch(x) + x

    torch.manual_seed(0)
    theirs = tnn.Sequential(tnn.Conv2d(3, 8, 3, padding=1), tnn.ReLU(), Block(), tnn.MaxPool2d(2),
                            tnn.Flatten(), tnn.Linear(8 * 4 * 4, 10))
    ours = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Residual(nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(3).standard_normal((4, 3, 8, 8)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.ones_like(yt))
    y = ours(x)
    dx = ours.backward(np.ones_like(y))
    assert y.dtype == np.float32 and dx.dtype == np.float32
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, grads[name].grad.numpy(), rtol=1e-3, atol=1e-4, err_msg=name)
