"""The module contract: Parameter, Module.

Conventions (written down once, here):

* ``Parameter.grad`` has the shape and dtype of ``Parameter.data``. ``backward`` **adds** into it
  (``+=``); only ``zero_grad()`` clears it, so a weight used twice gets both contributions.
  A module instance holds the cache of one forward at a time: to use the same weights twice in
  one pass, give two modules the same ``Parameter`` (``b.weight = a.weight``).
* ``Module.forward(x)`` stores in ``self.cache`` exactly what ``backward`` reads;
  ``Module.backward(dout)`` returns ``dx``. ``module(x)`` calls ``forward``.
* ``input_grad`` (default True): when a model's ``input_grad`` is False, ``backward`` skips the
  gradient with respect to the model's input, which training never uses (PyTorch skips it too, as
  the images do not require grad), and returns None. ``Sequential`` passes the flag to its first
  child with parameters; ``Linear`` and ``Conv2d`` then skip their ``dx`` (a third of an MLP's
  backward). The trainers set it; set it back to True to get input gradients (saliency maps).
* Inside ``with no_grad():`` (PyTorch's name and meaning) a module keeps no cache, so inference
  holds no activations of earlier layers; ``backward`` after such a forward is an error.
* Parameters, buffers (e.g. BatchNorm running statistics) and sub-modules register themselves on
  attribute assignment. ``state_dict()`` keys are PyTorch's: ``"0.weight"``, ``"layer1.0.bn1.running_var"``.
"""
from collections import OrderedDict
import functools

import numpy as np

_grad_enabled = [True]  # a list so that no_grad can flip it in place


class no_grad:
    """Context manager (or decorator) for inference: forwards inside it keep no backward cache.

    ``with npnet.no_grad(): logits = model(x)``. Nests; restores the previous state on exit.
    """

    def __enter__(self):
        self._prev = _grad_enabled[0]
        _grad_enabled[0] = False
        return self

    def __exit__(self, *exc):
        _grad_enabled[0] = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)
        return wrapped


def is_grad_enabled():
    """False inside ``no_grad()``."""
    return _grad_enabled[0]


class Parameter:
    """A trainable array and its accumulated gradient (same shape, same dtype)."""

    def __init__(self, data):
        data = np.asarray(data)
        if not np.issubdtype(data.dtype, np.floating):
            raise TypeError(f"Parameter: expected a floating-point array, got dtype {data.dtype}")
        self.data = data
        self.grad = np.zeros_like(data)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def zero_grad(self):
        self.grad[...] = 0

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of every layer and model.

    Subclasses implement ``forward(x)`` and ``backward(dout)`` and may override ``extra_repr``.
    """
    input_grad = True  # see the module docstring

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
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
        raise NotImplementedError(f"{type(self).__name__}.forward is not implemented")

    def backward(self, dout):
        raise NotImplementedError(f"{type(self).__name__}.backward is not implemented")

    def __call__(self, x):
        out = self.forward(x)
        if not _grad_enabled[0]:
            object.__setattr__(self, "cache", None)  # inference: free this layer's activations now
        return out

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
        return iter(self._modules.values())

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
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
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self):
        for mod_name, mod in self.named_modules():
            for name in mod._buffers:
                yield (f"{mod_name}.{name}" if mod_name else name), getattr(mod, name)

    def num_parameters(self):
        return int(sum(p.data.size for p in self.parameters()))

    # -- modes and state ----------------------------------------------------------------------
    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
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
        """Copies arrays into this module. Missing, unexpected or mis-shaped keys raise one
        ``ValueError`` listing all of them (unexpected and missing are ignored if ``strict=False``).
        Values keep this module's dtype."""
        own = self._state_targets()
        given = {k: np.asarray(v) for k, v in state_dict.items()}
        missing = [k for k in own if k not in given]
        unexpected = [k for k in given if k not in own]
        bad_shape = [f"{k}: expected {own[k][2]}, got {given[k].shape}"
                     for k in own if k in given and given[k].shape != own[k][2]]
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if bad_shape:
            problems.append("shape mismatch: " + "; ".join(bad_shape))
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + " | ".join(problems))
        for key, (mod, name, shape) in own.items():
            if key not in given:
                continue
            if name in mod._parameters:
                p = mod._parameters[name]
                p.data = given[key].astype(p.data.dtype, copy=True)
                if p.grad.shape != p.data.shape:
                    p.grad = np.zeros_like(p.data)
            else:
                old = getattr(mod, name)
                mod._set_buffer(name, given[key].astype(old.dtype, copy=True).reshape(old.shape))
        return self

    def _state_targets(self):
        targets = OrderedDict()
        for mod_name, mod in self.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                targets[pre + name] = (mod, name, p.data.shape)
            for name in mod._buffers:
                targets[pre + name] = (mod, name, np.shape(getattr(mod, name)))
        return targets

    # -- printing -----------------------------------------------------------------------------
    def extra_repr(self):
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
