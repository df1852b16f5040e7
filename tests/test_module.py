"""The module contract: registration, modes, dtypes, initialisation, no_grad and clear errors
(state dicts: test_state_dict.py; hooks: test_hooks.py; input gradients: test_input_grad.py)."""
import numpy as np
import pytest

import npnet
from npnet import nn


def small_model(rng=0):
    rng = np.random.default_rng(rng)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, rng=rng), nn.BatchNorm2d(2), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5, rng=rng),
                         nn.Linear(2 * 2 * 2, 3, rng=rng))


def test_shared_parameter_listed_once_and_grads_accumulate():
    lin, twin = nn.Linear(3, 3, rng=0), nn.Linear(3, 3, rng=1)
    twin.weight, twin.bias = lin.weight, lin.bias  # one Parameter used by two modules
    model = nn.Sequential(lin, nn.Tanh(), twin)
    assert len(list(model.parameters())) == 2
    x = np.ones((2, 3), dtype=np.float32)
    model(x)
    model.backward(np.ones((2, 3), dtype=np.float32))
    once = lin.weight.grad.copy()
    model(x)
    model.backward(np.ones((2, 3), dtype=np.float32))
    np.testing.assert_allclose(lin.weight.grad, 2 * once, rtol=1e-6)
    model.zero_grad()
    assert not lin.weight.grad.any()


