"""Converters of the element-wise operators: activations, softmax, Add and Mul, GELU's erf pattern."""
import numpy as np

from .. import nn
from .registry import Unsupported, converter, float32_value, one_input


# -- element-wise ---------------------------------------------------------------------------------
@converter("Relu")
def relu(node, ctx):
    return one_input(node, ctx, nn.ReLU())


@converter("LeakyRelu")
def leaky_relu(node, ctx):
    return one_input(node, ctx, nn.LeakyReLU(float32_value(ctx.attr(node, "alpha", 0.01))))


@converter("Sigmoid")
def sigmoid(node, ctx):
    return one_input(node, ctx, nn.Sigmoid())


@converter("Tanh")
def tanh(node, ctx):
    return one_input(node, ctx, nn.Tanh())


@converter("Gelu")
def gelu(node, ctx):
    return one_input(node, ctx, nn.GELU(ctx.attr(node, "approximate", "none")))


@converter("Div")
def erf_gelu(node, ctx):
    """GELU as exporters before opset 20 write it: x / sqrt(2) -> Erf -> + 1 -> * x -> * 0.5."""
    x, out, chain = ctx.data(node, 0), node.output[0], []
    if not _is_scalar(ctx.constant(node, 1), np.sqrt(2)):
        raise Unsupported("Div is built only as GELU's x / sqrt(2)")
    for op, other in (("Erf", None), ("Add", 1.0), ("Mul", "x"), ("Mul", 0.5)):
        nxt = _gelu_step(ctx, out, x, op, other)
        if nxt is None:
            raise Unsupported("Div is built only as part of GELU's erf pattern "
                              "(x / sqrt(2) -> Erf -> Add 1 -> Mul x -> Mul 0.5)")
        chain.append(nxt)
        out = nxt.output[0]
    for n in chain:
        ctx.absorb(n)
    return nn.GELU(), [x], out


def _gelu_step(ctx, out, x, op, other):
    """The node after ``out`` in the GELU pattern if it is ``op`` with ``other`` as its other
    operand (None: no other operand, "x": the pattern's input, a number: that constant)."""
    nxt = ctx.follow(out, op)
    if nxt is None:
        return None
    others = [i for i in nxt.input if i != out]
    if other is None:
        good = not others
    elif other == "x":
        good = others == [x]
    else:
        good = len(others) == 1 and _is_scalar(ctx.value(others[0]), other)
    return nxt if good else None


def _is_scalar(value, target):
    return value is not None and value.size == 1 and np.isclose(float(value.reshape(-1)[0]), target, rtol=1e-6)


@converter("Softmax", "LogSoftmax")
def softmax(node, ctx):
    axis = ctx.attr(node, "axis", -1 if ctx.opset >= 13 else 1)
    rank = ctx.rank(node.input[0])
    if ctx.opset < 13 and axis != -1 and axis != (rank or 0) - 1:
        # before opset 13 the input was flattened to 2-D from axis on: one softmax over all the rest
        raise Unsupported(f"axis={axis} at opset {ctx.opset} normalises over all dims from axis on; "
                          "npnet's Softmax takes one dim (re-export with opset >= 13)")
    cls = nn.Softmax if node.op_type == "Softmax" else nn.LogSoftmax
    return one_input(node, ctx, cls(dim=axis))


@converter("Add", "Mul")
def add_mul(node, ctx):
    if node.op_type == "Mul":
        found = _exported_gelu(node, ctx)
        if found is not None:
            return found
    cls = nn.Add if node.op_type == "Add" else nn.Mul
    return cls(), [ctx.operand(node, 0), ctx.operand(node, 1)], node.output[0]


def _exported_gelu(node, ctx):
    """GELU as npnet's exporter writes it before opset 20: (x * 0.5) * (erf(x * 2^-0.5) + 1)."""
    consts = [ctx.value(name) for name in node.input]
    if len(node.input) != 2 or sum(c is not None for c in consts) != 1:
        return None
    x = node.input[0] if consts[1] is not None else node.input[1]
    if not _is_scalar(consts[1] if consts[1] is not None else consts[0], 2 ** -0.5):
        return None
    erf = _gelu_step(ctx, node.output[0], x, "Erf", None)
    one_plus = erf and _gelu_step(ctx, erf.output[0], x, "Add", 1.0)
    final = one_plus and ctx.follow(one_plus.output[0], "Mul")
    if final is None:
        return None
    half = ctx.producers.get(final.input[1] if final.input[0] == one_plus.output[0] else final.input[0])
    if half is None or half.op_type != "Mul" or ctx.follow(half.output[0], "Mul") is not final \
            or x not in half.input or not _is_scalar(ctx.value(half.input[1 - list(half.input).index(x)]), 0.5):
        return None
    for n in (erf, one_plus, half, final):
        ctx.absorb(n)
    ctx.named_after = final  # "encoder.layers.0.activation/Mul": the activation's name
    return nn.GELU(), [x], final.output[0]
