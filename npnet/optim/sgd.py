"""SGD: gradient descent (full-batch or mini-batch), heavy-ball momentum, Nesterov momentum."""
from .optimizer import Optimizer, check_lr


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's update rule (dampening 0).

    Full-batch gradient descent and mini-batch SGD are this same update; only the batch that
    produced the gradient differs. For each parameter p with gradient g, every ``step()``:

        g = g + weight_decay * p              # L2 penalty added to the gradient
        buf = g (first step), else buf = momentum * buf + g
        g = g + momentum * buf (nesterov), else g = buf
        p = p - lr * g

    The learning rate multiplies the buffer rather than being folded into it (PyTorch's form, not
    Sutskever et al.'s ``v = mu v - lr g``): a new lr takes effect at once, the buffer keeps its scale.
    State: ``momentum_buffer[i]`` per parameter (None until the first step, and when momentum = 0).
    A frozen parameter (``requires_grad=False``) is skipped: no update, no decay, its buffer kept.

    Args:
        params: an iterable, ``model.parameters()``, or param-group dicts (see ``Optimizer``).
        lr (float): the learning rate, >= 0 (required, as in PyTorch).
        momentum (float): in [0, 1) (default 0: plain SGD).
        nesterov (bool): Nesterov momentum; needs momentum > 0 (default False).
        weight_decay (float): the L2 penalty, >= 0 (default 0).

    Example:
        >>> import numpy as np
        >>> from npnet import nn, optim
        >>> model = nn.Linear(3, 2, rng=0)
        >>> optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> model.weight.grad[...] = 1.0  # as a backward pass leaves it
        >>> before = model.weight.data.copy()
        >>> optimizer.step()
        >>> np.allclose(model.weight.data, before - 0.1)
        True
    """

    _state_names = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov,
                         weight_decay=weight_decay)

    def _check_group(self, group, where):
        check_lr(group["lr"], where)
        if not 0.0 <= group["momentum"] < 1.0:
            raise ValueError(f"{where}: momentum must be in [0, 1), got {group['momentum']}")
        if group["nesterov"] and group["momentum"] == 0:
            raise ValueError(f"{where}: nesterov=True needs momentum > 0, got momentum=0")
        if not group["weight_decay"] >= 0.0:
            raise ValueError(f"{where}: weight_decay must be >= 0, got {group['weight_decay']}")

    def step(self):
        """Updates every trainable parameter in place from its ``grad`` (frozen ones are skipped)."""
        self._begin_step()
        for group, i, p in self._each():
            g = self._decayed_grad(group, p)
            momentum = group["momentum"]
            if momentum:
                buf = self.momentum_buffer[i]
                if buf is None:
                    buf = self.momentum_buffer[i] = g.copy()
                else:
                    buf *= momentum
                    buf += g
                g = g + momentum * buf if group["nesterov"] else buf
            p.data -= group["lr"] * g