def test_train_eval_switch_every_child():
    model = small_model()
    model.eval()
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_astype_converts_parameters_and_float_buffers_only():
    model = small_model().astype(np.float64)
    assert all(p.data.dtype == np.float64 and p.grad.dtype == np.float64 for p in model.parameters())
    assert model[1].running_var.dtype == np.float64
    assert model[1].num_batches_tracked.dtype == np.int64
    with pytest.raises(TypeError):
        model.astype(np.int32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept_end_to_end(dtype):
    model = small_model().astype(dtype)
    x = np.random.default_rng(0).standard_normal((4, 1, 4, 4)).astype(dtype)
    out = model(x)
    dx = model.backward(np.ones_like(out))
    assert out.dtype == dtype and dx.dtype == dtype
    assert all(p.grad.dtype == dtype for p in model.parameters())


def test_clear_errors_name_layer_expected_and_received():
    with pytest.raises(ValueError, match=r"Linear\(in_features=5.*\(N, 5\).*\(2, 4\)"):
        nn.Linear(5, 3)(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d.*\(N, 3, H, W\).*\(2, 1, 8, 8\)"):
        nn.Conv2d(3, 4, 3)(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(TypeError, match="float64 does not match the layer's float32"):
        nn.Linear(5, 3)(np.zeros((2, 5)))
    with pytest.raises(TypeError, match="floating-point"):
        nn.ReLU()(np.zeros((2, 5), dtype=np.int64))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        nn.Conv2d(1, 1, 5)(np.zeros((1, 1, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected gradient of shape \(2, 3\)"):
        lin = nn.Linear(5, 3)
        lin(np.zeros((2, 5), np.float32))
        lin.backward(np.zeros((2, 4), np.float32))


@pytest.mark.parametrize("layer,x", [
    (nn.Linear(2, 2), np.zeros((1, 2), np.float32)), (nn.ReLU(), np.zeros((1, 2), np.float32)),
    (nn.Conv2d(1, 1, 1), np.zeros((1, 1, 2, 2), np.float32)), (nn.BatchNorm1d(2), np.zeros((3, 2), np.float32)),
    (nn.MaxPool2d(2), np.zeros((1, 1, 2, 2), np.float32)), (nn.Flatten(), np.zeros((1, 2, 2), np.float32))])
def test_backward_before_forward_is_a_clear_error(layer, x):
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward\\(\\)"):
        layer.backward(x)


def test_batchnorm_running_stats_follow_pytorch_convention():
    bn = nn.BatchNorm1d(2, momentum=0.1, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((5, 2)) * 3 + 1
    bn(x)
    np.testing.assert_allclose(bn.running_mean, 0.1 * x.mean(0))
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * x.var(0, ddof=1))
    assert int(bn.num_batches_tracked) == 1
    bn.eval()
    np.testing.assert_allclose(bn(x), (x - bn.running_mean) / np.sqrt(bn.running_var + 1e-5))


def test_dropout_inverted_seedable_and_identity_in_eval():
    x = np.ones((200, 50), np.float32)
    a, b = nn.Dropout(0.3, rng=7)(x), nn.Dropout(0.3, rng=7)(x)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {0.0, np.float32(1 / 0.7)}
    assert abs((a == 0).mean() - 0.3) < 0.02
    d = nn.Dropout(0.3).eval()
    assert d(x) is x


def test_default_init_is_pytorch_kaiming_uniform_and_seedable():
    w1 = nn.Linear(100, 50, rng=3).weight.data
    assert np.abs(w1).max() <= 1 / np.sqrt(100) and np.abs(w1).max() > 0.09
    np.testing.assert_array_equal(w1, nn.Linear(100, 50, rng=3).weight.data)
    npnet.manual_seed(5)
    c1 = nn.Conv2d(3, 4, 3).weight.data
    npnet.manual_seed(5)
    np.testing.assert_array_equal(c1, nn.Conv2d(3, 4, 3).weight.data)


def test_init_helpers():
    w = np.zeros((64, 32, 3, 3))
    npnet.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu", rng=0)
    assert abs(w.std() - np.sqrt(2 / (64 * 9))) < 0.01 * np.sqrt(2 / (64 * 9)) * 10
    npnet.init.xavier_uniform_(w, rng=0)
    assert np.abs(w).max() <= np.sqrt(6 / (32 * 9 + 64 * 9))


def test_no_grad_keeps_no_caches_and_gives_the_same_outputs():
    model = small_model().eval()
    x = np.random.default_rng(1).standard_normal((3, 1, 4, 4)).astype(np.float32)
    ref = model(x)
    assert any(m.cache is not None for m in model.modules())
    model(x)
    model.backward(np.ones_like(ref))       # eval mode with grad enabled still has a backward
    with npnet.no_grad():
        assert not npnet.is_grad_enabled()
        with npnet.no_grad():               # nests
            out = model(x)
        assert not npnet.is_grad_enabled()
    assert npnet.is_grad_enabled()
    # equal to rounding: inside no_grad a Conv2d -> BatchNorm2d pair runs as one folded convolution
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    assert all(m.cache is None for m in model.modules())
    with pytest.raises(RuntimeError, match=r"Linear.*no_grad"):
        model.backward(np.ones_like(ref))


def test_no_grad_restores_the_state_after_an_error_and_works_as_decorator():
    with pytest.raises(ValueError):
        with npnet.no_grad():
            raise ValueError("boom")
    assert npnet.is_grad_enabled()

    @npnet.no_grad()
    def infer(model, x):
        assert not npnet.is_grad_enabled()
        return model(x)
    model = small_model()
    infer(model, np.zeros((2, 1, 4, 4), np.float32))
    assert npnet.is_grad_enabled() and all(m.cache is None for m in model.modules())


def test_a_replaced_child_or_parameter_keeps_its_place():
    model = nn.Sequential(nn.Linear(2, 3, rng=0), nn.ReLU(), nn.Linear(3, 1, rng=1))
    setattr(model, "1", nn.Tanh())
    assert [type(m).__name__ for m in model] == ["Linear", "Tanh", "Linear"]
    lin = model[0]
    lin.weight = nn.Parameter(np.zeros((3, 2), np.float32))
    assert list(lin.state_dict()) == ["weight", "bias"]
    setattr(model, "1", nn.Linear(3, 3, rng=2))                     # a parameter-free child becomes a layer
    assert list(model.state_dict())[2:4] == ["1.weight", "1.bias"]


def test_has_hooks_sees_forward_and_backward_hooks_of_this_module_only():
    model = nn.Sequential(nn.Linear(2, 2, rng=0))
    assert not model.has_hooks() and not model[0].has_hooks()
    h = model[0].register_full_backward_hook(lambda *a: None)
    assert model[0].has_hooks() and not model.has_hooks()
    h.remove()
    h = model[0].register_forward_hook(lambda *a: None)
    assert model[0].has_hooks()
    h.remove()
    assert not model[0].has_hooks()
