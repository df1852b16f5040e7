"""Conv2d: im2col + one GEMM per image, or Winograd for 3x3 stride-1 kernels (``npnet.kernels.conv``).

To read what a convolution computes, start at ``npnet.kernels.conv.conv2d_forward_ref`` (im2col, then
one matrix product per image) and ``npnet.kernels.im2col.im2col_ref``; ``docs/tutorials/02`` draws it.
"""
import numpy as np

from .. import init
from ..functional import conv_output_size, pair
from ..kernels.conv import ALGORITHMS, conv2d_backward, conv2d_forward, conv_algorithm
from ._checks import check_grad, check_input
from .module import Module, Parameter


class Conv2d(Module):
    """2-D cross-correlation, as ``torch.nn.Conv2d`` (zero padding, groups=1, dilation=1).

    Args:
        in_channels (int): C_in, the channels of the input.
        out_channels (int): C_out, the channels of the output (the number of filters).
        kernel_size (int or tuple): (kh, kw), or one int for both.
        stride (int or tuple): (sh, sw), default 1.
        padding (int or tuple): zeros added on each side, (ph, pw), default 0.
        bias (bool): learn a bias per output channel (default True).
        rng: a ``numpy.random.Generator``, an int seed or None: the generator of the initialisation;
            None, the default, uses npnet's default generator (seeded by ``npnet.manual_seed``).
        dtype: the parameters' dtype, default ``np.float32``; the input must have the same one.
        algorithm (str or None): how the kernel computes the layer; see below.

    Shape:
        input: (N, C_in, H, W).
        output: (N, C_out, OH, OW) with OH = (H + 2 ph - kh) // sh + 1, OW likewise.

    Attributes:
        weight (Parameter): (C_out, C_in, kh, kw), PyTorch's layout and initialisation:
            ``kaiming_uniform_(a=sqrt(5))``, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in =
            C_in * kh * kw.
        bias (Parameter or None): (C_out,), U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    ``algorithm``: how the kernel computes the same function, ``"im2col"``, ``"winograd"``
    (F(2x2, 3x3)) or ``"winograd4"`` (F(4x4, 3x3)); the last two need a 3x3 kernel and stride 1.
    None (the default) takes a fixed rule, the same on every machine
    (``kernels.conv.conv_algorithm``: Winograd F(2x2) for 3x3 stride-1 layers with at least 16 input
    and output channels, im2col otherwise). ``npnet.tune(model, x)`` measures and sets it; ``repr``
    prints it. The algorithms agree to float rounding (``kernels/autotune.py``).

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> conv = nn.Conv2d(3, 16, kernel_size=3, padding=1, rng=0)
        >>> x = np.zeros((8, 3, 32, 32), dtype=np.float32)
        >>> conv(x).shape
        (8, 16, 32, 32)
        >>> conv.backward(np.ones((8, 16, 32, 32), np.float32)).shape  # dx; adds into weight.grad
        (8, 3, 32, 32)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 rng=None, dtype=np.float32, algorithm=None):
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
        self.algorithm = algorithm

    @property
    def algorithm(self):
        """The kernel's algorithm (see the class docstring); assigning None restores the fixed rule."""
        return self.__dict__["_algorithm"]

    @algorithm.setter
    def algorithm(self, name):
        self.__dict__["_algorithm"] = self._checked_algorithm(name)

    def algorithms(self):
        """The algorithms that can compute this layer (``npnet.tune`` times each)."""
        winograd = self.kernel_size == (3, 3) and self.stride == (1, 1)
        return ALGORITHMS if winograd else ("im2col",)

    def _checked_algorithm(self, name):
        if name is None:
            return conv_algorithm(self.in_channels, self.out_channels, *self.kernel_size, *self.stride)
        if name not in self.algorithms():
            raise ValueError(f"Conv2d(kernel_size={self.kernel_size}, stride={self.stride}): algorithm "
                             f"must be one of {self.algorithms()} (or None for the fixed rule), got {name!r}")
        return name

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}, "
                f"algorithm={self.algorithm!r}")

    def output_shape(self, input_shape):
        """(C_out, OH, OW) for an input of shape (C_in, H, W)."""
        _, h, w = input_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return self.out_channels, conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)

    def forward(self, x):
        self.check_input(x)
        bias = None if self.bias is None else self.bias.data
        out = conv2d_forward(x, self.weight.data, bias, *self.stride, *self.padding, self.algorithm)
        self.cache = x
        return out

    def check_input(self, x):
        """A clear error unless x is an (N, C_in, H, W) array of the layer's dtype, large enough for
        the kernel; every path through the layer calls it first (``npnet.tune`` reads the shapes
        here)."""
        check_input(self, x, (4,), f"(N, {self.in_channels}, H, W)", self.in_channels)
        _, oh, ow = self.output_shape(x.shape[1:])
        if oh < 1 or ow < 1:
            raise ValueError(f"{self._label()}: input of shape {x.shape} is smaller than the kernel "
                             f"{self.kernel_size} with padding {self.padding}")

    def convolve(self, x, weight=None, bias=None, relu=False, residual=None):
        """The convolution of x by this layer's algorithm, keeping no cache, for the fused modules
        (``nn/fused.py``): ``weight``/``bias`` None for the layer's own, or BatchNorm-folded ones;
        ``relu`` and a ResNet block's shortcut output ``residual`` in the output pass."""
        self.check_input(x)
        if weight is None:
            weight, bias = self.weight.data, None if self.bias is None else self.bias.data
        return conv2d_forward(x, weight, bias, *self.stride, *self.padding, self.algorithm, relu, residual)

    def backward(self, dout, input_grad=True):
        x = self._saved()
        self.cache = None
        return self.gradients(x, dout, input_grad)

    def gradients(self, x, dout, input_grad=True):
        """The backward of ``self(x)`` for the upstream gradient dout: adds into weight.grad and
        bias.grad and returns dx (None unless ``input_grad``). ``backward`` and the fused modules
        call it."""
        check_grad(self, dout, (x.shape[0],) + self.output_shape(x.shape[1:]), x.dtype)
        dx, dw, db = conv2d_backward(x, self.weight.data, dout, *self.stride, *self.padding,
                                     need_dx=input_grad, need_dw=self.weight.requires_grad,
                                     algorithm=self.algorithm)
        if self.weight.requires_grad:
            self.weight.grad += dw
        if self.bias is not None and self.bias.requires_grad:
            self.bias.grad += db
        return dx
