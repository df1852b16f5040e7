"""Grad mode: ``no_grad()`` as in PyTorch. Inside it a module keeps no cache for a backward pass."""
import functools

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
