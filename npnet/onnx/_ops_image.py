"""Converters of the feed-forward layers and containers: ``convert(ctx, module, x) -> y``.

``x`` and ``y`` are ONNX value names; ``ctx`` is the ``exporter.Graph``. Each converter writes
what the layer computes in eval mode: BatchNorm with its running statistics, Dropout as nothing.
The fused modules of ``npnet.fuse`` are written as the layers they hold (ONNX runtimes fuse
them again), so their weights keep the state-dict names; a ConvBn2d's fold is the same function.
"""
import numpy as np

from .. import nn
from ..nn.fused import BatchNormReLU, ConvBn2d, ConvBnReLU2d, ConvReLU2d, Merged, ResidualReLU
from ..nn.normalization import _BatchNorm
from ..nn.residual import ResidualBlock
from ._graph import converts


def hint(ctx, module, suffix=""):
    """A value name from the module's dotted name ("features.0"), or its class for the model."""
    base = ctx.name_of(module) or type(module).__name__.lower()
    return f"{base}/{suffix}" if suffix else base


# -- containers ----------------------------------------------------------------------------------
@converts(nn.Sequential)
def sequential(ctx, module, x):
    return ctx.chain(module.children(), x)


@converts(nn.Residual)
def residual(ctx, module, x):
    """branch(x) + shortcut(x)."""
    return ctx.node("Add", [ctx.convert(module.branch, x), ctx.convert(module.shortcut, x)], hint(ctx, module))


@converts(ResidualBlock, ResidualReLU)
def residual_block(ctx, module, x):
    """act(branch(x) + shortcut(x)); a fused ResidualReLU holds the block's children (its act a
    ReLU), some of them fused in turn."""
    y = ctx.chain(module.branch(), x)
    s = ctx.node("Add", [y, ctx.convert(module.shortcut, x)], hint(ctx, module, "sum"))
    return ctx.convert(getattr(module, module.act_name), s)


@converts(ConvReLU2d, BatchNormReLU, ConvBn2d, ConvBnReLU2d)
def fused(ctx, module, x):
    """The layers the fused module holds, one after the other (a fold is conv then BatchNorm)."""
    return ctx.chain(module.layers, x)


@converts(Merged, nn.Identity, nn.Dropout)
def identity(ctx, module, x):
    """Nothing: a fused module's placeholder, Identity, and Dropout in eval mode."""
    return x


# -- layers with weights -------------------------------------------------------------------------
def linear(ctx, module, x, rank=2):
    """y = x W^T + b. Gemm for (N, in); MatMul with W^T then Add for (..., in), rank > 2."""
    w, name = ctx.param(module, "weight"), hint(ctx, module)
    b = [ctx.param(module, "bias")] if module.bias is not None else []
    if rank == 2:
        return ctx.node("Gemm", [x, w] + b, name, transB=1)
    wt = ctx.node("Transpose", [w], hint(ctx, module, "weight_t"), perm=[1, 0])
    y = ctx.node("MatMul", [x, wt], hint(ctx, module, "matmul") if b else name)
    return ctx.node("Add", [y] + b, name) if b else y


@converts(nn.Linear)
def linear_2d(ctx, module, x):
    """Linear takes (N, in_features): npnet's layer checks it."""
    return linear(ctx, module, x)


@converts(nn.Conv2d)
def conv2d(ctx, module, x):
    """Conv with npnet's zero padding (same on both sides); every algorithm is the same function."""
    (ph, pw) = module.padding
    inputs = [x, ctx.param(module, "weight")] + ([ctx.param(module, "bias")] if module.bias is not None else [])
    return ctx.node("Conv", inputs, hint(ctx, module), kernel_shape=list(module.kernel_size),
                    strides=list(module.stride), pads=[ph, pw, ph, pw],
                    dilations=list(getattr(module, "dilation", (1, 1))), group=getattr(module, "groups", 1))


@converts(_BatchNorm)
def batch_norm(ctx, module, x):
    """BatchNormalization with the running statistics (eval mode), for (N, C), (N, C, L), (N, C, H, W)."""
    C = module.num_features
    if module.affine:
        scale, bias = ctx.param(module, "weight"), ctx.param(module, "bias")
    else:
        scale = ctx.constant(hint(ctx, module, "ones"), np.ones(C, np.float32))
        bias = ctx.constant(hint(ctx, module, "zeros"), np.zeros(C, np.float32))
    inputs = [x, scale, bias, ctx.param(module, "running_mean"), ctx.param(module, "running_var")]
    return ctx.node("BatchNormalization", inputs, hint(ctx, module), epsilon=module.eps)


