"""Forward and backward hooks as in PyTorch: order, shapes, removal, replacing values, subclasses."""
import numpy as np
import pytest

from npnet import nn


def rand(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


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
