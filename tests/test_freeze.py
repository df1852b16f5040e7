"""Freezing layers (``requires_grad=False``): frozen weights stay bit-identical through training with
momentum and weight decay, the others follow PyTorch with the same layers frozen (float64 twins)."""
import numpy as np
import pytest

from npnet import nn
from npnet.losses import CrossEntropyLoss
from npnet.optim import SGD, Adam, AdamW

OPTIMIZERS = {
    "sgd_momentum_wd": (SGD, dict(lr=0.05, momentum=0.9, weight_decay=1e-2)),
    "nesterov_wd": (SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    "adam_wd": (Adam, dict(lr=1e-2, weight_decay=1e-2)),
    "adamw": (AdamW, dict(lr=1e-2, weight_decay=0.1)),
}
FROZEN = {"conv": ["0"], "conv_bn": ["0", "1"], "middle_linear": ["5"], "all_but_last": ["0", "1", "5"]}


def model():
    """(6, 2, 6, 6) -> (6, 3): Conv2d, BatchNorm2d, ReLU, MaxPool2d, Flatten, Linear, ReLU, Linear.

    The conv has no bias: a bias in front of BatchNorm has a zero gradient up to rounding, which
    Adam would scale up to lr-sized steps that differ between any two libraries."""
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 8), nn.ReLU(),
                         nn.Linear(8, 3)).astype(np.float64)


def data():
    rng = np.random.default_rng(3)
    return rng.standard_normal((6, 2, 6, 6)), rng.integers(0, 3, 6)


def train(net, opt, steps=5):
    x, y = data()
    criterion = CrossEntropyLoss()
    for _ in range(steps):
        opt.zero_grad()
        criterion(net(x), y)
        net.backward(criterion.backward(), input_grad=False)
        opt.step()


def frozen_names(net, layers):
    return {name for name, _ in net.named_parameters() if name.split(".")[0] in layers}


@pytest.mark.parametrize("frozen", list(FROZEN))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_frozen_layers_bit_identical_after_five_steps(name, frozen):
    cls, kwargs = OPTIMIZERS[name]
    net = model()
    for layer in FROZEN[frozen]:
        net[int(layer)].requires_grad_(False)
    before = net.state_dict()
    train(net, cls(net.parameters(), **kwargs))
    names = frozen_names(net, FROZEN[frozen])
    after = dict(net.named_parameters())
    for key in after:
        if key in names:
            assert np.array_equal(after[key].data, before[key]), key
            assert not after[key].grad.any(), key  # no gradient was accumulated either
        else:
            assert not np.array_equal(after[key].data, before[key]), key


def torch_twin(torch, net):
    """``model()`` in PyTorch, float64, holding ``net``'s weights."""
    tnn = torch.nn
    twin = tnn.Sequential(tnn.Conv2d(2, 4, 3, padding=1, bias=False), tnn.BatchNorm2d(4), tnn.ReLU(),
                          tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(4 * 3 * 3, 8), tnn.ReLU(),
                          tnn.Linear(8, 3)).double()
    twin.load_state_dict({k: torch.tensor(v) for k, v in net.state_dict().items()}, strict=True)
    return twin


def train_torch(torch, twin, opt, steps=5):
    x, y = (torch.tensor(a) for a in data())
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(twin(x), y).backward()
        opt.step()


def assert_same_state(net, twin):
    theirs = twin.state_dict()
    for key, value in net.state_dict().items():
        np.testing.assert_allclose(value, theirs[key].numpy(), rtol=1e-10, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("frozen", list(FROZEN))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_frozen_training_matches_torch(name, frozen):
    torch = pytest.importorskip("torch")
    cls, kwargs = OPTIMIZERS[name]
    net = model()
    twin = torch_twin(torch, net)
    for layer in FROZEN[frozen]:
        net[int(layer)].requires_grad_(False)
        twin[int(layer)].requires_grad_(False)
    train(net, cls(net.parameters(), **kwargs))
    train_torch(torch, twin, getattr(torch.optim, cls.__name__)(twin.parameters(), **kwargs))
    assert_same_state(net, twin)


def test_freezing_a_parameter_by_hand_and_filtering_like_pytorch():
    """``p.requires_grad = False`` on one parameter; optimizers built over all parameters or over
    ``filter(lambda p: p.requires_grad, ...)`` (the PyTorch idiom) train the same."""
    nets = [model(), model()]
    nets[1].load_state_dict(nets[0].state_dict())
    for net in nets:
        net[7].bias.requires_grad = False
    bias = nets[0][7].bias.data.copy()
    train(nets[0], SGD(nets[0].parameters(), lr=0.05, momentum=0.9, weight_decay=1e-2))
    train(nets[1], SGD(filter(lambda p: p.requires_grad, nets[1].parameters()), lr=0.05, momentum=0.9,
                       weight_decay=1e-2))
    assert np.array_equal(nets[0][7].bias.data, bias)
    for (k, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values()):
        assert np.array_equal(a, b), k


@pytest.mark.parametrize("cls", [Adam, AdamW, SGD])
def test_unfreezing_mid_training_matches_torch(cls):
    """Frozen for 3 steps, then unfrozen for 3: Adam's per-parameter step count starts the
    unfrozen layer's bias correction at t = 1, as PyTorch's ``state["step"]`` does."""
    torch = pytest.importorskip("torch")
    net = model()
    twin = torch_twin(torch, net)
    kwargs = dict(lr=1e-2, weight_decay=1e-2) if cls is not SGD else dict(lr=0.05, momentum=0.9)
    opt = cls(net.parameters(), **kwargs)
    opt_t = getattr(torch.optim, cls.__name__)(twin.parameters(), **kwargs)
    for flag in (False, True):
        net[5].requires_grad_(flag)
        twin[5].requires_grad_(flag)
        train(net, opt, steps=3)
        train_torch(torch, twin, opt_t, steps=3)
    assert_same_state(net, twin)
