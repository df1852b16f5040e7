"""Every layer against central finite differences in float64 (relative error < 1e-6), with
shapes drawn by hypothesis and inputs kept away from kinks (ReLU at 0, ties in max-pool)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from npnet import nn
from npnet.gradcheck import GradientCheckError, check_module

TOL = 1e-6

pytestmark = pytest.mark.usefixtures("kernel_mode")  # Numba kernels and NumPy twins


def away_from_zero(x, gap=1e-3):
    """Moves entries closer than ``gap`` to 0 out to +-gap, so eps steps never cross a kink."""
    return np.where(np.abs(x) < gap, np.copysign(gap, x), x)


def distinct_values(rng, shape):
    """Values whose pairwise gaps are >= 0.01, so no max-pool window has near-ties."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.01 - n * 0.005).reshape(shape) + rng.uniform(0, 1e-3, shape)


conv_cases = st.fixed_dictionaries({
    "n": st.integers(1, 3), "c": st.integers(1, 3), "o": st.integers(1, 3),
    "kh": st.integers(1, 4), "kw": st.integers(1, 4), "sh": st.integers(1, 3), "sw": st.integers(1, 3),
    "ph": st.integers(0, 2), "pw": st.integers(0, 2), "extra_h": st.integers(0, 4),
    "extra_w": st.integers(0, 4), "bias": st.booleans(), "seed": st.integers(0, 2**16)})


@given(conv_cases)
def test_conv2d(case):
    rng = np.random.default_rng(case["seed"])
    h, w = case["kh"] + case["extra_h"], case["kw"] + case["extra_w"]
    layer = nn.Conv2d(case["c"], case["o"], (case["kh"], case["kw"]), (case["sh"], case["sw"]),
                      (case["ph"], case["pw"]), bias=case["bias"], rng=rng)
    check_module(layer, rng.standard_normal((case["n"], case["c"], h, w)), tol=TOL)


pool_cases = st.fixed_dictionaries({
    "n": st.integers(1, 3), "c": st.integers(1, 3), "kh": st.integers(1, 4), "kw": st.integers(1, 4),
    "sh": st.integers(1, 3), "sw": st.integers(1, 3), "pad": st.booleans(), "extra_h": st.integers(0, 4),
    "extra_w": st.integers(0, 4), "seed": st.integers(0, 2**16)})


@pytest.mark.parametrize("cls", [nn.MaxPool2d, nn.AvgPool2d])
@given(case=pool_cases)
def test_pooling(cls, case):
    rng = np.random.default_rng(case["seed"])
    k, s = (case["kh"], case["kw"]), (case["sh"], case["sw"])
    pad = (case["kh"] // 2, case["kw"] // 2) if case["pad"] else 0
    layer = cls(k, s, pad)
    shape = (case["n"], case["c"], case["kh"] + case["extra_h"], case["kw"] + case["extra_w"])
    check_module(layer, distinct_values(rng, shape), tol=TOL)


@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), st.integers(0, 999))
def test_global_avg_pool(n, c, h, w, seed):
    x = np.random.default_rng(seed).standard_normal((n, c, h, w))
    check_module(nn.GlobalAvgPool2d(), x, tol=TOL)


@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6), st.booleans(), st.integers(0, 999))
def test_linear(n, fin, fout, bias, seed):
    rng = np.random.default_rng(seed)
    check_module(nn.Linear(fin, fout, bias=bias, rng=rng), rng.standard_normal((n, fin)), tol=TOL)


@pytest.mark.parametrize("make", [nn.ReLU, lambda: nn.LeakyReLU(0.1), nn.Sigmoid, nn.Tanh,
                                  nn.Identity, nn.Flatten])
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4), seed=st.integers(0, 999))
def test_elementwise_and_shape(make, shape, seed):
    x = away_from_zero(np.random.default_rng(seed).standard_normal(shape) * 3)
    check_module(make(), x, tol=TOL)


@pytest.mark.parametrize("cls,ndim", [(nn.BatchNorm1d, 2), (nn.BatchNorm1d, 3), (nn.BatchNorm2d, 4)])
@pytest.mark.parametrize("training", [True, False])
# n >= 3: with 2 values per channel the output is +-1 whatever x is, and dx ~ 0 is all noise.
@given(n=st.integers(3, 5), c=st.integers(1, 4), l=st.integers(1, 4), seed=st.integers(0, 999))
def test_batchnorm(cls, ndim, training, n, c, l, seed):
    rng = np.random.default_rng(seed)
    layer = cls(c, dtype=np.float64)
    layer.weight.data[:] = rng.uniform(0.5, 2, c)
    layer.bias.data[:] = rng.standard_normal(c)
    layer.running_mean[:] = rng.standard_normal(c)
    layer.running_var[:] = rng.uniform(0.5, 2, c)
    layer.train(training)
    shape = (n, c) + (l,) * (ndim - 2)
    check_module(layer, rng.standard_normal(shape) * 2 + 1, tol=TOL)