# -- pooling and shapes --------------------------------------------------------------------------
def _pool_attrs(module):
    (ph, pw) = module.padding
    # npnet's output size floors ((H + 2p - k) // s + 1), ONNX's ceil_mode=0
    return dict(kernel_shape=list(module.kernel_size), strides=list(module.stride), pads=[ph, pw, ph, pw],
                ceil_mode=0)


@converts(nn.MaxPool2d)
def max_pool(ctx, module, x):
    """MaxPool: ONNX's padding is never the maximum, as npnet's -inf padding."""
    return ctx.node("MaxPool", [x], hint(ctx, module), **_pool_attrs(module))


@converts(nn.AvgPool2d)
def avg_pool(ctx, module, x):
    """AveragePool counting the zero padding in the mean (npnet's, PyTorch's count_include_pad=True)."""
    return ctx.node("AveragePool", [x], hint(ctx, module), count_include_pad=1, **_pool_attrs(module))


@converts(nn.GlobalAvgPool2d)
def global_avg_pool(ctx, module, x):
    """(N, C, H, W) -> GlobalAveragePool (N, C, 1, 1) -> Flatten (N, C)."""
    y = ctx.node("GlobalAveragePool", [x], hint(ctx, module, "pool"))
    return ctx.node("Flatten", [y], hint(ctx, module), axis=1)


@converts(nn.Flatten)
def flatten(ctx, module, x):
    """Flatten(axis=1) for the usual start_dim=1; a Reshape keeping the first start_dim dims else."""
    if module.start_dim == 1:
        return ctx.node("Flatten", [x], hint(ctx, module), axis=1)
    shape = ctx.ints(hint(ctx, module, "shape"), [0] * module.start_dim + [-1])
    return ctx.node("Reshape", [x, shape], hint(ctx, module))


# -- activations ---------------------------------------------------------------------------------
def _unary(op):
    def convert(ctx, module, x):
        return ctx.node(op, [x], hint(ctx, module))
    convert.__doc__ = f"One {op} node."
    return convert


_UNARY = {nn.ReLU: "Relu", nn.Sigmoid: "Sigmoid", nn.Tanh: "Tanh"}
for _cls, _op in _UNARY.items():
    converts(_cls)(_unary(_op))


@converts(nn.LeakyReLU)
def leaky_relu(ctx, module, x):
    return ctx.node("LeakyRelu", [x], hint(ctx, module), alpha=module.negative_slope)


@converts(nn.SiLU)
def silu(ctx, module, x):
    """x * sigmoid(x)."""
    return ctx.node("Mul", [x, ctx.node("Sigmoid", [x], hint(ctx, module, "sigmoid"))], hint(ctx, module))


@converts(nn.Softmax, nn.LogSoftmax)
def softmax(ctx, module, x):
    """Softmax / LogSoftmax along ``dim`` (opset 13's axis: one axis, negative counts from the end)."""
    op = "Softmax" if isinstance(module, nn.Softmax) else "LogSoftmax"
    return ctx.node(op, [x], hint(ctx, module), axis=module.dim)


@converts(nn.GELU)
def gelu(ctx, module, x):
    """One Gelu node from opset 20; below, the formula npnet computes: exact
    0.5 x (1 + erf(x / sqrt 2)), or 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    name = hint(ctx, module)
    if ctx.opset >= 20:
        return ctx.node("Gelu", [x], name, approximate=module.approximate)
    c = lambda n, v: ctx.constant(hint(ctx, module, n), np.array(v, np.float32))  # noqa: E731
    if module.approximate == "tanh":
        x3 = ctx.node("Mul", [ctx.node("Mul", [x, x], hint(ctx, module, "x2")), x], hint(ctx, module, "x3"))
        inner = ctx.node("Add", [x, ctx.node("Mul", [x3, c("k", 0.044715)], hint(ctx, module, "kx3"))],
                         hint(ctx, module, "inner"))
        t = ctx.node("Tanh", [ctx.node("Mul", [inner, c("sqrt_2_over_pi", 0.7978845608028654)],
                                       hint(ctx, module, "arg"))], hint(ctx, module, "tanh"))
    else:
        t = ctx.node("Erf", [ctx.node("Mul", [x, c("inv_sqrt2", 2 ** -0.5)], hint(ctx, module, "arg"))],
                     hint(ctx, module, "erf"))
    one_plus = ctx.node("Add", [t, c("one", 1.0)], hint(ctx, module, "one_plus"))
    half_x = ctx.node("Mul", [x, c("half", 0.5)], hint(ctx, module, "half_x"))
    return ctx.node("Mul", [half_x, one_plus], name)
