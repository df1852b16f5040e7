"""Element-wise activations. Each caches the one array its backward needs (the output where the
derivative is a function of it, as for Sigmoid and Tanh)."""
import numpy as np

from ..kernels.elementwise import relu_backward, relu_forward
from ..kernels.softmax import softmax_backward, softmax_forward
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
    """max(x, 0), as ``torch.nn.ReLU``. The derivative at 0 is taken as 0, like PyTorch.

    Shape:
        input: any (*).
        output: same as the input.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> relu = nn.ReLU()
        >>> relu(np.array([[-1.0, 0.0, 2.0]], np.float32)).tolist()
        [[0.0, 0.0, 2.0]]
        >>> relu.backward(np.ones((1, 3), np.float32)).tolist()
        [[0.0, 0.0, 1.0]]
    """

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
    """x if x > 0 else negative_slope * x, as ``torch.nn.LeakyReLU``.

    Args:
        negative_slope (float): the slope for x <= 0 (default 0.01).

    Shape:
        input: any ``(*)`` with at least one dim.
        output: same as the input.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> nn.LeakyReLU(0.1)(np.array([-2.0, 3.0], np.float32)).tolist()
        [-0.20000000298023224, 3.0]
    """

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
    """1 / (1 + exp(-x)), as ``torch.nn.Sigmoid``; computed as (1 + tanh(x/2)) / 2 so that no exp
    overflows.

    Shape:
        input: any ``(*)`` with at least one dim.
        output: same as the input.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> nn.Sigmoid()(np.array([0.0, 1000.0], np.float32)).tolist()
        [0.5, 1.0]
    """

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
    """tanh(x), as ``torch.nn.Tanh``; backward uses 1 - tanh(x)^2 from the cached output.

    Shape:
        input: any ``(*)`` with at least one dim.
        output: same as the input.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> tanh = nn.Tanh()
        >>> tanh(np.zeros((2, 3), np.float32)).shape
        (2, 3)
        >>> tanh.backward(np.ones((2, 3), np.float32)).tolist()  # 1 - tanh(0)^2
        [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """

    def forward(self, x):
        self._check(x)
        out = np.tanh(x)
        self.cache = out
        return out

    def backward(self, dout, input_grad=True):
        out = self._saved()
        self._grad(dout, out)
        return dout * (1 - out * out)


# -- activations of sequence models (issue 34) ---------------------------------------------------
_SQRT_2_OVER_PI = 0.7978845608028654  # sqrt(2 / pi)
_INV_SQRT_2PI = 0.3989422804014327  # 1 / sqrt(2 pi)


class GELU(_Activation):
    """x * Phi(x), Phi the standard normal CDF, as ``torch.nn.GELU(approximate)``.

    ``approximate='none'``: exact, ``0.5 x (1 + erf(x / sqrt 2))`` (SciPy's erf keeps float32).
    ``approximate='tanh'``: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.
    Caches the input: both derivatives are functions of x, not of the output.

    Args:
        approximate (str): ``'none'`` (default) or ``'tanh'``, as above.

    Shape:
        input: any ``(*)`` with at least one dim.
        output: same as the input.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> nn.GELU()(np.array([0.0, 10.0], np.float32)).tolist()
        [0.0, 10.0]
    """

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def extra_repr(self):
        return f"approximate={self.approximate!r}"

    def forward(self, x):
        self._check(x)
        self.cache = x
        if self.approximate == "tanh":
            return 0.5 * x * (1 + np.tanh(self._tanh_arg(x)))
        return 0.5 * x * (1 + _erf(x * x.dtype.type(2 ** -0.5)))

    @staticmethod
    def _tanh_arg(x):
        c = x.dtype.type(_SQRT_2_OVER_PI)
        return c * (x + x.dtype.type(0.044715) * x * x * x)

    def backward(self, dout, input_grad=True):
        x = self._saved()
        self._grad(dout, x)
        f = x.dtype.type
        if self.approximate == "tanh":
            t = np.tanh(self._tanh_arg(x))
            du = f(_SQRT_2_OVER_PI) * (1 + f(3 * 0.044715) * x * x)
            return dout * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)
        cdf = 0.5 * (1 + _erf(x * f(2 ** -0.5)))
        pdf = f(_INV_SQRT_2PI) * np.exp(-0.5 * x * x)
        return dout * (cdf + x * pdf)


