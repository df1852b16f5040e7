"""Max and average pooling (Numba kernels in ``npnet.kernels.pooling``) and global average pooling."""
import numpy as np

from ..kernels.pooling import (avgpool2d_backward, avgpool2d_forward, maxpool2d_backward,
                               maxpool2d_forward)
from ..functional import conv_output_size, pair
from ._checks import check_grad, check_input
from .module import Module


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = pair(kernel_size, "kernel_size", name)
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", name)
        self.padding = pair(padding, "padding", name)
        if min(self.kernel_size) < 1 or min(self.stride) < 1:
            raise ValueError(f"{name}: kernel_size and stride must be >= 1, got "
                             f"{self.kernel_size}, {self.stride}")
        if any(p < 0 or p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{name}: padding must be between 0 and half the kernel size "
                             f"{self.kernel_size}, got {self.padding}")

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def _out_shape(self, x):
        check_input(self, x, (4,), "(N, C, H, W)")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = conv_output_size(x.shape[2], kh, sh, ph), conv_output_size(x.shape[3], kw, sw, pw)
        if oh < 1 or ow < 1:
            raise ValueError(f"{self._label()}: input of shape {x.shape} is smaller than the window")
        return x.shape[:2] + (oh, ow)

    def _args(self):
        return (*self.kernel_size, *self.stride, *self.padding)


# the arguments and shapes of both pooling classes, written once ({pad}: how padding counts)
_ARGS_DOC = '''    Args:
        kernel_size (int or tuple): the window (kh, kw), or one int for both.
        stride (int, tuple or None): the step (sh, sw); None (the default) is ``kernel_size``.
        padding (int or tuple): {pad} padding on each side, at most half the window (default 0).

    Shape:
        input: (N, C, H, W).
        output: (N, C, OH, OW) with OH = (H + 2 ph - kh) // sh + 1, OW likewise.
'''


class MaxPool2d(_Pool2d):
    __doc__ = """2-D max pooling, as ``torch.nn.MaxPool2d``.

    Padding counts as -inf; the gradient goes to the first maximum of each window (row-major),
    like PyTorch.

{args}
    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> nn.MaxPool2d(2)(np.zeros((4, 3, 32, 32), np.float32)).shape
        (4, 3, 16, 16)
    """.format(args=_ARGS_DOC.format(pad="-inf"))

    def forward(self, x):
        self._out_shape(x)
        out, argmax = maxpool2d_forward(x, *self._args())
        self.cache = (argmax, x.shape, x.dtype)
        return out

    def backward(self, dout, input_grad=True):
        argmax, shape, dtype = self._saved()
        check_grad(self, dout, argmax.shape, dtype)
        self.cache = None
        return maxpool2d_backward(dout, argmax, shape[2], shape[3])


class AvgPool2d(_Pool2d):
    __doc__ = """2-D average pooling, as ``torch.nn.AvgPool2d``.

    Zero padding is counted in the average (PyTorch's default count_include_pad=True).

{args}
    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> nn.AvgPool2d(2)(np.ones((4, 3, 32, 32), np.float32)).shape
        (4, 3, 16, 16)
    """.format(args=_ARGS_DOC.format(pad="zero"))

    def forward(self, x):
        out_shape = self._out_shape(x)
        self.cache = (out_shape, x.shape, x.dtype)
        return avgpool2d_forward(x, *self._args())

    def backward(self, dout, input_grad=True):
        out_shape, shape, dtype = self._saved()
        check_grad(self, dout, out_shape, dtype)
        self.cache = None
        return avgpool2d_backward(dout, shape[2], shape[3], *self._args())


class GlobalAvgPool2d(Module):
    """Mean over the spatial dims, as ``torch.nn.AdaptiveAvgPool2d(1)`` followed by a flatten.

    Shape:
        input: (N, C, H, W).
        output: (N, C), ready for a ``Linear`` layer.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> nn.GlobalAvgPool2d()(np.ones((4, 64, 8, 8), np.float32)).shape
        (4, 64)
"""

    def forward(self, x):
        check_input(self, x, (4,), "(N, C, H, W)")
        self.cache = (x.shape, x.dtype)
        return x.mean(axis=(2, 3))

    def backward(self, dout, input_grad=True):
        shape, dtype = self._saved()
        check_grad(self, dout, shape[:2], dtype)
        self.cache = None
        scale = dtype.type(1.0 / (shape[2] * shape[3]))
        return np.broadcast_to((dout * scale)[:, :, None, None], shape).copy()  # (N, C, H, W)
