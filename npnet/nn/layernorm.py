"""LayerNorm: normalise each sample over its last dims, as ``torch.nn.LayerNorm``."""
import numpy as np

from ..kernels.layernorm import layernorm_backward, layernorm_forward
from ._checks import check_grad, check_input
from .module import Module, Parameter


class LayerNorm(Module):
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over the last ``len(normalized_shape)`` dims.

    The variance is the biased one (divided by the count), as PyTorch's; no running statistics:
    train and eval are the same function. ``elementwise_affine=False`` has no parameters;
    ``bias=False`` keeps only ``weight``. Cache: the input, its per-sample mean and 1 / std.
    The math, forward and backward, is ``kernels.layernorm``'s (its NumPy twins
    ``layernorm_forward_ref`` / ``layernorm_backward_ref`` are the readable version; ``with
    kernels.use_reference():`` runs them).

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
        D = int(np.prod(self.normalized_shape))
        w = self.weight.data if self.weight is not None else None
        b = self.bias.data if self.bias is not None else None
        x2 = x.reshape(-1, D)  # (R, D): one sample's normalised features a row
        y, mean, rstd = layernorm_forward(x2, w, b, self.eps)
        self.cache = (x2, mean, rstd, x.shape)
        return y.reshape(x.shape)

    def backward(self, dout, input_grad=True):
        x2, mean, rstd, shape = self._saved()
        check_grad(self, dout, shape, x2.dtype)
        self.cache = None
        w = self.weight.data if self.weight is not None else None
        dx, dw, db = layernorm_backward(dout.reshape(x2.shape), x2, mean, rstd, w, input_grad)
        if self.weight is not None and self.weight.requires_grad:
            self.weight.grad += dw.reshape(self.normalized_shape)
        if self.bias is not None and self.bias.requires_grad:
            self.bias.grad += db.reshape(self.normalized_shape)
        return dx.reshape(shape) if input_grad else None
