"""The fusion pass: ``npnet.fuse(model)`` replaces neighbouring layers by the fused modules of
``fused.py``, ``npnet.unfuse(model)`` puts the layers back. Like PyTorch's ``fuse_modules``, it
rewrites the model once, visibly (``print(model)``), instead of deciding inside ``forward``.

What is fused, in a ``Sequential`` and in the branch of a ``ResidualBlock`` (the data flow of other
modules is their own code's, so only their children are visited):

* ``Conv2d -> ReLU`` -> ``ConvReLU2d``; ``BatchNorm1d/2d -> ReLU`` -> ``BatchNormReLU``;
* with ``inference=True`` (the model in eval mode), first ``Conv2d -> BatchNorm2d -> ReLU`` ->
  ``ConvBnReLU2d`` and ``Conv2d -> BatchNorm2d`` -> ``ConvBn2d`` (the BatchNorm folded);
* a ``ResidualBlock`` whose activation is a ReLU -> ``ResidualReLU`` (the sum and the ReLU in one
  pass; with a fold at the end of the branch, in that convolution's output pass).

The one rule: a layer takes part only if it is an instance of the class the fused module expects,
its type overrides none of the methods the fused module calls (so a subclass's own code is never
skipped; ``SyncBatchNorm`` overrides only how statistics are summed, which those methods call),
and it has no hook (a hook sees the layer's own input and output, which a fused pass does not
produce): such a layer is left as it is, with a warning naming it. Parameters and state-dict keys do
not change: a fused model loads the unfused model's state dict, strictly, and the other way round.
"""
import warnings

from .activation import ReLU
from .container import Sequential
from .conv import Conv2d
from .fused import BatchNormReLU, ConvBn2d, ConvBnReLU2d, ConvReLU2d, Fused, Merged, ResidualReLU
from .normalization import BatchNorm2d, _BatchNorm
from .residual import ResidualBlock

# the methods each fused module calls on a layer: a type that overrides one is not fused
_CALLED = {Conv2d: ("forward", "backward", "check_input", "convolve", "gradients"),
           _BatchNorm: ("forward", "backward", "normalize", "gradients", "eval_affine"),
           ReLU: ("forward", "backward")}


def _plain(module, cls, hooks_allowed=False):
    """The one rule: ``module`` is a ``cls`` running ``cls``'s own code, and has no hook."""
    methods = _CALLED[_BatchNorm if issubclass(cls, _BatchNorm) else cls]
    return (isinstance(module, cls) and (hooks_allowed or not module.has_hooks())
            and all(getattr(type(module), m) is getattr(cls, m) for m in methods))


def _patterns(inference):
    """(fused class, layer classes) in the order they are tried at each position."""
    chains = [(ConvBnReLU2d, (Conv2d, BatchNorm2d, ReLU)), (ConvBn2d, (Conv2d, BatchNorm2d))] if inference else []
    return chains + [(ConvReLU2d, (Conv2d, ReLU)), (BatchNormReLU, (_BatchNorm, ReLU))]


def _group_at(mods, i, inference, hooks_allowed=False):
    """(fused class, length) of the group starting at mods[i], or None."""
    for fused, classes in _patterns(inference):
        group = mods[i:i + len(classes)]
        if len(group) == len(classes) and all(_plain(m, c, hooks_allowed) for m, c in zip(group, classes)):
            if classes[1:2] == (BatchNorm2d,) and group[1].num_features != group[0].out_channels:
                continue
            return fused, len(classes)
    return None


def fuse_chain(slots, names, prefix="", inference=False):
    """Fuses the chain ``names`` of ``slots`` (a dict name -> module, or a module whose children
    they are) in place."""
    get = slots.__getitem__ if isinstance(slots, dict) else lambda n: getattr(slots, n)
    put = slots.__setitem__ if isinstance(slots, dict) else lambda n, m: setattr(slots, n, m)
    mods = [get(n) for n in names]
    i = 0
    while i < len(mods):
        found = _group_at(mods, i, inference)
        if found is None:
            hooked = _group_at(mods, i, inference, hooks_allowed=True)
            if hooked:
                warnings.warn(f"npnet.fuse: {', '.join(_join(prefix, n) for n in names[i:i + hooked[1]])} "
                              "left unfused: a layer there has a hook", stacklevel=3)
            i += 1
            continue
        fused, k = found
        group = dict(zip(names[i:i + k], mods[i:i + k]))
        put(names[i], fused(group))
        for n in names[i + 1:i + k]:
            put(n, Merged(into=names[i]))
        i += k


def fuse(model, inference=False):
    """Replaces fusable neighbours of ``model`` by fused modules, in place, and returns ``model``.

    ``inference=True`` also folds eval-mode BatchNorm2d layers into the convolution before them
    (the model must be in eval mode; call ``npnet.unfuse(model)`` before training it again).
    The fused model computes the same function, to rounding (``fused.py`` says how much)."""
    if inference and any(isinstance(m, _BatchNorm) and m.training for m in model.modules()):
        raise ValueError("npnet.fuse(inference=True) folds BatchNorm's running statistics into the "
                         "convolutions: call model.eval() first")
    _fuse_module(model, "", inference)
    return model


def _fuse_module(module, prefix, inference):
    if isinstance(module, (Fused, ResidualReLU)):
        return
    if isinstance(module, Sequential):
        fuse_chain(module, list(module._modules), prefix, inference)
    elif isinstance(module, ResidualBlock):
        fuse_chain(module, list(module.branch_names), prefix, inference)
    for name, child in list(module._modules.items()):
        path = _join(prefix, name)
        if isinstance(child, ResidualBlock) and _block_fusable(child):
            children = dict(child._modules)
            fuse_chain(children, list(child.branch_names), path, inference)
            for inner, grandchild in children.items():
                _fuse_module(grandchild, _join(path, inner), inference)
            setattr(module, name, ResidualReLU(child, children))
        else:
            _fuse_module(child, path, inference)


def _block_fusable(block):
    act = getattr(block, block.act_name)
    if block.has_hooks() or not _plain(act, ReLU):
        if block.has_hooks() or act.has_hooks():
            warnings.warn(f"npnet.fuse: {type(block).__name__} has a hook on it or on its {block.act_name}: "
                          "its ending is left unfused", stacklevel=4)
        return False
    return True


def unfuse(model):
    """Puts the original layers back in place of every fused module of ``model``; returns ``model``."""
    for module in list(model.modules()):
        for name, child in list(module._modules.items()):
            if isinstance(child, ResidualReLU):
                unfuse(child)  # fused modules inside it go back into its own slots (the block's)
                object.__setattr__(child.block, "training", child.training)
                setattr(module, name, child.block)
            elif isinstance(child, Fused):
                for inner, layer in child._modules.items():
                    setattr(module, inner, layer)
    return model


def fused_modules(model):
    """The names of the fused modules of ``model`` (``"0+1"``, ``"layer.3"``), in order."""
    return [name for name, m in model.named_modules() if isinstance(m, (Fused, ResidualReLU))]


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name
