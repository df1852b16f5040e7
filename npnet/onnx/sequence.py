"""Converters of Gather (an Embedding), LayerNormalization, ReduceMean, Slice and Pad.

A Slice of a computed value by constant bounds is an ``nn.Slice``, a Pad an ``nn.Pad``. ResNet's
option-A shortcut (Slice with steps, then Pad) and mknet's MultiKernelConv (its gate's weights
sliced per branch, then Mul and Add) are left as these generic nodes rather than rebuilt as the
zoo's blocks: each node is exact and has its own backward, so the model trains the same; the
shortcut has no parameters, and the gate's and convolutions' keep their state-dict keys through
their initializers' names (``3.gate.fc1.weight``); and the import stays on the public layers,
not the zoo's classes. A Slice of a *constant* cut to a length read
at run time is built only where it is a function npnet knows: the sinusoidal table of a
``PositionalEncoding`` added to the value whose length it reads, or the causal mask; other such
slices stop the load with an error naming the node.
"""
import numpy as np

from .. import nn
from .dims import Dim
from .modules import CausalMask, Mean
from .registry import Unsupported, converter, float32_value, load_param, one_input


@converter("Gather")
def gather(node, ctx):
    """weight[ids] with a constant float weight and computed integer ids: Embedding."""
    if ctx.attr(node, "axis", 0) != 0:
        raise Unsupported(f"axis={ctx.attr(node, 'axis')}; npnet builds a Gather of a weight's rows "
                          "(axis 0) as an Embedding")
    if ctx.constant(node, 0) is None:
        raise Unsupported("a Gather of a computed value; npnet builds a Gather of a constant weight's "
                          "rows by token ids (an Embedding), or of sizes read by Shape")
    w = ctx.param(node, 0)
    if w.ndim != 2:
        raise Unsupported(f"the table has shape {w.shape}; an Embedding's weight is (num, dim)")
    m = nn.Embedding(*w.shape, rng=np.random.default_rng(0))
    load_param(m.weight, w, "the weight")
    return m, [ctx.data(node, 1)], node.output[0]


@converter("LayerNormalization")
def layer_norm(node, ctx):
    """LayerNorm over the last len(scale.shape) dims; a stash_type other than float is refused."""
    scale, bias = ctx.param(node, 1), ctx.param(node, 2, optional=True)
    axis, k = ctx.attr(node, "axis", -1), scale.ndim
    rank = ctx.rank(node.input[0])
    if axis != -k and not (rank is not None and axis == rank - k):
        raise Unsupported(f"axis={axis} with a scale of shape {scale.shape}; npnet's LayerNorm "
                          "normalises over the dims the scale covers, the last ones")
    m = nn.LayerNorm(scale.shape, float32_value(ctx.attr(node, "epsilon", 1e-5)), bias=bias is not None)
    load_param(m.weight, scale, "the scale")
    if bias is not None:
        load_param(m.bias, bias, "the bias")
    return one_input(node, ctx, m)


@converter("ReduceMean")
def reduce_mean(node, ctx):
    """Mean over constant axes: an attribute before opset 18, an input from 18 on."""
    axes = ctx.attr(node, "axes") if ctx.opset < 18 else ctx.constant(node, 1)
    if axes is None:
        raise Unsupported("no axes (a mean over all dims), or axes computed in the graph")
    keep = ctx.attr(node, "keepdims", 1)
    return one_input(node, ctx, Mean([int(a) for a in np.reshape(axes, -1)], keepdim=bool(keep)))


@converter("Pad")
def pad(node, ctx):
    """Constant padding by constant, non-negative pads (no axes input)."""
    if ctx.attr(node, "mode", "constant") != "constant":
        raise Unsupported(f"mode={ctx.attr(node, 'mode')!r}; npnet pads with a constant")
    if ctx.opset < 11:  # pads and value were attributes
        pads, value = np.array(ctx.attr(node, "pads", []), np.int64), np.array(ctx.attr(node, "value", 0.0))
    else:
        pads, value = ctx.constant(node, 1), ctx.constant(node, 2, np.zeros(()))
    if pads is None or value is None or (len(node.input) > 3 and node.input[3]):
        raise Unsupported("pads, the value or the axes are computed in the graph (or axes are given)")
    if pads.min(initial=0) < 0:
        raise Unsupported(f"negative pads {pads.tolist()} (a crop)")
    return one_input(node, ctx, nn.Pad(pads.tolist(), float32_value(np.reshape(value, -1)[0])))


