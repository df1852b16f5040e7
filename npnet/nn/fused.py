"""Fused modules: neighbouring layers computed in one pass, made only by ``npnet.fuse`` (``fusion.py``).

Each fused module holds the original layers as its children, under the names they had in the
container (``"0"``, ``"1"`` of a Sequential; ``"bn1"``, ``"relu1"`` of a block), so parameters and
state-dict keys are those of the unfused model; the other slots of the group hold a :class:`Merged`
placeholder. Each computes the same function as its layers one after the other, with its own
forward and backward, written out below:

* :class:`ConvReLU2d` ``relu(conv(x))``: the clamp in the convolution's output pass. Bit-identical.
* :class:`BatchNormReLU` ``relu(bn(x))`` (training or eval): the clamp in BatchNorm's output pass,
  the ReLU's mask inside BatchNorm's two backward passes. Outputs bit-identical, gradients to ~1 ulp
  (the compiler may contract a multiply-add differently in the masked loop).
* :class:`ConvBn2d` / :class:`ConvBnReLU2d` (eval mode only, ``fuse(model, inference=True)``): an
  eval BatchNorm is ``y * s + t`` per channel (``BatchNorm.eval_affine``), folded into the
  convolution's weight and bias (w s, b s + t, computed at each call, so weights changed in place
  are seen). Float32 outputs differ from the layer-by-layer path by ~1e-6 relative.
* :class:`ResidualReLU` replaces a residual block (``residual.ResidualBlock``): ``relu(branch(x) +
  shortcut(x))`` with the sum and the ReLU in one pass; with ``inference=True`` and a branch that
  ends in a fold, the shortcut's output is added and clamped in that convolution's output pass.
"""
import numpy as np

from ..kernels.conv import conv2d_backward
from ..kernels.elementwise import add_, add_relu, relu_backward
from ._checks import check_grad
from .container import chain_backward
from .module import Module
from .residual import check_sum


class Merged(Module):
    """The slot of a layer that a fused module computes (PyTorch's fuse_modules leaves ``Identity``
    there): returns its input and its gradient unchanged. ``into``: the fused module's slot."""

    _merged = True

    def __init__(self, into):
        super().__init__()
        self.into = into

    def extra_repr(self):
        return f"into={self.into!r}"

    def forward(self, x):
        return x

    def backward(self, dout, input_grad=True):
        return dout


class Fused(Module):
    """Base of the fused modules of a chain: ``layers`` is ``{name in the container: layer}``."""

    _inline_names = True  # Module.named_modules names the children as if they sat in the container

    def __init__(self, layers):
        super().__init__()
        for name, layer in layers.items():
            setattr(self, name, layer)
        object.__setattr__(self, "training", next(iter(layers.values())).training)  # the model's mode

    @property
    def layers(self):
        """The original layers, in order."""
        return list(self._modules.values())


class ConvReLU2d(Fused):
    """``relu(conv(x))``. Cache: (x, out)."""

    def forward(self, x):
        conv = self.layers[0]
        out = conv.convolve(x, relu=True)
        self.cache = (x, out)
        return out

    def backward(self, dout, input_grad=True):
        x, out = self._saved()
        self.cache = None
        check_grad(self, dout, out.shape, out.dtype)
        return self.layers[0].gradients(x, relu_backward(dout, out), input_grad)


class BatchNormReLU(Fused):
    """``relu(bn(x))`` for BatchNorm1d/2d. Cache: BatchNorm's own (``normalize``), with the output."""

    def forward(self, x):
        out, self.cache = self.layers[0].normalize(x, relu=True)
        return out

    def backward(self, dout, input_grad=True):
        cache = self._saved()
        self.cache = None
        return self.layers[0].gradients(cache, dout, input_grad)  # dout masked inside its passes


