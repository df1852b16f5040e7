"""Small operations as modules, for ``Graph`` nodes: Add, Mul (NumPy broadcasting), Concat,
Reshape, Transpose and Constant. The binary ones take several inputs (``module(a, b)``) and their
backward returns a tuple with one gradient per input, as ``MultiheadAttention``'s does."""
import math

import numpy as np

from ._call import MultiInput
from ._checks import check_grad, check_input
from .module import Module

_ANY = "(*) floating"


def _operands(module, *xs):
    """The inputs, checked: floating arrays of one dtype (no silent upcast)."""
    for x in xs:
        check_input(module, x, range(0, 33), _ANY)
    if len({x.dtype for x in xs}) > 1:
        raise TypeError(f"{module._label()}: inputs of dtypes {[str(x.dtype) for x in xs]}; convert "
                        "them to one dtype")
    return xs


def _broadcast_shape(module, a, b):
    try:
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{module._label()}: shapes {a.shape} and {b.shape} do not broadcast "
                         "(NumPy's rules: trailing dims equal or 1)") from None


def unbroadcast(g, shape):
    """The gradient of a value broadcast from ``shape`` to ``g.shape``: ``g`` summed over the
    dims the broadcast added (leading ones) or stretched (size 1)."""
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead))) if lead else g
    stretched = tuple(d for d, n in enumerate(shape) if n == 1 and g.shape[d] != 1)
    return g.sum(axis=stretched, keepdims=True) if stretched else g


class _Binary(MultiInput, Module):
    def _check_dout(self, dout):
        shape, dtype = self._saved()[:2]
        return check_grad(self, dout, shape, dtype)


class Add(_Binary):
    """``a + b`` with NumPy broadcasting, as ``torch.add``; a residual sum in a ``Graph``.

    Shape:
        a, b: shapes that broadcast (trailing dims equal or 1), one floating dtype.
        output: the broadcast shape. ``backward`` returns ``(da, db)``, each summed back to its
        input's shape over the broadcast dims (None without ``input_grad``).

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> add = nn.Add()
        >>> add(np.ones((2, 3), np.float32), np.arange(3, dtype=np.float32)).tolist()
        [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]
        >>> [d.shape for d in add.backward(np.ones((2, 3), np.float32))]
        [(2, 3), (3,)]
    """

    def forward(self, a, b):
        _operands(self, a, b)
        shape = _broadcast_shape(self, a, b)
        self.cache = (shape, a.dtype, a.shape, b.shape)
        return a + b

    def backward(self, dout, input_grad=True):
        self._check_dout(dout)
        _, _, sa, sb = self.cache
        self.cache = None
        return (unbroadcast(dout, sa), unbroadcast(dout, sb)) if input_grad else None


class Mul(_Binary):
    """``a * b`` element-wise with NumPy broadcasting, as ``torch.mul``; caches both inputs.

    Shape:
        a, b: shapes that broadcast, one floating dtype.
        output: the broadcast shape. ``backward`` returns ``(dout * b, dout * a)``, each summed
        back to its input's shape (None without ``input_grad``).

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> mul = nn.Mul()
        >>> mul(np.full((2, 3), 2.0, np.float32), np.arange(3, dtype=np.float32)).tolist()
        [[0.0, 2.0, 4.0], [0.0, 2.0, 4.0]]
        >>> [d.tolist() for d in mul.backward(np.ones((2, 3), np.float32))][1]
        [4.0, 4.0, 4.0]
    """

    def forward(self, a, b):
        _operands(self, a, b)
        shape = _broadcast_shape(self, a, b)
        self.cache = (shape, a.dtype, a, b)
        return a * b

    def backward(self, dout, input_grad=True):
        self._check_dout(dout)
        _, _, a, b = self.cache
        self.cache = None
        return (unbroadcast(dout * b, a.shape), unbroadcast(dout * a, b.shape)) if input_grad else None


class Concat(MultiInput, Module):
    """Joins its inputs along ``dim``, as ``torch.cat(xs, dim)``.

    Args:
        dim (int): the axis to join along (negative counts from the end), default 1 (channels).

    Shape:
        inputs: arrays of one dtype and rank, equal but for ``dim``.
        output: the inputs' shape with ``dim`` the sum of theirs. ``backward`` returns one slice of
        ``dout`` per input.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> cat = nn.Concat(dim=1)
        >>> cat(np.zeros((2, 3, 4, 4), np.float32), np.ones((2, 5, 4, 4), np.float32)).shape
        (2, 8, 4, 4)
        >>> [d.shape for d in cat.backward(np.ones((2, 8, 4, 4), np.float32))]
        [(2, 3, 4, 4), (2, 5, 4, 4)]
    """

    def __init__(self, dim=1):
        super().__init__()
        self.dim = int(dim)

    def extra_repr(self):
        return f"dim={self.dim}"

    def forward(self, *xs):
        _operands(self, *xs)
        ranks = {x.ndim for x in xs}
        if not xs or len(ranks) > 1 or not -xs[0].ndim <= self.dim < xs[0].ndim:
            raise ValueError(f"{self._label()}: expected one or more inputs of one rank with dim "
                             f"{self.dim}, got shapes {[x.shape for x in xs]}")
        axis = self.dim % xs[0].ndim
        try:
            out = np.concatenate(xs, axis=axis)
        except ValueError:
            raise ValueError(f"{self._label()}: shapes {[x.shape for x in xs]} differ outside "
                             f"dim {self.dim}") from None
        self.cache = (out.shape, out.dtype, axis, np.cumsum([x.shape[axis] for x in xs])[:-1])
        return out

    def backward(self, dout, input_grad=True):
        shape, dtype, axis, cuts = self._saved()
        check_grad(self, dout, shape, dtype)
        self.cache = None
        if not input_grad:
            return None
        return tuple(np.ascontiguousarray(d) for d in np.split(dout, cuts, axis=axis))


