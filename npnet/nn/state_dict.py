"""Loading a state dict into a module with PyTorch's semantics (``Module.load_state_dict``)."""
from collections import OrderedDict, namedtuple

import numpy as np

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])
IncompatibleKeys.__doc__ = "What ``load_state_dict(..., strict=False)`` skipped, as in PyTorch."


def load_state(module, state_dict, strict=True):
    """Copies the arrays of ``state_dict`` into ``module`` with PyTorch's semantics; nothing is
    assigned unless everything fits, so a failed load leaves the module as it was.

    * strict=True: missing or unexpected keys are an error; strict=False skips them and
      returns them as ``IncompatibleKeys(missing_keys, unexpected_keys)`` (also returned,
      empty, by a strict load).
    * A missing BatchNorm ``num_batches_tracked`` is accepted and keeps its current value,
      as PyTorch does for a state dict without version metadata.
    * Shapes must match. A dtype that differs from the module's is converted only where the
      cast is exact (a widening float cast, or integers the target represents exactly);
      anything else, e.g. float64 into a float32 model, is refused naming the key.

    Every problem found is listed in one ``ValueError``.
    """
    own = state_targets(module)
    missing = [k for k in own if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in own]
    problems, values = [], {}
    if strict and missing:
        problems.append("missing keys: " + ", ".join(missing))
    if strict and unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected))
    for key, (_, _, shape, dtype) in own.items():
        if key in state_dict:
            value, problem = _converted(key, state_dict[key], shape, dtype)
            if problem:
                problems.append(problem)
            values[key] = value
    if problems:
        raise ValueError(f"{type(module).__name__}.load_state_dict: " + " | ".join(problems))
    for key, value in values.items():
        mod, name, _, _ = own[key]
        if name in mod._parameters:
            p = mod._parameters[name]
            p.data = value
            if p.grad.shape != p.data.shape:
                p.grad = np.zeros_like(p.data)
        else:
            mod._set_buffer(name, value)
    return IncompatibleKeys(missing, unexpected)


def state_targets(module):
    """``{key: (module, name, shape, dtype)}`` of every parameter and buffer."""
    targets = OrderedDict()
    for mod_name, mod in module.named_modules():
        pre = f"{mod_name}." if mod_name else ""
        for name, p in mod._parameters.items():
            targets[pre + name] = (mod, name, p.data.shape, p.data.dtype)
        for name in mod._buffers:
            buf = np.asarray(getattr(mod, name))
            targets[pre + name] = (mod, name, buf.shape, buf.dtype)
    return targets


def _converted(key, value, shape, dtype):
    """``(copy of value as dtype, None)`` or ``(None, problem)`` for one state-dict entry."""
    try:
        value = np.asarray(value)
    except Exception as e:  # e.g. a tensor on another device
        return None, f"{key}: cannot be read as an array ({e})"
    if value.shape != tuple(shape):
        return None, f"{key}: shape mismatch, expected {tuple(shape)}, got {value.shape}"
    if value.dtype == dtype or np.can_cast(value.dtype, dtype, "safe"):
        return value.astype(dtype, copy=True), None
    if np.issubdtype(value.dtype, np.integer) or value.dtype == np.bool_:
        cast = value.astype(dtype)
        if np.array_equal(cast.astype(value.dtype), value):
            return cast, None
    return None, (f"{key}: dtype {value.dtype} does not convert exactly to the module's {dtype}; "
                  f"convert it first (e.g. .astype(np.{dtype}))")
