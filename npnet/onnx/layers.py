"""Converters of the layers with weights or windows: Conv, Gemm, MatMul (+ Add),
BatchNormalization, MaxPool, AveragePool, GlobalAveragePool."""
import numpy as np

from .. import nn
from .attention import self_attention
from .modules import LinearNd
from .registry import Unsupported, converter, float32_value, load_param, one_input


def _rng():
    # a local generator: the initial values are overwritten, npnet's default generator stays untouched
    return np.random.default_rng(0)


# -- convolution, linear --------------------------------------------------------------------------
def _window(node, ctx, kernel):
    """(stride, padding) of a Conv / pooling node as npnet's symmetric pairs."""
    stride = tuple(ctx.attr(node, "strides", [1, 1]))
    if list(ctx.attr(node, "dilations", [1, 1])) != [1, 1]:
        raise Unsupported(f"dilations {ctx.attr(node, 'dilations')} (npnet's layers have dilation 1)")
    auto_pad = ctx.attr(node, "auto_pad", "NOTSET")
    if auto_pad == "VALID":
        return stride, (0, 0)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if stride != (1, 1) or kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
            raise Unsupported(f"auto_pad={auto_pad} with stride {stride} and kernel {kernel} pads the "
                              "sides unequally; npnet pads both sides alike")
        return stride, (kernel[0] // 2, kernel[1] // 2)
    top, left, bottom, right = ctx.attr(node, "pads", [0, 0, 0, 0])
    if (top, left) != (bottom, right):
        raise Unsupported(f"pads {[top, left, bottom, right]} are asymmetric; npnet pads both sides alike")
    return stride, (top, left)


@converter("Conv")
def conv(node, ctx):
    w = ctx.param(node, 1)
    if w.ndim != 4:
        raise Unsupported(f"a {w.ndim - 2}-D convolution (weight {w.shape}); npnet has Conv2d only")
    if ctx.attr(node, "group", 1) != 1:
        raise Unsupported(f"group={ctx.attr(node, 'group')} (npnet's Conv2d has groups=1)")
    b = ctx.param(node, 2, optional=True)
    stride, padding = _window(node, ctx, w.shape[2:])
    m = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], stride, padding, bias=b is not None, rng=_rng())
    load_param(m.weight, w, "the weight")
    if b is not None:
        load_param(m.bias, b, "the bias")
    return one_input(node, ctx, m)


def _linear(weight, bias, cls=nn.Linear):
    """Linear (or LinearNd) with weight (out, in) and bias (out,) or None."""
    m = cls(weight.shape[1], weight.shape[0], bias=bias is not None, rng=_rng())
    load_param(m.weight, weight, "the weight")
    if bias is not None:
        load_param(m.bias, np.broadcast_to(bias.reshape(-1), (weight.shape[0],)), "the bias")
    return m


def _bias_shape_ok(c, out):
    return c.ndim <= 2 and c.size in (1, out) and (c.ndim < 2 or c.shape[0] == 1)


@converter("Gemm")
def gemm(node, ctx):
    """Y = alpha A B + beta C with B a weight: Linear(weight = alpha B^T (or B with transB))."""
    if ctx.attr(node, "transA", 0):
        raise Unsupported("transA=1 (the input transposed); npnet's Linear takes (N, in_features)")
    b = ctx.param(node, 1)
    weight = b if ctx.attr(node, "transB", 0) else b.T
    weight = weight * np.float32(ctx.attr(node, "alpha", 1.0))
    c = ctx.param(node, 2, optional=True)
    if c is not None:
        if not _bias_shape_ok(c, weight.shape[0]):
            raise Unsupported(f"C of shape {c.shape} is not a bias of {weight.shape[0]} features")
        c = c * np.float32(ctx.attr(node, "beta", 1.0))
    return one_input(node, ctx, _linear(weight, c))