class Reshape(Module):
    """``x.reshape(shape)`` with ONNX's ``Reshape`` rules: -1 is inferred, and 0 copies the
    input's size at that position (so ``(0, -1)`` keeps the batch, whatever its size).

    Args:
        shape (tuple of int): the output shape; at most one -1.

    Shape:
        input: any shape with as many elements as ``shape`` describes.
        output: ``shape``, its 0 and -1 resolved.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> nn.Reshape((0, -1))(np.zeros((5, 2, 3, 3), np.float32)).shape
        (5, 18)
    """

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        if sum(s == -1 for s in self.shape) > 1 or min(self.shape, default=0) < -1:
            raise ValueError(f"Reshape: shape takes sizes >= 0 and at most one -1, got {self.shape}")

    def extra_repr(self):
        return f"shape={self.shape}"

    def forward(self, x):
        check_input(self, x, range(0, 33), _ANY)
        if any(s == 0 and d >= x.ndim for d, s in enumerate(self.shape)):
            raise ValueError(f"{self._label()}: a 0 past the input's {x.ndim} dims (input {x.shape})")
        target = tuple(x.shape[d] if s == 0 else s for d, s in enumerate(self.shape))
        known = math.prod(s for s in target if s != -1)
        if (x.size != known) if -1 not in target else (known == 0 or x.size % known):
            raise ValueError(f"{self._label()}: cannot reshape input of shape {x.shape} "
                             f"({x.size} elements) to {target}")
        out = x.reshape(target)
        self.cache = (x.shape, out.shape, x.dtype)
        return out

    def backward(self, dout, input_grad=True):
        shape, out_shape, dtype = self._saved()
        check_grad(self, dout, out_shape, dtype)
        self.cache = None
        return dout.reshape(shape)


class Transpose(Module):
    """Permutes the dims, as ``torch.permute(x, dims)`` (ONNX's ``Transpose(perm)``).

    Args:
        dims (tuple of int): the input dim each output dim takes, a permutation of 0..ndim-1.

    Shape:
        input: (d_0, ..., d_{n-1}) with n = len(dims).
        output: (d_dims[0], ..., d_dims[n-1]).

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> nn.Transpose((0, 2, 3, 1))(np.zeros((2, 3, 4, 5), np.float32)).shape
        (2, 4, 5, 3)
    """

    def __init__(self, dims):
        super().__init__()
        self.dims = tuple(int(d) for d in dims)
        if sorted(self.dims) != list(range(len(self.dims))):
            raise ValueError(f"Transpose: dims must be a permutation of 0..n-1, got {self.dims}")

    def extra_repr(self):
        return f"dims={self.dims}"

    def forward(self, x):
        n = len(self.dims)
        check_input(self, x, (n,), f"{n} dims")
        out = x.transpose(self.dims)
        self.cache = (out.shape, out.dtype)
        return out

    def backward(self, dout, input_grad=True):
        shape, dtype = self._saved()
        check_grad(self, dout, shape, dtype)
        self.cache = None
        return np.ascontiguousarray(dout.transpose(np.argsort(self.dims)))


class Constant(MultiInput, Module):
    """A node with no input that returns a fixed array (a buffer: ``astype`` converts it and the
    state dict holds it as ``"<name>.value"``), e.g. the scale of a ``Mul`` in a ``Graph``.

    Args:
        value: the floating array to return (a ``numpy.ndarray``, copied).

    Shape:
        output: ``value``'s shape. ``backward`` returns ``()``: nothing reads into it.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> nn.Constant(np.array([0.5], np.float32))().tolist()
        [0.5]
    """

    def __init__(self, value):
        super().__init__()
        value = np.array(value, copy=True)
        if not np.issubdtype(value.dtype, np.floating):
            raise TypeError(f"Constant: value must be a floating array, got dtype {value.dtype}")
        self.register_buffer("value", value)

    def extra_repr(self):
        return f"shape={self.value.shape}"

    def forward(self):
        return self.value

    def backward(self, dout, input_grad=True):
        return ()
