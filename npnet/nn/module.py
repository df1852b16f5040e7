"""The module contract: Parameter, Module, hooks.

Conventions (written down once, here):

* ``Parameter.grad`` has the shape and dtype of ``Parameter.data``. ``backward`` **adds** into it
  (``+=``); only ``zero_grad()`` clears it, so a weight used twice gets both contributions.
  A module instance holds the cache of one forward at a time: to use the same weights twice in
  one pass, give two modules the same ``Parameter`` (``b.weight = a.weight``).
* ``Parameter.requires_grad`` (default True) as in PyTorch: a frozen parameter gets no gradient
  (its weight-gradient product is skipped) and optimizers leave it unchanged; ``state_dict``
  still holds it. ``module.requires_grad_(False)`` freezes every parameter of a module.
* ``Module.forward(x)`` stores in ``self.cache`` exactly what ``backward`` reads;
  ``Module.backward(dout, input_grad=True)`` adds into the parameters' ``grad`` and returns
  ``dx``. ``module(x)`` calls ``forward``.
* **Input gradients are asked for at the call.** ``backward(dout, input_grad=False)`` says that
  nobody will read ``dx``: the module returns None and skips whatever only ``dx`` needs (the
  first Linear or Conv2d of a model skips its ``dx`` product, a third of an MLP's backward;
  ``Sequential`` does not even visit the parameter-free layers in front of its first trainable
  one). Training asks for none (the images do not require grad, as in PyTorch); gradient checks
  and saliency maps ask for it (the default). Composite modules pass the request on: their
  inner modules are asked for ``dx`` wherever another module reads it.
* Inside ``with no_grad():`` (PyTorch's name and meaning) a module keeps no cache, so inference
  holds no activations of earlier layers; ``backward`` after such a forward is an error.
* Hooks as in PyTorch: ``register_forward_hook(fn)`` calls ``fn(module, (x,), out)`` after every
  forward through ``module(x)``, ``register_full_backward_hook(fn)`` calls
  ``fn(module, (dx,), (dout,))`` after every ``backward`` (``dx`` is None when not asked for);
  a hook that returns a value replaces ``out`` / ``(dx,)``. Both return a handle with
  ``.remove()``. A module without hooks pays one empty-dict test per call.
* Parameters, buffers (e.g. BatchNorm running statistics) and sub-modules register themselves on
  attribute assignment. ``state_dict()`` keys are PyTorch's: ``"0.weight"``, ``"layer1.0.bn1.running_var"``.
"""
from collections import OrderedDict

import numpy as np

from .grad_mode import is_grad_enabled, no_grad  # noqa: F401  (re-exported: nn.module.no_grad)
from .hooks import RemovableHandle, with_backward_hooks
from .parameter import Parameter
from .state_dict import IncompatibleKeys, load_state  # noqa: F401  (re-exported)


