"""``module(*args, **kwargs)`` for layers whose forward takes more than one input (recurrent layers
take initial states, attention takes query, key, value and masks): ``Module.__call__`` takes one."""
from .grad_mode import is_grad_enabled


class MultiInput:
    """Mixin: ``module(a, b, key=...)`` runs ``forward(a, b, key=...)`` as ``Module.__call__`` runs
    ``forward(x)``: no cache inside ``no_grad()``; forward hooks get ``fn(module, args, out)``
    (the positional inputs, as PyTorch's hooks)."""

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        if not is_grad_enabled():
            object.__setattr__(self, "cache", None)  # inference: free the activations now
        for hook in list(self._forward_hooks.values()):
            new = hook(self, args, out)
            if new is not None:
                out = new
        return out
