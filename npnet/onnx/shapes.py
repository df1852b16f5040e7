"""Converters of the operators that move or pass data: Flatten, Reshape, Transpose, Concat,
Identity, Dropout."""
from .. import nn
from .dims import reshape_target
from .registry import Unsupported, converter, float32_value, one_input


# -- shapes and pass-through ----------------------------------------------------------------------
@converter("Flatten")
def flatten(node, ctx):
    if ctx.attr(node, "axis", 1) != 1:
        raise Unsupported(f"axis={ctx.attr(node, 'axis')}; npnet's Flatten keeps dim 0 (axis=1)")
    return one_input(node, ctx, nn.Flatten(1))


@converter("Reshape")
def reshape(node, ctx):
    shape = reshape_target(ctx, node)
    if shape is None:
        raise Unsupported("the shape is computed in the graph; npnet builds a Reshape to a constant "
                          "shape, or to sizes of its own input (Shape -> Gather -> Concat)")
    if ctx.attr(node, "allowzero", 0) and 0 in shape:
        raise Unsupported("allowzero=1 with a 0 in the shape (an empty dim)")
    return one_input(node, ctx, nn.Reshape(shape))


@converter("Transpose")
def transpose(node, ctx):
    perm = ctx.attr(node, "perm")
    if perm is None:  # the default reverses the dims
        rank = ctx.rank(node.input[0])
        if rank is None:
            raise Unsupported("no perm and an input of unknown rank")
        perm = list(range(rank))[::-1]
    return one_input(node, ctx, nn.Transpose(perm))


@converter("Concat")
def concat(node, ctx):
    return nn.Concat(ctx.attr(node, "axis")), [ctx.operand(node, i) for i in range(len(node.input))], node.output[0]


@converter("Identity")
def identity(node, ctx):
    return one_input(node, ctx, nn.Identity())


@converter("Dropout")
def dropout(node, ctx):
    ratio = ctx.attr(node, "ratio", 0.5) if ctx.opset < 12 else ctx.constant(node, 1, 0.5)
    if ratio is None:
        raise Unsupported("the ratio is computed in the graph")
    return one_input(node, ctx, nn.Dropout(float32_value(ratio)))
