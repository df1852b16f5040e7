"""Shape arithmetic done at load time: the Shape -> Gather -> Unsqueeze -> Concat nodes with which
torch.onnx writes ``x.view(x.size(0), -1)`` for a dynamic batch, and the Shape -> Slice with which
npnet's exporter reads a sequence's length. Each such value is a list of
dims, each an int or a ``Dim`` (size ``axis`` of the computed value ``value``, known only when the
model runs); a Reshape to such a list is an ``nn.Reshape`` with 0 where it keeps the size its own
input has at that place (ONNX's 0), e.g. ``(0, -1)``."""
from collections import namedtuple

import numpy as np

from .registry import Unsupported

Dim = namedtuple("Dim", "value axis")


def fold_dims(ctx, node):
    """Computes ``node`` into ``ctx.dims`` if it is shape arithmetic; True if it was."""
    fold = _OPS.get(node.op_type)
    out = fold(ctx, node) if fold is not None else None
    if out is None:
        return False
    ctx.dims[node.output[0]] = out
    return True


def reshape_target(ctx, node):
    """The constant shape of the Reshape ``node`` as ints (0: keep the input's size there), or None
    when its shape is neither a constant nor shape arithmetic."""
    shape = ctx.constant(node, 1)
    if shape is not None:
        return [int(s) for s in shape.reshape(-1)]
    dims = ctx.dims.get(node.input[1])
    if dims is None:
        return None
    x = node.input[0]
    target = [0 if d == Dim(x, p) else d for p, d in enumerate(dims)]
    other = [d for d in target if isinstance(d, Dim)]
    if other:
        raise Unsupported(f"the shape reads size {other[0].axis} of {other[0].value!r} at another place; "
                          "npnet's Reshape keeps sizes of its input at the same place only")
    return target


def _ints(ctx, name):
    """A list of dims: shape arithmetic done earlier, or a constant integer array; else None."""
    if name in ctx.dims:
        return ctx.dims[name]
    value = ctx.value(name)
    if value is not None and np.issubdtype(value.dtype, np.integer):
        return [int(v) for v in value.reshape(-1)]
    return None


def _shape(ctx, node):
    rank = ctx.rank(node.input[0])
    if rank is None:
        return None
    dims = [Dim(node.input[0], i) for i in range(rank)]
    return dims[ctx.attr(node, "start", 0):ctx.attr(node, "end", rank)]


def _gather(ctx, node):
    dims, idx = _ints(ctx, node.input[0]), ctx.value(node.input[1])
    if dims is None or idx is None or ctx.attr(node, "axis", 0) != 0:
        return None
    return [dims[int(i)] for i in idx.reshape(-1)]


def _same(ctx, node):
    """Unsqueeze, Squeeze, Cast: the same dims (a scalar and a 1-element list are one list here)."""
    return _ints(ctx, node.input[0]) if node.input[0] in ctx.dims else None


def _slice(ctx, node):
    """A Slice of dims with constant bounds on axis 0 (the exporter reads a length as
    ``Slice(Shape(x), [1], [2])``)."""
    dims = _ints(ctx, node.input[0]) if node.input[0] in ctx.dims else None
    bounds = [_ints(ctx, name) if name else None for name in list(node.input[1:5]) + [""] * 4][:4]
    starts, ends, axes, steps = bounds
    if dims is None or starts is None or ends is None or len(starts) != 1 or axes not in (None, [0]) \
            or steps not in (None, [1]) or any(isinstance(b, Dim) for b in starts + ends):
        return None
    return dims[starts[0]:ends[0]]


def _concat(ctx, node):
    parts = [_ints(ctx, name) for name in node.input]
    if not any(name in ctx.dims for name in node.input) or any(p is None for p in parts):
        return None
    return [d for p in parts for d in p]


_OPS = {"Shape": _shape, "Gather": _gather, "Unsqueeze": _same, "Squeeze": _same, "Cast": _same,
        "Concat": _concat, "Slice": _slice}
