"""LayerNorm: normalise each sample over its last dims, as ``torch.nn.LayerNorm``."""
import numpy as np

from ._checks import check_grad, check_input
from .module import Module, Parameter


class LayerNorm(Module):
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over the last ``len(normalized_shape)`` dims.

    The variance is the biased one (divided by the count), as PyTorch's; no running statistics:
    train and eval are the same function. ``elementwise_affine=False`` has no parameters;
    ``bias=False`` keeps only ``weight``. Cache: the normalised input and 1 / std.

    Args:
        normalized_shape (int or tuple): the last dims to normalise over (an int for one dim).
        eps (float): added to the variance before its square root (default 1e-5).
        elementwise_affine (bool): learn ``weight`` (ones at start) and ``bias`` (zeros) of shape
            ``normalized_shape`` (default True).
        bias (bool): with ``elementwise_affine``, learn the bias too (default True).
        dtype: the parameters' dtype, default ``np.float32``.

    Shape:
        input: ``(*, *normalized_shape)``.
        output: same as the input.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> ln = nn.LayerNorm(8)
        >>> y = ln(np.arange(16, dtype=np.float32).reshape(2, 8))
        >>> np.allclose(y.mean(axis=-1), 0, atol=1e-6), y.shape
        (True, (2, 8))
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=np.float32):
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        self.eps, self.elementwise_affine = float(eps), bool(elementwise_affine)
        self.weight = self.bias = None
        if self.elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype=dtype))
            if bias:
                self.bias = Parameter(np.zeros(self.normalized_shape, dtype=dtype))

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"

    def forward(self, x):
        k = len(self.normalized_shape)
        check_input(self, x, range(k, 33), f"(*, {', '.join(map(str, self.normalized_shape))})")
        if x.shape[x.ndim - k:] != self.normalized_shape:
            raise ValueError(f"{self._label()}: expected input whose last dims are {self.normalized_shape}, "
                             f"got {x.shape}")
        axes = tuple(range(x.ndim - k, x.ndim))
        mu = x.mean(axis=axes, keepdims=True)
        xc = x - mu
        rstd = 1 / np.sqrt((xc * xc).mean(axis=axes, keepdims=True) + x.dtype.type(self.eps))
        xhat = xc * rstd  # (*, *normalized_shape)
        self.cache = (xhat, rstd, axes)
        if self.weight is None:
            return xhat
        out = xhat * self.weight.data
        return out + self.bias.data if self.bias is not None else out

    def backward(self, dout, input_grad=True):
        xhat, rstd, axes = self._saved()
        check_grad(self, dout, xhat.shape, xhat.dtype)
        self.cache = None
        lead = tuple(range(xhat.ndim - len(axes)))  # the sample dims that weight is shared over
        if self.weight is not None and self.weight.requires_grad:
            self.weight.grad += (dout * xhat).sum(axis=lead)
        if self.bias is not None and self.bias.requires_grad:
            self.bias.grad += dout.sum(axis=lead)
        if not input_grad:
            return None
        g = dout * self.weight.data if self.weight is not None else dout  # d loss / d xhat
        # the two means remove the directions that centring and scaling take out of x
        return rstd * (g - g.mean(axis=axes, keepdims=True)
                       - xhat * (g * xhat).mean(axis=axes, keepdims=True))