def _erf(x):
    from scipy.special import erf  # imported on first use: most models never call it
    return erf(x)


class SiLU(_Activation):
    """x * sigmoid(x) (also called swish), as ``torch.nn.SiLU``; caches the input.

    Shape:
        input: any ``(*)`` with at least one dim.
        output: same as the input.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> nn.SiLU()(np.array([0.0, 20.0], np.float32)).tolist()
        [0.0, 20.0]
    """

    def forward(self, x):
        self._check(x)
        self.cache = x
        half = x.dtype.type(0.5)
        return x * (half * (np.tanh(half * x) + 1))

    def backward(self, dout, input_grad=True):
        x = self._saved()
        self._grad(dout, x)
        half = x.dtype.type(0.5)
        s = half * (np.tanh(half * x) + 1)  # sigmoid(x), without overflow
        return dout * s * (1 + x * (1 - s))


class _SoftmaxBase(_Activation):
    def __init__(self, dim=None):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            # PyTorch's dim=None picks an axis by a deprecated rule; npnet asks for it
            raise TypeError(f"{type(self).__name__}: dim must be an int (the axis to normalise), got {dim!r}")
        self.dim = int(dim)

    def extra_repr(self):
        return f"dim={self.dim}"

    def _axis(self, x):
        if not -x.ndim <= self.dim < x.ndim:
            raise ValueError(f"{self._label()}: dim {self.dim} is out of range for input of shape {x.shape}")
        return self.dim % x.ndim


class Softmax(_SoftmaxBase):
    """exp(x) / sum(exp(x)) along ``dim``, as ``torch.nn.Softmax(dim)``; caches the output.
    Forward and backward are ``kernels.softmax``'s one-pass kernels; their NumPy twins
    (``softmax_forward_ref``, ``softmax_backward_ref``) are the readable math.

    Args:
        dim (int): the axis that sums to 1. Required: PyTorch's ``dim=None`` picks an axis by a
            deprecated rule, npnet raises a TypeError instead.

    Shape:
        input: any ``(*)`` with at least one dim.
        output: same as the input.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> nn.Softmax(dim=1)(np.zeros((2, 4), np.float32)).tolist()
        [[0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]]
    """

    def forward(self, x):
        self._check(x)
        axis = self._axis(x)
        out = softmax_forward(np.moveaxis(x, axis, -1))  # the kernel works along the last axis
        self.cache = (out, axis)
        return np.moveaxis(out, -1, axis)

    def backward(self, dout, input_grad=True):
        out, axis = self._saved()
        self._grad(dout, np.moveaxis(out, -1, axis))
        # Jacobian-vector product of softmax: y * (g - <g, y>) (softmax_backward_ref, fused)
        return np.moveaxis(softmax_backward(np.moveaxis(dout, axis, -1), out), -1, axis)


class LogSoftmax(_SoftmaxBase):
    """log(softmax(x)) along ``dim``, as ``torch.nn.LogSoftmax(dim)``; caches the output.

    Args:
        dim (int): the axis to normalise. Required, as for ``Softmax``.

    Shape:
        input: any ``(*)`` with at least one dim.
        output: same as the input.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> out = nn.LogSoftmax(dim=-1)(np.zeros((1, 4), np.float32))
        >>> np.allclose(out, np.log(0.25))
        True
    """

    def forward(self, x):
        self._check(x)
        axis = self._axis(x)
        out = F.log_softmax(x, axis=axis)
        self.cache = (out, axis)
        return out

    def backward(self, dout, input_grad=True):
        out, axis = self._saved()
        self._grad(dout, out)
        return dout - np.exp(out) * dout.sum(axis=axis, keepdims=True)


from .. import functional as F  # noqa: E402  (the softmax math; imported here to leave the top untouched)
