"""Gradient clipping, as ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_``.

Both act in place on ``Parameter.grad`` of the parameters that require a gradient (a frozen one
has no gradient in PyTorch) and keep each gradient's dtype.
"""
import math

import numpy as np

from .parameter import Parameter

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(parameters, name):
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    params = list(parameters)
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"{name}: expected Parameters (e.g. model.parameters()), got {type(p).__name__}")
    return [p.grad for p in params if p.requires_grad]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scales all gradients together so that their joint norm is at most ``max_norm``.

    The total norm is the ``norm_type``-norm of the per-parameter norms (``inf``: the largest
    absolute entry); gradients are multiplied by ``min(1, max_norm / (total + 1e-6))``, PyTorch's
    formula. Returns the total norm before clipping, as a Python float. With
    ``error_if_nonfinite`` a NaN or infinite total norm raises RuntimeError (as PyTorch) and
    changes nothing.
    """
    grads = _grads(parameters, "clip_grad_norm_")
    norm_type = float(norm_type)
    if not grads:
        return 0.0
    if math.isinf(norm_type):
        total = max(float(np.max(np.abs(g), initial=0.0)) for g in grads)
    else:
        norms = [float(np.linalg.norm(g.reshape(-1), ord=norm_type)) for g in grads]
        total = float(np.linalg.norm(np.array(norms), ord=norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is "
                           f"{total}; set error_if_nonfinite=False to clip anyway")
    coef = min(1.0, float(max_norm) / (total + 1e-6))
    if coef < 1.0:  # PyTorch multiplies by the clamped coefficient; 1.0 changes nothing
        for g in grads:
            g *= g.dtype.type(coef)
    return total


def clip_grad_value_(parameters, clip_value):
    """Clamps every gradient entry into ``[-clip_value, clip_value]`` in place; returns None."""
    clip_value = float(clip_value)
    for g in _grads(parameters, "clip_grad_value_"):
        np.clip(g, -clip_value, clip_value, out=g)
