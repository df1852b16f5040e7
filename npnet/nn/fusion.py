"""Fusion: neighbouring layers of a chain run as one pass over the activations, where the result is the
same function. ``Sequential`` and ResNet's ``BasicBlock`` run their children through :func:`run_chain`.

What is fused (:func:`plan` lists it for a chain of modules, in the current grad mode):

* Training, ``BatchNorm -> ReLU`` (``"bn-relu"``): the BatchNorm writes ``relu(bn(x))`` in its own output
  pass (``_BatchNorm.forward_relu``) and, in its backward, masks the gradient inside its own two passes;
  the ReLU is handed the output (``ReLU.keep_output(out, masked=True)``) and passes the gradient on.
  Outputs bit-identical to the layer-by-layer path, gradients equal to rounding (~1 ulp: the compiler
  may fuse a multiply-add differently in the masked loop).
* Training, ``Conv2d -> ReLU`` (``"conv-relu"``): the convolution clamps in its output pass
  (``Conv2d.forward_relu``) and the ReLU is handed that output as its cache; its backward is unchanged.
  Outputs and gradients bit-identical.
* Inference (inside ``no_grad()``), ``Conv2d -> BatchNorm2d (eval) -> ReLU`` and the two-layer prefixes
  ``Conv2d -> BatchNorm2d`` and ``Conv2d -> ReLU``: one convolution. An eval-mode BatchNorm is the affine
  map ``y * s + t`` (s = gamma / sqrt(running_var + eps), t = beta - running_mean s); it folds into the
  convolution's weight and bias (w s, b s + t, computed afresh at every call, so weights changed in
  place are seen) and the ReLU becomes a clamp in the output pass. Folding rounds differently:
  float32 outputs differ from the layer-by-layer path by ~1e-6 relative.

* Training, a residual block's ending ``relu(chain(x) + shortcut(x))`` (``"add-relu"``, ResNet's
  ``BasicBlock``): the sum and the ReLU in one pass, the ReLU handed the output
  (``ReLU.keep_output``); its backward unchanged. Bit-identical.
* Inference, a residual block's ending ``relu(chain(x) + shortcut(x))`` (``"conv-bn-add-relu"``, ResNet's
  ``BasicBlock``): where the branch ends with ``Conv2d -> BatchNorm2d (eval)`` (or a lone ``Conv2d``),
  the shortcut's output is added and the block's ReLU clamps in that convolution's output pass
  (:func:`run_chain_add_relu`), instead of a sum and a clamp over the branch's output afterwards.
  Float32 outputs differ from the layer-by-layer path by ~1e-6 relative (the folding above).

The one rule (:func:`fusable`): a layer takes part only if it is an instance of the fused class whose
type overrides none of the methods fusion calls, and it has no hook (``Module.has_hooks()``): a
subclass's own code, and a hook's view of each layer's own tensors, are never skipped. A training-mode
BatchNorm is never folded; any other activation (LeakyReLU, a ReLU subclass) breaks the chain. So a
layer watched by ``LayerStats`` (which registers hooks) runs unfused, and so do its neighbours in that
pair: e.g. cnn-bn's train step then pays the ReLU's own passes (``benchmarks/bench_hooks.py`` measures
what the hooks cost).

The switch: :func:`set_enabled` (global) and ``Sequential.fuse`` / ``BasicBlock.fuse`` (per container)
turn fusion off, e.g. to debug or to reproduce the layer-by-layer path bit for bit;
``with fusion.disabled(): ...`` does it for a block of code.
"""
import numpy as np

from .. import kernels
from .._switch import Switch

from .activation import ReLU
from .conv import Conv2d
from .grad_mode import is_grad_enabled
from .normalization import BatchNorm2d, _BatchNorm

_enabled = Switch(True)

# the methods fusion calls in place of a layer's forward: a subclass that overrides one is not fused
_CALLED = {ReLU: ("forward", "backward", "keep_output"),
           Conv2d: ("forward", "backward", "forward_relu", "convolve"),
           _BatchNorm: ("forward", "backward", "forward_relu", "_forward"),
           BatchNorm2d: ("forward", "backward", "forward_relu", "_forward")}


def is_enabled():
    """False after ``set_enabled(False)`` or inside ``disabled()``."""
    return _enabled.on


def set_enabled(flag):
    """Turns fusion on or off for every container; returns the previous setting."""
    return _enabled.set(flag)


def disabled():
    """``with fusion.disabled():`` every chain runs layer by layer inside the block."""
    return _enabled.turned(False)


def fusable(module, cls):
    """The one eligibility rule: ``module`` is a ``cls`` running ``cls``'s own code (its type overrides
    none of the methods fusion calls, so no subclass code is skipped) and has no hook (a hook sees the
    layer's own input, output and gradient, which a fused pass never produces)."""
    return (isinstance(module, cls) and not module.has_hooks()
            and all(getattr(type(module), m) is getattr(cls, m) for m in _CALLED[cls]))


