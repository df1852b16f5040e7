"""Layers that only move data around: Flatten and Identity."""
import math

from ._checks import check_grad, check_input
from .module import Module


class Flatten(Module):
    """Flattens dims start_dim.. into one, as ``torch.nn.Flatten(start_dim=1)``.

    Args:
        start_dim (int): the first dim to flatten (default 1: keep the batch dim).

    Shape:
        input: (N, C, H, W) (or any shape with more than ``start_dim`` dims).
        output: (N, C*H*W). A view when the input is contiguous.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> nn.Flatten()(np.zeros((2, 3, 4, 4), np.float32)).shape
        (2, 48)
    """

    def __init__(self, start_dim=1):
        super().__init__()
        self.start_dim = int(start_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}"

    def forward(self, x):
        check_input(self, x, range(self.start_dim + 1, 33), f"at least {self.start_dim + 1} dims")
        self.cache = (x.shape, x.dtype)
        return x.reshape(x.shape[:self.start_dim] + (-1,))

    def backward(self, dout, input_grad=True):
        shape, dtype = self._saved()
        check_grad(self, dout, shape[:self.start_dim] + (math.prod(shape[self.start_dim:]),), dtype)
        self.cache = None
        return dout.reshape(shape)


class Identity(Module):
    """Returns its input, as ``torch.nn.Identity``; the default shortcut of ``Residual``.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> nn.Identity()(np.ones((2, 3), np.float32)).shape
        (2, 3)
    """

    def forward(self, x):
        self.cache = (x.shape, x.dtype)
        return x

    def backward(self, dout, input_grad=True):
        shape, dtype = self._saved()
        check_grad(self, dout, shape, dtype)
        self.cache = None
        return dout