@converter("MatMul")
def matmul(node, ctx):
    """x @ W with W a (in, out) weight: Linear (LinearNd for x of rank other than 2); an Add of a
    constant (out,) after it is its bias. x @ W_in^T starting npnet's self-attention pattern is
    that attention (``attention.py``)."""
    if ctx.constant(node, 1) is None:
        raise Unsupported("a product of two computed values; npnet builds x @ W for a constant W, and "
                          "the products of self-attention as npnet's exporter writes them")
    w = ctx.param(node, 1)
    if w.ndim != 2:
        raise Unsupported(f"the second operand has shape {w.shape}; npnet builds x @ W for a 2-D weight W")
    if w.shape[1] == 3 * w.shape[0]:
        found = self_attention(node, ctx, w)
        if found is not None:
            return found
    out, bias = node.output[0], None
    add = ctx.follow(out, "Add")
    if add is not None:
        other = 1 - list(add.input).index(out)
        c = ctx.constant(add, other)
        if c is not None and _bias_shape_ok(c, w.shape[1]):
            ctx.absorb(add)
            out, bias = add.output[0], ctx.param(add, other)
    cls = nn.Linear if ctx.rank(node.input[0]) == 2 else LinearNd
    return _linear(w.T, bias, cls), [ctx.data(node, 0)], out


# -- normalization, pooling -----------------------------------------------------------------------
@converter("BatchNormalization")
def batch_norm(node, ctx):
    """Running statistics loaded; ONNX's momentum m is PyTorch's 1 - m."""
    scale, bias, mean, var = (ctx.param(node, i) for i in range(1, 5))
    rank = ctx.rank(node.input[0])
    cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d}.get(rank)
    if cls is None:
        raise Unsupported(f"input of rank {rank or 'unknown'}; npnet builds BatchNorm1d (rank 2 or 3) "
                          "and BatchNorm2d (rank 4) from inputs of known rank")
    eps = float32_value(ctx.attr(node, "epsilon", 1e-5))
    momentum = float32_value(1 - float32_value(ctx.attr(node, "momentum", 0.9)))
    m = cls(scale.shape[0], eps=eps, momentum=momentum)
    load_param(m.weight, scale, "the scale")
    load_param(m.bias, bias, "the bias")
    for name, array in (("running_mean", mean), ("running_var", var)):
        if array.shape != (m.num_features,):
            raise Unsupported(f"{name} has shape {array.shape}, expected ({m.num_features},)")
        getattr(m, name)[...] = array
    return one_input(node, ctx, m)


def _pool_args(node, ctx):
    kernel = tuple(ctx.attr(node, "kernel_shape"))
    if len(kernel) != 2:
        raise Unsupported(f"kernel_shape {list(kernel)}: npnet pools over 2-D images only")
    if ctx.attr(node, "ceil_mode", 0):
        raise Unsupported("ceil_mode=1 (npnet's pooling rounds the output size down)")
    stride, padding = _window(node, ctx, kernel)
    return kernel, stride, padding


@converter("MaxPool")
def max_pool(node, ctx):
    return one_input(node, ctx, nn.MaxPool2d(*_pool_args(node, ctx)))


@converter("AveragePool")
def average_pool(node, ctx):
    kernel, stride, padding = _pool_args(node, ctx)
    if any(padding) and not ctx.attr(node, "count_include_pad", 0):
        raise Unsupported("count_include_pad=0 with padding (npnet's AvgPool2d counts the zeros "
                          "of the padding, as PyTorch's default count_include_pad=True)")
    return one_input(node, ctx, nn.AvgPool2d(kernel, stride, padding))


@converter("GlobalAveragePool")
def global_average_pool(node, ctx):
    """ONNX keeps (N, C, 1, 1), npnet's GlobalAvgPool2d gives (N, C): a Flatten after it is taken
    in; otherwise a Reshape puts the two unit dims back."""
    flat = ctx.follow(node.output[0], "Flatten")
    if flat is not None and ctx.attr(flat, "axis", 1) == 1:
        ctx.absorb(flat)
        return nn.GlobalAvgPool2d(), [ctx.data(node, 0)], flat.output[0]
    return one_input(node, ctx, nn.Sequential(nn.GlobalAvgPool2d(), nn.Reshape((0, 0, 1, 1))))
