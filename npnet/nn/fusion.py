"""Fusion: layers that follow each other run as one pass over the activations.

Training (gradients enabled): a BatchNorm followed by a ReLU writes ``relu(bn(x))`` in its own output
pass and, in the backward, takes the ReLU's output gradient and masks it inside its own two passes
(``_BatchNorm.forward_relu``): the ReLU's full-size read and write are saved both ways. Outputs are
bit-identical to the layer-by-layer path; gradients equal it to rounding (the compiler may fuse a
multiply-add differently in the masked loop: ~1 ulp, ``tests/test_fusion.py``). A Conv2d followed by
a ReLU clamps in the convolution's output pass (``Conv2d.forward_relu``) and hands the ReLU that
output as its cache, so the ReLU's backward runs as usual: the forward saves a full-size pass,
outputs and gradients are bit-identical.

Inference: Conv2d -> BatchNorm2d (eval) -> ReLU run as one convolution.

Inside ``no_grad()`` nothing is kept for a backward pass, and a BatchNorm2d in eval mode is a fixed
per-channel affine map ``y * s + t`` (s = gamma / sqrt(running_var + eps), t = beta - running_mean s).
After a convolution it folds into the convolution's weight and bias (w s, b s + t), and a ReLU after
them becomes a clamp in the convolution's output pass: the output is written once instead of being
read and written again by each layer. The folded weight is computed at every call (O C kh kw values,
next to nothing beside the convolution), so weights changed in place are always seen.

Only what is exactly equivalent is fused: the layers must be in that order, with no forward hook on
any of them (a hook sees each layer's own output) and none a subclass with its own forward or
backward, the BatchNorm in eval mode with as many features
as the convolution has output channels. Anything else runs layer by layer. Folding rounds
differently from the separate layers: float32 outputs differ by ~1e-6 relative
(``tests/test_fusion.py``).
"""
import numpy as np

from .activation import ReLU
from .conv import Conv2d
from .module import is_grad_enabled
from .normalization import BatchNorm2d, _BatchNorm


def folded_weights(conv, bn):
    """(weight, bias) of ``conv`` followed by ``bn`` in eval mode, as one convolution.

    Shape: weight (O, C, kh, kw), bias (O,); conv's dtype. Computed in float64.
    """
    s = bn.weight.data.astype(np.float64) if bn.affine else np.ones(bn.num_features)
    s = s / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
    b = conv.bias.data.astype(np.float64) if conv.bias is not None else 0.0
    b = (b - bn.running_mean.astype(np.float64)) * s + (bn.bias.data if bn.affine else 0.0)
    dtype = conv.weight.data.dtype
    return (conv.weight.data * s[:, None, None, None]).astype(dtype), b.astype(dtype)


def _stock(module, cls):
    """``module`` runs ``cls``'s own forward and backward (a subclass that overrides them is not
    fused: fusing would skip its code)."""
    return type(module).forward is cls.forward and type(module).backward is cls.backward


def _plain(module, cls):
    return not module._forward_hooks and _stock(module, cls)


def _hookless(module, cls):
    return not module._forward_hooks and not module._backward_hooks and _stock(module, cls)


def relu_pair(mods, i, cls):
    """True if mods[i] is a ``cls`` and mods[i + 1] a ReLU, neither with a hook (a hook sees each
    layer's own output or gradient, which the fused pair does not produce)."""
    return (i + 1 < len(mods) and isinstance(mods[i], cls) and isinstance(mods[i + 1], ReLU)
            and _hookless(mods[i], cls) and _hookless(mods[i + 1], ReLU))


def run_sequential_training(mods, x):
    """The forward of a Sequential's children with gradients enabled: ``(output, fused)``, where
    ``fused`` holds the indices of the ReLUs run inside the BatchNorm before them (their backward
    is then part of that BatchNorm's, and ``Sequential.backward`` skips them)."""
    fused, i = [], 0
    while i < len(mods):
        if relu_pair(mods, i, _BatchNorm):
            x = mods[i].forward_relu(x)
            fused.append(i + 1)
            i += 2
        elif relu_pair(mods, i, Conv2d):
            x = mods[i].forward_relu(x)
            object.__setattr__(mods[i + 1], "cache", x)  # what ReLU.forward keeps: its output
            i += 2
        else:
            x = mods[i](x)
            i += 1
    return x, tuple(fused)


def match(mods, i):
    """``(conv, bn or None, relu: bool, count)`` if mods[i:] starts a fusable chain, else None."""
    conv = mods[i]
    if is_grad_enabled() or not isinstance(conv, Conv2d) or not _plain(conv, Conv2d):
        return None
    j, bn = i + 1, None
    nxt = mods[j] if j < len(mods) else None
    if (isinstance(nxt, BatchNorm2d) and not nxt.training and _plain(nxt, BatchNorm2d)
            and nxt.num_features == conv.out_channels):
        bn, j = nxt, j + 1
    relu = j < len(mods) and isinstance(mods[j], ReLU) and _plain(mods[j], ReLU)
    if bn is None and not relu:
        return None
    return conv, bn, relu, j - i + relu


def conv_bn_relu(x, conv, bn=None, relu=False):
    """``relu(bn(conv(x)))`` (either part optional) in one convolution; for ``no_grad()`` only."""
    return conv._convolve(x, relu, None if bn is None else folded_weights(conv, bn))


def run_sequential(mods, x):
    """The forward of a Sequential's children ``mods`` inside ``no_grad()``, fusing where it can."""
    i = 0
    while i < len(mods):
        chain = match(mods, i)
        if chain is None:
            x = mods[i](x)
            i += 1
            continue
        conv, bn, relu, count = chain
        x = conv_bn_relu(x, conv, bn, relu)
        for m in mods[i:i + count]:
            object.__setattr__(m, "cache", None)  # as Module.__call__ does inside no_grad()
        i += count
    return x


def residual_relu_inference(x, branch, shortcut):
    """``relu(branch(x) + shortcut(x))`` inside ``no_grad()``: the branch fused where it can, the sum
    and the clamp done in place in the branch's fresh output (a ResNet basic block's ending)."""
    y, s = branch(x), shortcut(x)
    if y.shape != s.shape:
        raise ValueError(f"Residual: branch output {y.shape} and shortcut output {s.shape} differ")
    if np.shares_memory(y, x) or np.shares_memory(y, s) or y.dtype != np.result_type(y, s):
        y = y + s  # not ours to overwrite, or a wider sum: a new array, as the layer-by-layer path
    else:
        y += s
    return np.maximum(y, 0, out=y)
