"""Graph nodes that index: Slice (ONNX's Slice, positive steps), Pad (constant padding, the
adjoint of a slice) and Item (one array of a layer that returns several, as an RNN's
``(output, h_n)``). Each backward is the adjoint of its forward: zeros where nothing was read."""
import numpy as np

from ._checks import check_grad, check_input
from .module import Module

_ANY = "(*) floating"


class Slice(Module):
    """``x[starts:ends:steps]`` along ``axes``, as ONNX's ``Slice`` (and NumPy's basic slicing):
    negative bounds count from the end, bounds past the size are clamped.

    Args:
        starts (list of int): the first index taken on each axis.
        ends (list of int): the index past the last one on each axis (a huge end: to the end).
        axes (list of int or None): the sliced axes (negative counts from the end); None:
            0, 1, ..., len(starts) - 1.
        steps (list of int or None): positive steps (default 1 each).

    Shape:
        input: any shape with the axes.
        output: the input's, each sliced axis cut to its slice.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> nn.Slice([0, 0], [2 ** 62] * 2, axes=[2, 3], steps=[2, 2])(np.zeros((1, 3, 5, 4), np.float32)).shape
        (1, 3, 3, 2)
    """

    def __init__(self, starts, ends, axes=None, steps=None):
        super().__init__()
        self.starts, self.ends = tuple(int(s) for s in starts), tuple(int(e) for e in ends)
        self.axes = tuple(range(len(self.starts))) if axes is None else tuple(int(a) for a in axes)
        self.steps = (1,) * len(self.starts) if steps is None else tuple(int(s) for s in steps)
        if not len(self.starts) == len(self.ends) == len(self.axes) == len(self.steps):
            raise ValueError(f"Slice: starts, ends, axes and steps need one entry per axis, got "
                             f"{self.starts}, {self.ends}, {self.axes}, {self.steps}")
        if min(self.steps, default=1) < 1:
            raise ValueError(f"Slice: steps must be positive, got {self.steps}")

    def extra_repr(self):
        return f"starts={self.starts}, ends={self.ends}, axes={self.axes}, steps={self.steps}"

    def _index(self, ndim):
        index = [slice(None)] * ndim
        for s, e, a, k in zip(self.starts, self.ends, self.axes, self.steps):
            if not -ndim <= a < ndim:
                raise ValueError(f"{self._label()}: axis {a} of an input of {ndim} dims")
            index[a % ndim] = slice(s, e, k)
        return tuple(index)

    def forward(self, x):
        check_input(self, x, range(1, 33), _ANY)
        index = self._index(x.ndim)
        out = np.ascontiguousarray(x[index])
        self.cache = (x.shape, out.shape, x.dtype, index)
        return out

    def backward(self, dout, input_grad=True):
        shape, out_shape, dtype, index = self._saved()
        check_grad(self, dout, out_shape, dtype)
        self.cache = None
        if not input_grad:
            return None
        dx = np.zeros(shape, dtype)
        dx[index] = dout  # the elements not read get no gradient
        return dx


class Pad(Module):
    """Constant padding, as ONNX's ``Pad`` (mode "constant"): ``pads`` holds the begins of every
    axis, then the ends (``[x1_begin, x2_begin, ..., x1_end, x2_end, ...]``), non-negative.

    Args:
        pads (list of int): 2 * rank sizes.
        value (float): the padding value (default 0).

    Shape:
        input: (d_0, ..., d_{n-1}) with n = len(pads) // 2.
        output: (d_i + begin_i + end_i for each axis i).

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> nn.Pad([0, 2, 0, 0, 0, 3, 0, 0])(np.ones((1, 4, 2, 2), np.float32)).shape
        (1, 9, 2, 2)
    """

    def __init__(self, pads, value=0.0):
        super().__init__()
        self.pads, self.value = tuple(int(p) for p in pads), float(value)
        if len(self.pads) % 2 or min(self.pads, default=0) < 0:
            raise ValueError(f"Pad: pads must be 2 * rank non-negative sizes, got {self.pads}")

    def extra_repr(self):
        return f"pads={self.pads}" + (f", value={self.value}" if self.value else "")

    def forward(self, x):
        n = len(self.pads) // 2
        check_input(self, x, (n,), f"{n} dims")
        widths = list(zip(self.pads[:n], self.pads[n:]))
        out = np.pad(x, widths, constant_values=x.dtype.type(self.value))
        index = tuple(slice(b, b + d) for (b, _), d in zip(widths, x.shape))
        self.cache = (out.shape, out.dtype, index)
        return out

    def backward(self, dout, input_grad=True):
        shape, dtype, index = self._saved()
        check_grad(self, dout, shape, dtype)
        self.cache = None
        return np.ascontiguousarray(dout[index]) if input_grad else None  # the padding is constant


class Item(Module):
    """One array of what a layer returns, e.g. ``h_n`` of an LSTM's ``(output, (h_n, c_n))``:
    ``path`` ``(1, 0)``. Its backward returns the gradient of the whole structure, with None for
    the arrays not taken (the recurrent layers read None as zeros), so a ``Graph`` node can read
    each output of a recurrent layer apart; ``Graph`` adds the structures of several readers.

    Args:
        path (list of int): the indices into the nested tuples, outermost first.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> take = nn.Item((1, 0))
        >>> take((np.zeros(2), (np.ones(3), np.zeros(3)))).tolist()
        [1.0, 1.0, 1.0]
        >>> take.backward(np.ones(3))[1][1] is None
        True
    """

    def __init__(self, path):
        super().__init__()
        self.path = tuple(int(i) for i in path)

    def extra_repr(self):
        return f"path={self.path}"

    def forward(self, value):
        skeleton, part = _skeleton(value), value
        for depth, i in enumerate(self.path):
            if not isinstance(part, tuple) or not -len(part) <= i < len(part):
                raise ValueError(f"{self._label()}: no item {self.path[:depth + 1]} in the value")
            part = part[i]
        self.cache = (skeleton, part.shape, part.dtype)
        return part

    def backward(self, dout, input_grad=True):
        skeleton, shape, dtype = self._saved()
        check_grad(self, dout, shape, dtype)
        self.cache = None
        return _place(skeleton, self.path, dout) if input_grad else None


def _skeleton(value):
    """The nesting of tuples in ``value``, None for each array."""
    return tuple(_skeleton(v) for v in value) if isinstance(value, tuple) else None


def _place(skeleton, path, g):
    """``skeleton`` with ``g`` at ``path`` and None elsewhere."""
    if not path:
        return g
    return tuple(_place(s, path[1:], g) if i == path[0] % len(skeleton) else _nones(s)
                 for i, s in enumerate(skeleton))


def _nones(skeleton):
    return None if skeleton is None else tuple(_nones(s) for s in skeleton)