@converter("Slice")
def slice_(node, ctx):
    if ctx.opset < 10:  # the bounds were attributes
        bounds = [ctx.attr(node, a) for a in ("starts", "ends", "axes")] + [None]
        bounds = [None if b is None else np.array(b, np.int64) for b in bounds]
        return one_input(node, ctx, nn.Slice(*(None if b is None else b.tolist() for b in bounds)))
    bounds = [ctx.constant(node, i) for i in range(1, 5)]
    if ctx.constant(node, 0) is not None:
        return _constant_slice(node, ctx)
    if any(b is None for b in bounds[:2]) or any(b is None and i < len(node.input) and node.input[i]
                                                   for i, b in zip(range(3, 5), bounds[2:])):
        raise Unsupported("the bounds are computed in the graph; npnet builds a Slice by constant bounds")
    starts, ends, axes, steps = (None if b is None else b.reshape(-1).tolist() for b in bounds)
    if steps is not None and min(steps) < 1:
        raise Unsupported(f"steps {steps}; npnet's Slice takes positive steps")
    return one_input(node, ctx, nn.Slice(starts, ends, axes, steps))


def _constant_slice(node, ctx):
    """A constant table cut to the length of a value v: a PositionalEncoding added to v, or
    the causal mask of v's length."""
    table, ends = ctx.constant(node, 0), ctx.dims.get(node.input[2])
    starts, axes = ctx.constant(node, 1), ctx.constant(node, 3)
    lengths = ends if ends and all(isinstance(d, Dim) for d in ends) else None
    if lengths is None or starts is None or starts.any() or (len(node.input) > 4 and node.input[4]):
        raise Unsupported("a Slice of a constant is built only with bounds 0 to lengths read from a "
                          "value at run time (a positional table or a causal mask)")
    axes = list(range(len(lengths))) if axes is None else axes.reshape(-1).tolist()
    found = _positional(node, ctx, table, lengths, axes) if len(lengths) == 1 else None
    if found is not None:
        return found
    v, axis = lengths[0]
    if axes == [0, 1] and lengths == [lengths[0]] * 2 and _is_causal(table):
        return CausalMask(axis), [v], node.output[0]
    raise Unsupported("a Slice of a constant to lengths read at run time is built only as a "
                      "PositionalEncoding's table added to the value it reads, or a causal mask")


def _is_causal(table):
    return table.ndim == 2 and table.shape[0] == table.shape[1] and \
        np.array_equal(table, nn.causal_mask(table.shape[0], dtype=table.dtype))


def _positional(node, ctx, table, lengths, axes):
    """x + pe[:L] (L read from x's dim 1, batch-first) or x + pe[:L][:, None] (dim 0), with
    pe the sinusoidal table of nn.PositionalEncoding: that layer reading x, without dropout."""
    (x, axis), out = lengths[0], node.output[0]
    if axes != [0] or table.ndim != 2 or axis not in (0, 1):
        return None
    unsq = ctx.follow(out, "Unsqueeze") if axis == 0 else None
    add = ctx.follow(unsq.output[0] if unsq is not None else out, "Add")
    if add is None or (axis == 0 and unsq is None) or x not in add.input:
        return None
    m = nn.PositionalEncoding(table.shape[1], 0.0, table.shape[0], batch_first=axis == 1)
    if not np.array_equal(table.astype(np.float32), m.pe.astype(np.float32)):
        return None
    for n in (unsq, add):
        if n is not None:
            ctx.absorb(n)
    ctx.named_after = add  # "pos/Add": the layer "pos"
    return m, [x], add.output[0]
