"""Adagrad and RMSprop: per-coordinate learning rates from past squared gradients, exactly as
torch.optim (single-tensor updates, no foreach/fused differences in the arithmetic)."""
import numpy as np

from .optimizer import Optimizer, check_lr


def _check_nonnegative(group, where, names):
    for name in names:
        if not group[name] >= 0.0:
            raise ValueError(f"{where}: {name} must be >= 0, got {group[name]}")


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011) with PyTorch's update. For each parameter at step t = 1, 2, ...:

        g = g + weight_decay * p                       # L2 added to the gradient
        clr = lr / (1 + (t - 1) * lr_decay)
        sum = sum + g * g                              # starts at initial_accumulator_value
        p = p - clr * g / (sqrt(sum) + eps)

    eps is added to sqrt(sum), outside the root (PyTorch's form). State: ``state_sum[i]`` (dtype of
    the parameter, made at its first step) and ``steps[i]`` (the t of that parameter, an int64
    scalar): as in PyTorch a frozen parameter (``requires_grad=False``) is skipped and its t does not
    advance.

    One difference from PyTorch: a param group's own ``initial_accumulator_value`` is used for its
    parameters; PyTorch 2.x fills every sum with the constructor's value and ignores the group's.

    Args:
        params: an iterable, ``model.parameters()``, or param-group dicts (see ``Optimizer``).
        lr (float): the learning rate, >= 0 (default 1e-2, PyTorch's as every default here).
        lr_decay (float): >= 0, as in clr above (default 0).
        weight_decay (float): the L2 penalty added to the gradient, >= 0 (default 0).
        initial_accumulator_value (float): the start of ``sum``, >= 0 (default 0).
        eps (float): added to sqrt(sum), >= 0 (default 1e-10).

    Example:
        >>> import numpy as np
        >>> from npnet import nn, optim
        >>> model = nn.Linear(3, 2, rng=0)
        >>> optimizer = optim.Adagrad(model.parameters(), lr=0.1)
        >>> model.weight.grad[...] = 2.0
        >>> before = model.weight.data.copy()
        >>> optimizer.step()  # the first step moves each weight by lr * g / |g| = lr
        >>> np.allclose(model.weight.data, before - 0.1)
        True
    """

    _state_names = ("state_sum", "steps")
    _scalar_states = ("steps",)

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10):
        super().__init__(params, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                         initial_accumulator_value=initial_accumulator_value, eps=eps)

    def _check_group(self, group, where):
        check_lr(group["lr"], where)
        _check_nonnegative(group, where, ("lr_decay", "weight_decay", "initial_accumulator_value",
                                          "eps"))

    def step(self):
        """Updates every trainable parameter in place from its ``grad`` (frozen ones are skipped)."""
        self._begin_step()
        for group, i, p in self._each():
            g = self._decayed_grad(group, p)
            if self.state_sum[i] is None:
                self.state_sum[i] = np.full_like(p.data, group["initial_accumulator_value"])
                self.steps[i] = np.array(0, dtype=np.int64)
            self.steps[i] += 1
            clr = group["lr"] / (1 + (int(self.steps[i]) - 1) * group["lr_decay"])
            self.state_sum[i] += g * g
            p.data -= clr * (g / (np.sqrt(self.state_sum[i]) + group["eps"]))


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e) with PyTorch's update. For each parameter, every ``step()``:

        g = g + weight_decay * p                       # L2 added to the gradient
        v = alpha * v + (1 - alpha) * g * g            # the mean square, starts at 0
        centered: m = alpha * m + (1 - alpha) * g, and avg = sqrt(v - m * m) + eps
        otherwise avg = sqrt(v) + eps
        momentum > 0: buf = momentum * buf + g / avg, p = p - lr * buf
        otherwise p = p - lr * g / avg

    eps is added outside the root, and the learning rate multiplies the momentum buffer rather
    than being folded into it (PyTorch's forms; TensorFlow puts eps inside the root). There is no
    bias correction, so the first steps are large (v starts at 0). State, made at a parameter's
    first step with its dtype: ``square_avg[i]``, ``momentum_buffer[i]`` (momentum > 0) and
    ``grad_avg[i]`` (centered). A frozen parameter (``requires_grad=False``) is skipped.

    Args:
        params: an iterable, ``model.parameters()``, or param-group dicts (see ``Optimizer``).
        lr (float): the learning rate, >= 0 (default 1e-2, PyTorch's).
        alpha (float): the decay of the mean square v, >= 0 (default 0.99).
        eps (float): added to the root, >= 0 (default 1e-8).
        weight_decay (float): the L2 penalty added to the gradient, >= 0 (default 0).
        momentum (float): >= 0 (default 0: no buffer).
        centered (bool): divide by the root of the variance instead of the mean square (default
            False).

    Example:
        >>> import numpy as np
        >>> from npnet import nn, optim
        >>> model = nn.Linear(3, 2, rng=0)
        >>> optimizer = optim.RMSprop(model.parameters(), lr=0.01, momentum=0.9)
        >>> model.weight.grad[...] = 1.0
        >>> optimizer.step()
        >>> optimizer.square_avg[0].shape, optimizer.momentum_buffer[0].shape  # state per parameter
        ((2, 3), (2, 3))
    """

    _state_names = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                         momentum=momentum, centered=centered)

    def _check_group(self, group, where):
        check_lr(group["lr"], where)
        _check_nonnegative(group, where, ("alpha", "eps", "momentum", "weight_decay"))

    def step(self):
        """Updates every trainable parameter in place from its ``grad`` (frozen ones are skipped)."""
        self._begin_step()
        for group, i, p in self._each():
            alpha, g = group["alpha"], self._decayed_grad(group, p)
            if self.square_avg[i] is None:
                self.square_avg[i] = np.zeros_like(p.data)
            v = self.square_avg[i]
            v *= alpha
            v += (1 - alpha) * (g * g)
            if group["centered"]:
                if self.grad_avg[i] is None:
                    self.grad_avg[i] = np.zeros_like(p.data)
                m = self.grad_avg[i]
                m += (1 - alpha) * (g - m)  # = alpha * m + (1 - alpha) * g, PyTorch's lerp
                avg = np.sqrt(v - m * m) + group["eps"]
            else:
                avg = np.sqrt(v) + group["eps"]
            if group["momentum"] > 0:
                if self.momentum_buffer[i] is None:
                    self.momentum_buffer[i] = np.zeros_like(p.data)
                buf = self.momentum_buffer[i]
                buf *= group["momentum"]
                buf += g / avg
                p.data -= group["lr"] * buf
            else:
                p.data -= group["lr"] * (g / avg)