class ConvBn2d(Fused):
    """``bn(conv(x))`` with an eval-mode BatchNorm2d folded into the convolution. Cache: (x, out)."""

    relu = False

    def folded(self):
        """(weight, bias) of the one convolution, conv's dtype, and the per-channel scale s
        (float64): w s and b s + t with (s, t) = ``bn.eval_affine()``."""
        conv, bn = self.layers[:2]
        if bn.training or self.training:
            raise RuntimeError(f"{type(self).__name__}: folded for inference, but in training mode; "
                               "call npnet.unfuse(model) before model.train(), then fuse again")
        s, t = bn.eval_affine()
        b = conv.bias.data.astype(np.float64) if conv.bias is not None else 0.0
        dtype = conv.weight.data.dtype
        return (conv.weight.data * s[:, None, None, None]).astype(dtype), (b * s + t).astype(dtype), s

    def forward(self, x):
        out = self.convolve(x)
        self.cache = (x, out)
        return out

    def convolve(self, x, residual=None):
        """The folded convolution of x, plus ``residual`` (then clamped: a residual block's ending)."""
        w, b, _ = self.folded()
        return self.layers[0].convolve(x, w, b, relu=self.relu or residual is not None, residual=residual)

    def backward(self, dout, input_grad=True):
        x, out = self._saved()
        self.cache = None
        check_grad(self, dout, out.shape, out.dtype)
        return self.gradients(x, relu_backward(dout, out) if self.relu else dout, input_grad)

    def gradients(self, x, dz, input_grad=True):
        """Backward of z = bn(conv(x)) for dz: with s = gamma / sqrt(var + eps), dw = s dw_raw,
        db = s sum(dz), dbeta = sum(dz) and dgamma = sum(dz (y - mean)) / sqrt(var + eps), where
        sum(dz y) over a channel is <dw_raw, w> + b sum(dz) (y = conv(x), dw_raw = its weight grad)."""
        conv, bn = self.layers[:2]
        w, _, s = self.folded()
        check_grad(self, dz, (x.shape[0],) + conv.output_shape(x.shape[1:]), x.dtype)
        dx, dw_raw, dsum = conv2d_backward(x, w, dz, *conv.stride, *conv.padding, need_dx=input_grad,
                                           algorithm=conv.algorithm)
        dw64, dsum64 = dw_raw.astype(np.float64), dsum.astype(np.float64)
        dtype = conv.weight.data.dtype
        if conv.weight.requires_grad:
            conv.weight.grad += (dw64 * s[:, None, None, None]).astype(dtype)
        b = 0.0
        if conv.bias is not None:
            b = conv.bias.data.astype(np.float64)
            if conv.bias.requires_grad:
                conv.bias.grad += (dsum64 * s).astype(dtype)
        if bn.affine and bn.weight.requires_grad:
            sum_dz_y = (dw64 * conv.weight.data).sum(axis=(1, 2, 3)) + b * dsum64
            inv_std = 1 / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
            bn.weight.grad += ((sum_dz_y - bn.running_mean * dsum64) * inv_std).astype(dtype)
        if bn.affine and bn.bias.requires_grad:
            bn.bias.grad += dsum
        return dx


class ConvBnReLU2d(ConvBn2d):
    """``relu(bn(conv(x)))``, the eval BatchNorm folded and the clamp in the output pass."""

    relu = True


class ResidualReLU(Module):
    """A residual block ``relu(branch(x) + shortcut(x))`` (``residual.ResidualBlock``) with the sum and
    the ReLU in one pass. Its children are the block's, under the block's names (so the state-dict
    keys are the block's); the branch's own neighbours may be fused in turn. ``block``: the original
    block (``npnet.unfuse`` puts it back). With a fold (:class:`ConvBn2d`) at the end of the branch,
    the shortcut's output is added and clamped in that convolution's output pass. Cache: the output.
    """

    def __init__(self, block, children):
        super().__init__()
        object.__setattr__(self, "block", block)  # not a child: its children are ours
        object.__setattr__(self, "training", block.training)
        for name, child in children.items():
            setattr(self, name, child)
        self.branch_names, self.act_name = block.branch_names, block.act_name

    def extra_repr(self):
        return f"{type(self.block).__name__}: {self.act_name}({' -> '.join(self.branch_names)} + shortcut) in one pass"

    def branch(self):
        return [getattr(self, n) for n in self.branch_names]

    def _ending(self):
        """(layers before the fold, the fold) when the branch ends in a fold, else (branch, None)."""
        mods = [m for m in self.branch() if not m._merged]
        if mods and isinstance(mods[-1], ConvBn2d) and not mods[-1].relu:
            return mods[:-1], mods[-1]
        return mods, None

    def forward(self, x):
        mods, fold = self._ending()
        y = x
        for m in mods:
            y = m(y)
        s = self.shortcut(x)
        if fold is not None:  # the branch's output is the fold's: checked before it is computed
            check_sum(self.block, (y.shape[0],) + fold.layers[0].output_shape(y.shape[1:]), y.dtype, s)
            out = fold.convolve(y, residual=s)   # relu(fold(y) + s) in the convolution's output pass
            self.cache = (out, y, fold)
            return out
        check_sum(self.block, y.shape, y.dtype, s)
        out = add_relu(y, s)
        self.cache = (out, None, None)
        return out

    def backward(self, dout, input_grad=True):
        out, y, fold = self._saved()
        self.cache = None
        check_grad(self, dout, out.shape, out.dtype)
        d = relu_backward(dout, out)
        mods = self._ending()[0]
        if fold is not None:
            dh = fold.gradients(y, d, bool(mods) or input_grad)
            dx = chain_backward(mods, dh, input_grad)
        else:
            dx = chain_backward(mods, d, input_grad)
        ds = self.shortcut.backward(d, input_grad)
        if not input_grad:
            return None
        if (np.may_share_memory(dx, d) or np.may_share_memory(dx, ds) or dx.dtype != ds.dtype
                or not dx.flags.c_contiguous or (mods and mods[0].has_hooks())):
            return dx + ds   # dx may be seen elsewhere (the incoming gradient, a hook)
        return add_(dx, ds)  # dx is the branch's own new array
