"""Reference mode (``npnet.kernels.use_reference``): every layer runs on the NumPy twin of its kernel.
The layer test files run in both modes through the ``kernel_mode`` fixture (conftest.py); here: the
switch itself, that the twins are what runs, and that the twins' signatures equal the kernels'."""
import inspect

import numpy as np
import pytest

import npnet
from npnet import kernels, nn
from npnet.kernels import reference
from npnet.models import build_model


def test_ops_are_the_kernels_or_their_twins():
    for name, (fast, ref) in reference.PAIRS.items():
        assert getattr(kernels.ops, name) is fast
        with kernels.use_reference():
            assert kernels.reference_enabled() and getattr(kernels.ops, name) is ref
            with kernels.use_reference(False):                 # nests, and restores on exit
                assert getattr(kernels.ops, name) is fast
            assert getattr(kernels.ops, name) is ref
        assert not kernels.reference_enabled()
    with pytest.raises(AttributeError, match="no kernel 'conv3d'"):
        kernels.ops.conv3d  # noqa: B018


@pytest.mark.parametrize("name", list(reference.PAIRS))
def test_twins_have_the_kernels_signature(name):
    fast, ref = reference.PAIRS[name]
    assert inspect.signature(ref) == inspect.signature(fast), name


def test_layers_call_the_twins_inside_reference_mode(monkeypatch):
    """Every kernel a cnn-bn + ResNet train step and a no_grad forward use is called as the twin."""
    called = set()
    for name, (fast, ref) in list(reference.PAIRS.items()):
        def spy(*a, _ref=ref, _name=name, **k):
            called.add(_name)
            return _ref(*a, **k)
        monkeypatch.setitem(reference.PAIRS, name, (fast, spy))
    x = np.random.default_rng(0).standard_normal((4, 1, 12, 12)).astype(np.float32)
    with kernels.use_reference():
        for model in (build_model("cnn-bn", (1, 12, 12), 10, rng=0), build_model("resnet32", (1, 12, 12), 10, rng=0),
                      nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(36, 3, rng=0))):
            out = model(x)
            model.backward(np.ones_like(out))
            with npnet.no_grad():
                model.eval()(x)
    assert called == set(reference.PAIRS)


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
