"""The contract of issue 12 and 14: input gradients asked for at the backward call (honoured by
every composite), frozen parameters, load_state_dict with PyTorch's semantics, and hooks."""
import numpy as np
import pytest

from npnet import nn
from npnet.models import BasicBlock, MultiKernelConv, build_model


def rand(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def count_backward_calls(model):
    """{module name: number of backward calls}, counted with backward hooks."""
    calls = {}
    for name, m in model.named_modules():
        calls[name] = 0
        m.register_full_backward_hook(lambda mod, gi, go, name=name: calls.__setitem__(name, calls[name] + 1))
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


def test_sequential_does_not_visit_layers_before_the_first_trainable_one():
    model = nn.Sequential(nn.Flatten(), nn.Identity(), nn.Linear(4, 3, rng=0), nn.ReLU(), nn.Linear(3, 2, rng=1))
    calls = count_backward_calls(model)
    model(np.ones((2, 1, 2, 2), np.float32))
    model.backward(np.ones((2, 2), np.float32), input_grad=False)
    assert calls == {"": 1, "0": 0, "1": 0, "2": 1, "3": 1, "4": 1}


def test_a_frozen_backbone_is_not_visited_and_gets_no_gradient():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3, rng=1))
    model[0].requires_grad_(False)
    calls = count_backward_calls(model)
    model(rand(np.random.default_rng(0), (2, 1, 4, 4)))
    model.backward(np.ones((2, 3), np.float32), input_grad=False)
    assert calls["0"] == 0 and calls["1"] == 0 and calls["3"] == 1
    assert not model[0].weight.grad.any() and model[3].weight.grad.any()


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
def bn_model():
    return nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2, rng=1))


def arrays(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_missing_num_batches_tracked_loads_and_keeps_the_current_value():
    src, dst = bn_model(), bn_model()
    src[1].num_batches_tracked[...] = 7
    dst[1].num_batches_tracked[...] = 3
    sd = src.state_dict()
    del sd["1.num_batches_tracked"]
    assert dst.load_state_dict(sd) == ([], [])
    assert int(dst[1].num_batches_tracked) == 3
    np.testing.assert_array_equal(dst[1].running_var, src[1].running_var)


def test_strict_false_returns_missing_and_unexpected_keys():
    model = bn_model()
    sd = model.state_dict()
    del sd["3.bias"]
    sd["head.weight"] = np.zeros(2, np.float32)
    result = model.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["3.bias"] and result.unexpected_keys == ["head.weight"]


@pytest.mark.parametrize("bad, fragment", [
    ({"0.weight": np.zeros((2, 1, 3, 3), np.float64)}, "0.weight: dtype float64 does not convert exactly"),
    ({"3.bias": [0.5, 0.25]}, "3.bias: dtype float64"),
    ({"3.weight": np.zeros((3, 8), np.float32)}, "3.weight: shape mismatch, expected (2, 8), got (3, 8)"),
    ({"1.num_batches_tracked": np.array(2.5)}, "1.num_batches_tracked: dtype float64"),
    ({"extra": np.zeros(1, np.float32)}, "unexpected keys: extra"),
])
def test_a_failed_load_names_the_key_and_changes_nothing(bad, fragment):
    model = bn_model()
    before = arrays(model)
    sd = {k: v + 1 if v.dtype.kind == "f" else v + 1 for k, v in model.state_dict().items()}
    sd.update(bad)
    with pytest.raises(ValueError) as err:
        model.load_state_dict(sd)
    assert fragment in str(err.value)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_exact_casts_are_accepted():
    model = bn_model()
    sd = model.state_dict()
    sd["3.bias"] = np.array([1, -2])  # int64 that float32 represents exactly
    sd["1.num_batches_tracked"] = np.array(4, np.int32)
    model.load_state_dict(sd)
    assert model[3].bias.data.dtype == np.float32 and model[3].bias.data.tolist() == [1.0, -2.0]
    assert model[1].num_batches_tracked.dtype == np.int64 and int(model[1].num_batches_tracked) == 4
    wide = bn_model().astype(np.float64)
    wide.load_state_dict(model.state_dict())  # float32 -> float64 is exact
    assert wide[0].weight.data.dtype == np.float64


def test_an_inexact_integer_cast_is_refused():
    model = bn_model()
    sd = model.state_dict()
    sd["3.bias"] = np.array([2**24 + 1, 0])  # not representable in float32
    with pytest.raises(ValueError, match="3.bias: dtype int64 does not convert exactly"):
        model.load_state_dict(sd)


# -- hooks ---------------------------------------------------------------------------------------
def test_hooks_fire_in_forward_and_backward_order_with_shapes_and_can_be_removed():
    model = nn.Sequential(nn.Linear(4, 3, rng=0), nn.ReLU(), nn.Linear(3, 2, rng=1))
    seen, handles = [], []
    for name, m in list(model.named_modules())[1:]:
        handles.append(m.register_forward_hook(
            lambda mod, inp, out, name=name: seen.append(("f", name, inp[0].shape, out.shape))))
        handles.append(m.register_full_backward_hook(
            lambda mod, gi, go, name=name: seen.append(
                ("b", name, None if gi[0] is None else gi[0].shape, go[0].shape))))
    model(np.ones((5, 4), np.float32))
    model.backward(np.ones((5, 2), np.float32), input_grad=False)
    assert seen == [("f", "0", (5, 4), (5, 3)), ("f", "1", (5, 3), (5, 3)), ("f", "2", (5, 3), (5, 2)),
                    ("b", "2", (5, 3), (5, 2)), ("b", "1", (5, 3), (5, 3)), ("b", "0", None, (5, 3))]
    for h in handles:
        h.remove()
    seen.clear()
    model(np.ones((5, 4), np.float32))
    model.backward(np.ones((5, 2), np.float32))
    assert seen == []


def test_a_hook_may_replace_the_output_or_the_input_gradient():
    relu = nn.ReLU()
    relu.register_forward_hook(lambda m, inp, out: out * 2)
    relu.register_full_backward_hook(lambda m, gi, go: (gi[0] + 1,))
    x = np.array([[1.0, -1.0]], np.float32)
    np.testing.assert_array_equal(relu(x), [[2.0, 0.0]])
    np.testing.assert_array_equal(relu.backward(np.ones((1, 2), np.float32)), [[2.0, 1.0]])


def test_a_subclass_calling_super_backward_fires_its_hooks_once():
    class Scaled(nn.Linear):
        def backward(self, dout, input_grad=True):
            return super().backward(dout * 2, input_grad)

    layer, calls = Scaled(2, 2, rng=0), []
    layer.register_full_backward_hook(lambda m, gi, go: calls.append(go[0].copy()))
    layer(np.ones((1, 2), np.float32))
    layer.backward(np.ones((1, 2), np.float32))
    assert len(calls) == 1 and calls[0].tolist() == [[1.0, 1.0]]


def test_a_users_layer_with_the_old_backward_signature_still_works():
    class Double(nn.Module):
        def forward(self, x):
            return 2 * x

        def backward(self, dout):
            return 2 * dout

    model = nn.Sequential(nn.Linear(2, 2, rng=0), Double())
    model(np.ones((1, 2), np.float32))
    assert model.backward(np.ones((1, 2), np.float32)).shape == (1, 2)
