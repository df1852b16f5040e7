"""Linear: y = x W^T + b, weight stored (out_features, in_features) as in PyTorch."""
import numpy as np

from .. import init
from ..kernels.matmul import matmul
from ._checks import check_grad, check_input
from .module import Module, Parameter


class Linear(Module):
    """Fully connected layer ``y = x W^T + b``, as ``torch.nn.Linear``.

    Args:
        in_features (int): size of each input row.
        out_features (int): size of each output row.
        bias (bool): learn an additive bias (default True).
        rng: a ``numpy.random.Generator``, an int seed or None: the generator of the initialisation;
            None uses npnet's default generator (seeded by ``npnet.manual_seed``).
        dtype: the parameters' dtype, default ``np.float32``; the input must have the same one.

    Shape:
        input: (N, in_features).
        output: (N, out_features).

    Attributes:
        weight (Parameter): (out_features, in_features), PyTorch's layout and initialisation
            (``kaiming_uniform_(a=sqrt(5))``: U(-1/sqrt(in_features), 1/sqrt(in_features))).
        bias (Parameter or None): (out_features,), U(-1/sqrt(in_features), 1/sqrt(in_features)).

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> fc = nn.Linear(20, 30, rng=0)
        >>> fc(np.ones((128, 20), np.float32)).shape
        (128, 30)
    """

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(np.zeros((self.out_features, self.in_features), dtype=dtype))
        self.bias = Parameter(np.zeros(self.out_features, dtype=dtype)) if bias else None
        init.default_weight_and_bias(self.weight, self.bias, rng)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    def forward(self, x):
        check_input(self, x, (2,), f"(N, {self.in_features})", self.in_features)
        out = matmul(x, self.weight.data.T)  # (N, out); why not @: see kernels.matmul
        if self.bias is not None:
            out += self.bias.data
        self.cache = x
        return out

    def backward(self, dout, input_grad=True):
        x = self._saved()
        check_grad(self, dout, (x.shape[0], self.out_features), x.dtype)
        if self.weight.requires_grad:  # weight.grad += dout^T x (out, in), added by BLAS itself
            matmul(dout.T, x, out=self.weight.grad, accumulate=True)
        if self.bias is not None and self.bias.requires_grad:
            self.bias.grad += dout.sum(axis=0)
        self.cache = None
        return matmul(dout, self.weight.data) if input_grad else None  # (N, in)