@given(p=st.sampled_from([0.0, 0.3, 0.5, 0.9]), seed=st.integers(0, 999))
def test_dropout(p, seed):
    layer = nn.Dropout(p)

    def reseed():  # the same mask on every forward of the check
        layer.rng = np.random.default_rng(seed)

    check_module(layer, np.random.default_rng(seed).standard_normal((3, 5)), tol=TOL, reset=reseed)


def test_residual_blocks():
    rng = np.random.default_rng(0)
    branch = nn.Sequential(nn.Linear(4, 5, rng=rng), nn.Tanh(), nn.Linear(5, 4, rng=rng))
    check_module(nn.Residual(branch), rng.standard_normal((3, 4)), tol=TOL)
    proj = nn.Residual(nn.Sequential(nn.Linear(4, 6, rng=rng), nn.Sigmoid()), nn.Linear(4, 6, rng=rng))
    check_module(proj, rng.standard_normal((3, 4)), tol=TOL)


def test_small_cnn_end_to_end():
    rng = np.random.default_rng(1)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, rng=rng), nn.BatchNorm2d(3), nn.Tanh(), nn.AvgPool2d(2),
        nn.Residual(nn.Sequential(nn.Conv2d(3, 3, (3, 1), padding=(1, 0), rng=rng), nn.Sigmoid())),
        nn.GlobalAvgPool2d(), nn.Linear(3, 4, rng=rng))
    check_module(model, rng.standard_normal((3, 2, 6, 6)), tol=TOL)


def test_check_module_catches_a_wrong_backward():
    class Broken(nn.Tanh):
        def backward(self, dout):
            return super().backward(dout) * 1.01

    with pytest.raises(GradientCheckError, match="input: relative error .*too large"):
        check_module(Broken(), np.random.default_rng(0).standard_normal((2, 3)))


class _AssigningLinear(nn.Linear):
    """A Linear whose backward assigns ``weight.grad`` (rebinding it) instead of adding into it."""

    def backward(self, dout, input_grad=True):
        x = self.cache
        dx = super().backward(dout, input_grad)
        self.weight.grad = dout.T @ x  # the bug: one call's gradient, the earlier ones lost
        return dx


class _OverwritingLinear(nn.Linear):
    """Writes ``weight.grad[...] = g``: the array is kept but the earlier gradient is lost."""

    def backward(self, dout, input_grad=True):
        x = self.cache
        dx = super().backward(dout, input_grad)
        self.weight.grad[...] = dout.T @ x
        return dx


class _ReplacingLinear(nn.Linear):
    """Adds correctly but into a new array (``grad = grad + g``): views and buffers are cut off."""

    def backward(self, dout, input_grad=True):
        before = self.weight.grad.copy()
        dx = super().backward(dout, input_grad)
        self.weight.grad = before + (self.weight.grad - before)
        return dx


@pytest.mark.parametrize("cls, said", [
    (_AssigningLinear, "weight: .*grad equals one call's gradient: it was assigned, not added"),
    (_OverwritingLinear, "weight: .*grad equals one call's gradient: it was assigned, not added"),
    (_ReplacingLinear, "weight: backward replaced the grad array")])
def test_check_module_catches_a_backward_that_does_not_accumulate(cls, said):
    layer = cls(3, 2, rng=np.random.default_rng(0))
    with pytest.raises(GradientCheckError, match="accumulate rule broken") as info:
        check_module(layer, np.random.default_rng(1).standard_normal((4, 3)))
    assert info.match(said)
    assert "  bias:" not in str(info.value)  # the bias adds as it should: not reported


def test_check_module_accepts_frozen_parameters_and_catches_a_gradient_written_into_one():
    rng = np.random.default_rng(0)
    layer = nn.Linear(3, 2, rng=rng)
    layer.weight.requires_grad = False
    x = rng.standard_normal((4, 3))
    assert set(check_module(layer, x)) == {"input", "bias"}

    class Leaky(nn.Linear):
        def backward(self, dout, input_grad=True):
            dx = super().backward(dout, input_grad)
            self.weight.grad += 1.0  # frozen, yet written
            return dx

    leaky = Leaky(3, 2, rng=rng)
    leaky.weight.requires_grad = False
    with pytest.raises(GradientCheckError, match="weight: frozen .* backward wrote a gradient"):
        check_module(leaky, x)
