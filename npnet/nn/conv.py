"""Conv2d through im2col + one GEMM per image (see ``npnet.kernels.conv``)."""
import numpy as np

from .. import init, kernels
from ..functional import conv_output_size, pair
from ._checks import check_grad, check_input
from .module import Module, Parameter


class Conv2d(Module):
    """2-D cross-correlation, as ``torch.nn.Conv2d`` (zero padding, groups=1, dilation=1).

    Shape: input (N, C_in, H, W) -> output (N, C_out, OH, OW) with OH = (H + 2 ph - kh) // sh + 1.
    Weight (C_out, C_in, kh, kw), bias (C_out,); kernel_size, stride, padding: int or (h, w).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 rng=None, dtype=np.float32):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2d")
        self.stride = pair(stride, "stride", "Conv2d")
        self.padding = pair(padding, "padding", "Conv2d")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"Conv2d: need kernel_size >= 1, stride >= 1, padding >= 0, got "
                             f"{self.kernel_size}, {self.stride}, {self.padding}")
        shape = (self.out_channels, self.in_channels) + self.kernel_size
        self.weight = Parameter(np.zeros(shape, dtype=dtype))
        self.bias = Parameter(np.zeros(self.out_channels, dtype=dtype)) if bias else None
        init.default_weight_and_bias(self.weight, self.bias, rng)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")

    def output_shape(self, input_shape):
        """(C_out, OH, OW) for an input of shape (C_in, H, W)."""
        _, h, w = input_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return self.out_channels, conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)

    def forward(self, x):
        out = self.convolve(x)
        self.cache = x
        return out

    def forward_relu(self, x):
        """``relu(self(x))`` with the clamp in the convolution's output pass, keeping this layer's
        cache; the ReLU after it is handed the output (``ReLU.keep_output``, ``fusion.py``)."""
        out = self.convolve(x, relu=True)
        self.cache = x
        return out

    def convolve(self, x, relu=False, weights=None, residual=None):
        """This layer's convolution of x, plus ``residual`` if given (an array of the output's shape),
        clamped at 0 if relu; keeps no cache (``forward`` does). ``weights``: None for the layer's own,
        or a (weight, bias) pair to use instead (inference fusion passes BatchNorm-folded ones and a
        ResNet block's shortcut, ``fusion.py``)."""
        if weights is None:
            weights = self.weight.data, None if self.bias is None else self.bias.data
        w, b = weights
        check_input(self, x, (4,), f"(N, {self.in_channels}, H, W)", self.in_channels)
        _, oh, ow = self.output_shape(x.shape[1:])
        if oh < 1 or ow < 1:
            raise ValueError(f"{self._label()}: input of shape {x.shape} is smaller than the kernel "
                             f"{self.kernel_size} with padding {self.padding}")
        return kernels.ops.conv2d_forward(x, w, b, *self.stride, *self.padding, relu=relu, residual=residual)

    def backward(self, dout, input_grad=True):
        x = self._saved()
        check_grad(self, dout, (x.shape[0],) + self.output_shape(x.shape[1:]), x.dtype)
        dx, dw, db = kernels.ops.conv2d_backward(x, self.weight.data, dout, *self.stride, *self.padding,
                                             need_dx=input_grad, need_dw=self.weight.requires_grad)
        if self.weight.requires_grad:
            self.weight.grad += dw
        if self.bias is not None and self.bias.requires_grad:
            self.bias.grad += db
        self.cache = None
        return dx
