"""Hooks as in PyTorch: handles, and the wrapper that runs backward hooks after a ``backward``.

``register_forward_hook(fn)`` calls ``fn(module, (x,), out)`` after every forward through
``module(x)``; ``register_full_backward_hook(fn)`` calls ``fn(module, (dx,), (dout,))`` after every
``backward`` (``dx`` is None when not asked for); a hook that returns a value replaces ``out`` /
``(dx,)``. A layer with a hook never runs fused with its neighbours (``fusion.py``): the hook sees
that layer's own tensors.
"""
import functools
import inspect
import itertools


class RemovableHandle:
    """Returned by the ``register_*_hook`` methods; ``remove()`` unregisters the hook."""

    _ids = itertools.count()

    def __init__(self, hooks):
        self._hooks, self.id = hooks, next(RemovableHandle._ids)

    def remove(self):
        self._hooks.pop(self.id, None)


def with_backward_hooks(backward):
    """Wraps a subclass's ``backward``: a module with no trainable parameter asked for no input
    gradient has nothing to do and is skipped; backward hooks run after it (see the module
    docstring). Only the most derived ``backward`` of a call runs the hooks, so a subclass that
    calls ``super().backward`` does not fire them twice."""

    takes_request = "input_grad" in inspect.signature(backward).parameters

    @functools.wraps(backward)
    def run(self, dout, input_grad=True):
        if input_grad or self.has_trainable_parameters():
            # a user's layer written as backward(self, dout) still works; it always returns dx
            dx = backward(self, dout, input_grad) if takes_request else backward(self, dout)
        else:  # nothing to compute: no dx wanted and no gradient of its own
            object.__setattr__(self, "cache", None)
            dx = None
        hooks = self._backward_hooks
        if hooks and type(self).backward is run:
            for hook in list(hooks.values()):
                new = hook(self, (dx,), (dout,))
                if new is not None:
                    dx = new[0]
        return dx
    return run
