"""Reference mode (``npnet.kernels.use_reference``): every layer runs on the NumPy twin of its kernel.
The layer test files run in both modes through the ``kernel_mode`` fixture (conftest.py); here: the
switch itself, that the twins are what runs, and that the twins' signatures equal the kernels'."""
import inspect

import numpy as np
import pytest

import npnet
from npnet import kernels, nn
from npnet.models import build_model


# every kernel entry point and its NumPy twin, as ``npnet.kernels`` exports them
def _twin(name):
    return name.rstrip("_") + "_ref"  # add_ (in place) has the twin add_ref


PAIRS = {name: (getattr(kernels, name), getattr(kernels, _twin(name)))
         for name in kernels.__all__ if not name.endswith("_ref") and _twin(name) in kernels.__all__}


def test_every_kernel_the_layers_call_has_a_twin():
    assert {"conv2d_forward", "conv2d_backward", "matmul", "relu_forward", "relu_backward", "add_relu", "add_",
            "channel_affine2", "maxpool2d_backward", "avgpool2d_forward"} <= set(PAIRS)
    with kernels.use_reference():
        assert kernels.reference_enabled()
        with kernels.use_reference(False):                 # nests, and restores on exit
            assert not kernels.reference_enabled()
        assert kernels.reference_enabled()
    assert not kernels.reference_enabled()


@pytest.mark.parametrize("name", list(PAIRS))
def test_twins_have_the_kernels_signature(name):
    fast, ref = PAIRS[name]
    assert inspect.signature(ref) == inspect.signature(fast), name


def test_layers_call_the_twins_inside_reference_mode(monkeypatch):
    """Every kernel entry point that a cnn-bn + ResNet train step and a no_grad forward use, plain
    and fused, calls its twin (the name its first lines look up in its own module)."""
    called = set()
    for name, (fast, ref) in PAIRS.items():
        def spy(*a, _ref=ref, _name=name, **k):
            called.add(_name)
            return _ref(*a, **k)
        monkeypatch.setattr(inspect.getmodule(fast), _twin(name), spy)
    x = np.random.default_rng(0).standard_normal((4, 1, 12, 12)).astype(np.float32)
    with kernels.use_reference():
        for fused in (False, True):
            for model in (build_model("cnn-bn", (1, 12, 12), 10, rng=0), build_model("resnet32", (1, 12, 12), 10, rng=0),
                          nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(36, 3, rng=0))):
                model = npnet.fuse(model) if fused else model
                out = model(x)
                model.backward(np.ones_like(out))
                with npnet.no_grad():
                    model.eval()(x)
    used = {"conv2d_forward", "conv2d_backward", "matmul", "relu_forward", "relu_backward", "add_relu", "add_",
            "channel_stats", "channel_affine", "channel_grad_sums", "channel_affine2", "maxpool2d_forward",
            "maxpool2d_backward", "avgpool2d_forward", "avgpool2d_backward"}
    assert used <= called


def test_a_layer_runs_its_own_algorithms_twin(monkeypatch):
    """Reference mode keeps each Conv2d's algorithm: im2col's twin for im2col, Winograd's for Winograd."""
    from npnet.kernels import conv
    seen = []
    monkeypatch.setattr(conv, "winograd_forward_ref", lambda *a, **k: seen.append("winograd") or
                        kernels.winograd_forward_ref(*a, **k))
    monkeypatch.setattr(conv, "im2col_ref", lambda *a, **k: seen.append("im2col") or kernels.im2col_ref(*a, **k))
    x = np.random.default_rng(0).standard_normal((2, 16, 6, 6)).astype(np.float32)
    with kernels.use_reference():
        nn.Conv2d(16, 16, 3, padding=1, algorithm="im2col")(x)
        nn.Conv2d(16, 16, 3, padding=1)(x)          # the fixed rule: Winograd F(2x2) from 16 channels
    assert seen == ["im2col", "winograd"]


def test_reference_mode_agrees_with_the_kernels_on_resnet32():
    model = build_model("resnet32", (3, 12, 12), 10, rng=0)
    x = np.random.default_rng(1).standard_normal((3, 3, 12, 12)).astype(np.float32)
    results = []
    for ref in (False, True):
        with kernels.use_reference(ref):
            model.zero_grad()
            out = model(x)
            dx = model.backward(np.ones_like(out))
            results.append((out, dx, model[0].weight.grad.copy()))
    for a, b in zip(*results):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
