"""Input gradients are asked for at the backward call (``backward(dout, input_grad=False)``), and
honoured by every composite; frozen parameters get no gradient and are not even visited when in front.
Backward calls are counted twice: with hooks (which keep every layer unfused) and by wrapping each
module's ``backward`` without a hook, so the fused path (after ``npnet.fuse``) is covered too."""
import numpy as np
import pytest

import npnet
from npnet import nn
from npnet.models import BasicBlock, MultiKernelConv, build_model


def rand(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def count_backward_calls(model, how):
    """{module name: number of backward calls}: ``how="hooks"`` counts with backward hooks (every layer
    then runs unfused); ``how="wrapped"`` wraps each instance's ``backward`` (no hook, fusion unchanged)."""
    calls = {}
    for name, m in model.named_modules():
        calls[name] = 0
        if how == "hooks":
            m.register_full_backward_hook(lambda mod, gi, go, name=name: calls.__setitem__(name, calls[name] + 1))
        else:
            def counted(dout, input_grad=True, _bw=m.backward, name=name):
                calls[name] += 1
                return _bw(dout, input_grad)
            object.__setattr__(m, "backward", counted)
    return calls


def twins(make):
    a, b = make(), make()
    b.load_state_dict(a.state_dict())
    return a, b


def assert_same_grads(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=name)


COMPOSITES = {
    "residual": (lambda: nn.Sequential(nn.Residual(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, rng=1),
                                                                 nn.ReLU())), nn.Flatten(),
                                       nn.Linear(32, 3, rng=2)), (2, 2, 4, 4)),
    "basic block": (lambda: nn.Sequential(BasicBlock(2, 4, stride=2, rng=np.random.default_rng(1)),
                                          nn.Flatten(), nn.Linear(16, 3, rng=2)), (2, 2, 4, 4)),
    "multi-kernel": (lambda: nn.Sequential(MultiKernelConv(2, 2, (1, 3), rng=np.random.default_rng(1)),
                                           nn.Flatten(), nn.Linear(32, 3, rng=2)), (2, 2, 4, 4)),
    "resnet32": (lambda: build_model("resnet32", (1, 8, 8), 3, rng=0), (2, 1, 8, 8)),
    "conv first": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, rng=3), nn.BatchNorm2d(2), nn.ReLU(),
                                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3, rng=4)), (3, 1, 4, 4)),
    "flatten first": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 5, rng=3), nn.Sigmoid(),
                                            nn.Linear(5, 3, rng=4)), (3, 1, 4, 4)),
}


@pytest.mark.parametrize("name", COMPOSITES)
def test_composites_skip_only_the_input_gradient(name):
    make, shape = COMPOSITES[name]
    full, fast = twins(make)
    rng = np.random.default_rng(0)
    x = rand(rng, shape)
    g = rand(rng, full(x).shape)
    dx = full.backward(g)
    fast(x)
    assert fast.backward(g, input_grad=False) is None
    assert_same_grads(full, fast)
    fast.zero_grad()
    fast(x)
    np.testing.assert_allclose(fast.backward(g), dx, rtol=1e-5, atol=1e-6)  # asked again: there


@pytest.mark.parametrize("how", ["hooks", "wrapped"])
def test_sequential_does_not_visit_layers_before_the_first_trainable_one(how):
    model = nn.Sequential(nn.Flatten(), nn.Identity(), nn.Linear(4, 3, rng=0), nn.ReLU(), nn.Linear(3, 2, rng=1),
                          nn.BatchNorm1d(2), nn.ReLU())
    if how == "wrapped":
        npnet.fuse(model)                                  # BatchNorm-ReLU fused; the counts stay per slot
    calls = count_backward_calls(model, how)
    model(np.ones((2, 1, 2, 2), np.float32))
    model.backward(np.ones((2, 2), np.float32), input_grad=False)
    tail = {"5": 1, "6": 1} if how == "hooks" else {"5+6": 1, "5": 0, "6": 0}  # the fused pair: one call
    assert calls == {"": 1, "0": 0, "1": 0, "2": 1, "3": 1, "4": 1, **tail}


@pytest.mark.parametrize("how", ["hooks", "wrapped"])
def test_a_frozen_backbone_is_not_visited_and_gets_no_gradient(how):
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3, rng=1))
    model[0].requires_grad_(False)
    conv, head = model[0], model[3]
    if how == "wrapped":
        npnet.fuse(model)                                  # Conv2d-ReLU fused
    calls = count_backward_calls(model, how)
    model(rand(np.random.default_rng(0), (2, 1, 4, 4)))
    model.backward(np.ones((2, 3), np.float32), input_grad=False)
    assert calls["0"] == 0 and calls["1"] == 0 and calls["3"] == 1
    assert not conv.weight.grad.any() and head.weight.grad.any()


@pytest.mark.parametrize("layer", ["linear", "conv", "batchnorm"])
def test_frozen_parameters_get_no_gradient_and_the_others_are_unchanged(layer):
    make = {"linear": lambda: nn.Linear(4, 3, rng=0), "conv": lambda: nn.Conv2d(2, 3, 3, padding=1, rng=0),
            "batchnorm": lambda: nn.BatchNorm2d(2)}[layer]
    shape = {"linear": (5, 4), "conv": (2, 2, 4, 4), "batchnorm": (3, 2, 4, 4)}[layer]
    full, frozen = twins(make)
    frozen.weight.requires_grad = False
    x = rand(np.random.default_rng(1), shape)
    g = rand(np.random.default_rng(2), full(x).shape)
    dx = full.backward(g)
    frozen(x)
    np.testing.assert_array_equal(frozen.backward(g), dx)
    assert not frozen.weight.grad.any() and full.weight.grad.any()
    np.testing.assert_array_equal(frozen.bias.grad, full.bias.grad)
    assert "0.weight" not in frozen.state_dict() and "weight" in frozen.state_dict()  # still saved


def test_requires_grad_and_zero_grad_follow_pytorch_signatures():
    model = nn.Sequential(nn.Linear(2, 2, rng=0), nn.Linear(2, 1, rng=1))
    assert model.requires_grad_(False) is model
    assert not any(p.requires_grad for p in model.parameters())
    model[1].requires_grad_()
    assert [p.requires_grad for p in model.parameters()] == [False, False, True, True]
    model.zero_grad(set_to_none=True)  # accepted; npnet keeps zeroed arrays
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())


# -- load_state_dict -----------------------------------------------------------------------------