def _match(mods, i, training):
    """``(stop, kind)`` if a fused group starts at mods[i] (it spans mods[i:stop]), else None."""
    nxt = mods[i + 1] if i + 1 < len(mods) else None
    relu_next = nxt is not None and fusable(nxt, ReLU)
    if training:
        if relu_next and fusable(mods[i], _BatchNorm):
            return i + 2, "bn-relu"
        if relu_next and fusable(mods[i], Conv2d):
            return i + 2, "conv-relu"
        return None
    conv = mods[i]
    if not fusable(conv, Conv2d):
        return None
    if (nxt is not None and fusable(nxt, BatchNorm2d) and not nxt.training
            and nxt.num_features == conv.out_channels):
        after = mods[i + 2] if i + 2 < len(mods) else None
        if after is not None and fusable(after, ReLU):
            return i + 3, "conv-bn-relu"
        return i + 2, "conv-bn"
    return (i + 2, "conv-relu") if relu_next else None


def plan(mods, training=None):
    """The fused groups of the chain ``mods`` as ``[(start, stop, kind), ...]`` (mods[start:stop] run
    as one pass); ``training``: gradients enabled (default: the current grad mode). Empty when fusion
    is switched off."""
    training = is_grad_enabled() if training is None else training
    groups, i = [], 0
    while i < len(mods) and is_enabled():
        found = _match(mods, i, training)
        if found:
            groups.append((i, found[0], found[1]))
        i = found[0] if found else i + 1
    return groups


def run_chain(mods, x, fuse=True):
    """``mods[-1](... mods[0](x))``, the groups of :func:`plan` fused unless ``fuse`` is False."""
    groups = {start: (stop, kind) for start, stop, kind in (plan(mods) if fuse else ())}
    i, training = 0, is_grad_enabled()
    while i < len(mods):
        if i not in groups:
            x = mods[i](x)
            i += 1
            continue
        stop, kind = groups[i]
        if training:  # "bn-relu" or "conv-relu": the first layer clamps, the ReLU keeps its output
            x = mods[i].forward_relu(x)
            mods[i + 1].keep_output(x, masked=kind == "bn-relu")
        else:
            bn = mods[i + 1] if kind.startswith("conv-bn") else None
            x = conv_bn_relu(x, mods[i], bn, relu=kind.endswith("relu"))
            for m in mods[i:stop]:
                m.cache = None  # not called: drop a stale cache, as their call inside no_grad() would
        i = stop
    return x


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


def conv_bn_relu(x, conv, bn=None, relu=False):
    """``relu(bn(conv(x)))`` (either part optional) in one convolution; for ``no_grad()`` only."""
    return conv.convolve(x, relu, None if bn is None else folded_weights(conv, bn))


def run_chain_add_relu(mods, x, shortcut):
    """A residual block's ending ``relu(chain(mods)(x) + shortcut(x))`` for ``no_grad()``, each layer
    run once and the chain's layers before the shortcut (as layer by layer, so hooks see that order).

    Returns ``(out, None)`` where the sum and the clamp ran in the last convolution's output pass: the
    chain ends with a fusable ``Conv2d`` or ``Conv2d -> BatchNorm2d`` group and the shortcut's output
    has that convolution's output shape and dtype. Otherwise ``(y, s)``: the chain's output (run as
    :func:`run_chain` runs it) and the shortcut's, for the caller to check, add and clamp."""
    groups = plan(mods, training=False)
    if groups and groups[-1][1:] == (len(mods), "conv-bn"):
        start, bn = groups[-1][0], mods[-1]
    elif mods and fusable(mods[-1], Conv2d) and not (groups and groups[-1][1] == len(mods)):
        start, bn = len(mods) - 1, None
    else:
        return run_chain(mods, x), shortcut(x)
    h = run_chain(mods[:start], x)  # the groups before start are those of the whole chain's plan
    s = shortcut(x)
    conv = mods[start]
    if s.dtype != h.dtype or s.shape != (h.shape[0],) + conv.output_shape(h.shape[1:]):
        return run_chain(mods[start:], h), s
    for m in mods[start:]:
        m.cache = None  # not called: drop a stale cache, as their call inside no_grad() would
    return conv.convolve(h, True, None if bn is None else folded_weights(conv, bn), residual=s), None


def add_relu_(y, s, x):
    """``relu(y + s)``, written into ``y`` where that is safe (a ResNet block's ending inside
    ``no_grad()``: ``y`` the branch's output, ``s`` the shortcut's, ``x`` the block's input)."""
    if (y.dtype != np.result_type(y, s) or np.shares_memory(y, s) or np.shares_memory(y, x)
            or not y.flags.c_contiguous):
        return np.maximum(y + s, 0)  # a wider sum, or not ours to overwrite: a new array, as layer by layer
    return kernels.ops.add_relu(y, s, out=y)