class Module:
    """Base class of every layer and model, as ``torch.nn.Module``, with a hand-written backward.

    Subclasses implement ``forward(x)``, keeping in ``self.cache`` what the backward reads, and
    ``backward(dout, input_grad=True)``, which *adds* (``+=``) into each trainable parameter's
    ``grad`` and returns dx; they may override ``extra_repr``. ``forward`` and ``backward`` are
    documented here once: a layer's page lists them only where they differ (RNN's backward takes
    the gradient of ``(output, h_n)``, MultiheadAttention's returns three gradients, ...).
    Parameters and sub-modules register themselves on attribute assignment.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> class Scale(nn.Module):
        ...     def __init__(self, n):
        ...         super().__init__()
        ...         self.weight = nn.Parameter(np.ones(n, np.float32))
        ...     def forward(self, x):                        # x (N, n)
        ...         self.cache = x
        ...         return x * self.weight.data
        ...     def backward(self, dout, input_grad=True):   # dout (N, n)
        ...         x, self.cache = self.cache, None
        ...         self.weight.grad += (dout * x).sum(axis=0)
        ...         return dout * self.weight.data if input_grad else None
        >>> layer = Scale(3)
        >>> y = layer(np.full((2, 3), 2.0, np.float32))
        >>> layer.backward(np.ones((2, 3), np.float32)).shape, layer.weight.grad.tolist()
        ((2, 3), [4.0, 4.0, 4.0])
        >>> [name for name, _ in layer.named_parameters()]
        ['weight']
    """

    # the fused modules of ``fused.py``: their children keep the names they had in the container
    # (so state-dict keys do not change), and the slots they took over hold placeholders
    _inline_names = False
    _merged = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "backward" in cls.__dict__:
            cls.backward = with_backward_hooks(cls.__dict__["backward"])

    def __init__(self):
        for name in ("_parameters", "_buffers", "_modules", "_forward_hooks", "_backward_hooks"):
            object.__setattr__(self, name, OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "cache", None)

    # -- registration -------------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if name in self._buffers and isinstance(value, np.ndarray):
            # ``self.running_mean *= m`` assigns the same array back: it stays a registered buffer
            object.__setattr__(self, name, value)
            return
        # a replaced parameter or child keeps its place (Sequential's order, the state-dict key order)
        keep = ((isinstance(value, Parameter) and name in self._parameters)
                or (isinstance(value, Module) and name in self._modules))
        if not keep:
            for registry in (self._parameters, self._buffers, self._modules):
                registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, array):
        """A non-trainable array that belongs to the state dict (e.g. BatchNorm running_mean)."""
        object.__setattr__(self, name, array)
        self._buffers[name] = True

    def _set_buffer(self, name, array):
        object.__setattr__(self, name, array)

    # -- forward / backward ---------------------------------------------------------------------
    def forward(self, x):
        """The layer's output for input ``x``; keeps in ``self.cache`` exactly what ``backward``
        reads. ``module(x)`` calls it, with the hooks. Shapes: see each layer's docstring."""
        raise NotImplementedError(f"{type(self).__name__}.forward is not implemented")

    def backward(self, dout, input_grad=True):
        """Backward pass of the last ``forward``: ``dout`` is d loss / d output (the output's
        shape). Adds d loss / d parameter into each trainable parameter's ``grad`` and returns
        ``dx`` = d loss / d input (the input's shape), or None when ``input_grad`` is False."""
        raise NotImplementedError(f"{type(self).__name__}.backward is not implemented")

    def __call__(self, x):
        out = self.forward(x)
        if not is_grad_enabled():
            object.__setattr__(self, "cache", None)  # inference: free this layer's activations now
        if self._forward_hooks:
            for hook in list(self._forward_hooks.values()):
                new = hook(self, (x,), out)
                if new is not None:
                    out = new
        return out

    def register_forward_hook(self, hook):
        """``hook(module, (x,), out)`` runs after each ``module(x)``; returns a handle."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def register_full_backward_hook(self, hook):
        """``hook(module, (dx,), (dout,))`` runs after each ``backward``; returns a handle."""
        handle = RemovableHandle(self._backward_hooks)
        self._backward_hooks[handle.id] = hook
        return handle

    def has_hooks(self):
        """True if a forward or backward hook is registered on this module (not its children).
        Fusion's one rule (``fusion.fusable``) reads it: a hooked layer always runs on its own."""
        return bool(self._forward_hooks) or bool(self._backward_hooks)

    def has_trainable_parameters(self):
        """True if a parameter of this module (or of a sub-module) requires a gradient."""
        return any(p.requires_grad for p in self.parameters())

    def _saved(self):
        """The cache of the last forward, or a clear error when backward comes first."""
        if self.cache is None:
            raise RuntimeError(f"{self._label()}: backward() called before forward() "
                               "(or twice after one forward, or after a forward inside no_grad())")
        return self.cache

    def _label(self):
        extra = self.extra_repr()
        return f"{type(self).__name__}({extra})"

    # -- traversal ----------------------------------------------------------------------------
    def children(self):
        """The direct sub-modules, in registration order."""
        return iter(self._modules.values())

    def named_modules(self, prefix=""):
        """``(name, module)`` for this module (name ``prefix``) and every module below it,
        depth first; names are dotted, as in PyTorch (``"0"``, ``"3.conv1"``). The layers inside a
        fused module keep their unfused names; the fused module itself is named by them joined
        with "+" (``"0+1"``), and the placeholder slots it took over are left out."""
        yield prefix, self
        for name, child in self._modules.items():
            if child._merged:      # a slot a fused module computes: the layer is named there
                continue
            if child._inline_names:  # a fused module: "0+1+2", its layers "0", "1", "2"
                yield _joined(prefix, "+".join(child._modules)), child
                for inner, layer in child._modules.items():
                    yield from layer.named_modules(_joined(prefix, inner))
                continue
            yield from child.named_modules(_joined(prefix, name))

    def modules(self):
        """This module and every module below it (the modules of ``named_modules``)."""
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix=""):
        """Yields ``(name, Parameter)``, each parameter once even if it is shared."""
        seen = set()
        for mod_name, mod in self.named_modules(prefix):
            for name, p in mod._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        """Every ``Parameter`` of the module and its sub-modules, each once (shared ones too)."""
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self):
        """``(dotted name, array)`` for every buffer (e.g. BatchNorm's ``running_mean``)."""
        for mod_name, mod in self.named_modules():
            for name in mod._buffers:
                yield (f"{mod_name}.{name}" if mod_name else name), getattr(mod, name)

    def num_parameters(self):
        """The number of scalars in all parameters (trainable or frozen)."""
        return int(sum(p.data.size for p in self.parameters()))

    # -- modes and state ----------------------------------------------------------------------
    def zero_grad(self, set_to_none=True):
        """Zeroes every gradient. ``set_to_none`` is accepted for PyTorch's signature, but npnet
        always keeps zeroed arrays: ``backward`` adds into ``grad`` in place, with no allocation."""
        for p in self.parameters():
            p.zero_grad()

    def requires_grad_(self, requires_grad=True):
        """Sets ``requires_grad`` of every parameter (False freezes the module); returns self."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def train(self, mode=True):
        """Sets training mode (``mode=True``) or evaluation mode on this module and every module
        below it (BatchNorm and Dropout behave differently); returns ``self``."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        """Evaluation mode, as ``train(False)``; returns ``self``."""
        return self.train(False)

    def astype(self, dtype):
        """Converts every parameter (and floating buffer) to ``dtype``; returns self."""
        dtype = np.dtype(dtype)
        if not np.issubdtype(dtype, np.floating):
            raise TypeError(f"{type(self).__name__}.astype: expected a floating dtype, got {dtype}")
        for m in self.modules():
            for p in m._parameters.values():
                p.data = p.data.astype(dtype)
                p.grad = np.zeros_like(p.data)
            for name in m._buffers:
                buf = getattr(m, name)
                if np.issubdtype(buf.dtype, np.floating):
                    m._set_buffer(name, buf.astype(dtype))
            object.__setattr__(m, "cache", None)
        return self

    @property
    def dtype(self):
        """The dtype of the first parameter, or None for a module without parameters."""
        for p in self.parameters():
            return p.data.dtype
        return None

    def state_dict(self):
        """An ordered dict of copies: parameters then buffers of each module, PyTorch's keys."""
        state = OrderedDict()
        for mod_name, mod in self.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                state[pre + name] = p.data.copy()
            for name in mod._buffers:
                state[pre + name] = np.array(getattr(mod, name), copy=True)
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copies ``state_dict``'s arrays into this module with PyTorch's ``strict`` semantics and
        returns ``IncompatibleKeys``; all or nothing (a failed load changes nothing, every problem
        in one ``ValueError``); the rules (missing ``num_batches_tracked``, exact casts only) are
        those of ``npnet.nn.state_dict.load_state``."""
        return load_state(self, state_dict, strict)

    # -- printing -----------------------------------------------------------------------------
    def extra_repr(self):
        """The constructor arguments shown inside ``repr(module)``; layers override it."""
        return ""

    def __repr__(self):
        if not self._modules:
            return self._label()
        lines = [f"{type(self).__name__}("]
        for name, child in self._modules.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)


def _joined(prefix, name):
    return f"{prefix}.{name}" if prefix else name
