"""Element-wise activations. Each caches the one array its backward needs (the output where the
derivative is a function of it, as for Sigmoid and Tanh)."""
import numpy as np

from ..kernels.elementwise import relu_backward, relu_forward
from ._checks import check_grad, check_input
from .module import Module

_ANY = "(N, *) floating"


class _Activation(Module):
    def _check(self, x):
        return check_input(self, x, range(1, 33), _ANY)

    def _grad(self, dout, ref):
        self.cache = None
        return check_grad(self, dout, ref.shape, ref.dtype)


class ReLU(_Activation):
    """max(x, 0). The derivative at 0 is taken as 0, like PyTorch. Cache: the output."""

    def forward(self, x):
        self._check(x)
        out = relu_forward(x)
        self.cache = out
        return out

    def backward(self, dout, input_grad=True):
        out = self._saved()
        self._grad(dout, out)
        return relu_backward(dout, out)  # dout * (out > 0) in one parallel pass


class LeakyReLU(_Activation):
    """x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"

    def forward(self, x):
        self._check(x)
        slope = x.dtype.type(self.negative_slope)
        self.cache = x
        return np.where(x > 0, x, x * slope)

    def backward(self, dout, input_grad=True):
        x = self._saved()
        self._grad(dout, x)
        slope = x.dtype.type(self.negative_slope)
        return dout * np.where(x > 0, x.dtype.type(1), slope)


class Sigmoid(_Activation):
    """1 / (1 + exp(-x)), computed as (1 + tanh(x/2)) / 2 so that no exp overflows."""

    def forward(self, x):
        self._check(x)
        half = x.dtype.type(0.5)
        out = half * (np.tanh(half * x) + 1)
        self.cache = out
        return out

    def backward(self, dout, input_grad=True):
        out = self._saved()
        self._grad(dout, out)
        return dout * out * (1 - out)


class Tanh(_Activation):
    """tanh(x); backward uses 1 - tanh(x)^2 from the cached output."""

    def forward(self, x):
        self._check(x)
        out = np.tanh(x)
        self.cache = out
        return out

    def backward(self, dout, input_grad=True):
        out = self._saved()
        self._grad(dout, out)
        return dout * (1 - out * out)
