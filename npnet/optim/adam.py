"""Adam and AdamW, exactly as torch.optim (amsgrad=False)."""
import math

import numpy as np

from .optimizer import Optimizer, check_lr


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with PyTorch's update. For each parameter at step t = 1, 2, ...:

        g = g + weight_decay * p                          # Adam: L2 added to the gradient
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    eps is added to the bias-corrected sqrt(v) (the paper's Algorithm 1 and PyTorch), not to the
    uncorrected one. State: ``exp_avg[i]``, ``exp_avg_sq[i]`` (m and v, created at the first step,
    dtype of the parameter) and ``steps[i]``, the t of that parameter (an int64 scalar), counted
    per parameter as PyTorch's ``state["step"]``: a parameter that was frozen (``requires_grad=
    False``, skipped by ``step()``) and is then unfrozen starts at t = 1 with full bias correction,
    not at the optimizer's step count. A state dict saved before ``steps`` existed loads with every
    parameter that has buffers at the optimizer's ``"step"``.

    Args:
        params: an iterable, ``model.parameters()``, or param-group dicts (see ``Optimizer``).
        lr (float): the learning rate, >= 0 (default 1e-3).
        betas (tuple): (beta1, beta2), the decay rates of m and v, each in [0, 1) (default
            (0.9, 0.999)).
        eps (float): added to the denominator, >= 0 (default 1e-8).
        weight_decay (float): the L2 penalty added to the gradient, >= 0 (default 0); for decoupled
            weight decay use ``AdamW``.

    Example:
        >>> import numpy as np
        >>> from npnet import nn, optim
        >>> model = nn.Linear(3, 2, rng=0)
        >>> optimizer = optim.Adam(model.parameters(), lr=1e-3)
        >>> model.weight.grad[...] = 5.0
        >>> before = model.weight.data.copy()
        >>> optimizer.step()  # the first step moves each weight by about lr
        >>> np.allclose(model.weight.data, before - 1e-3, atol=1e-6)
        True
    """

    _state_names = ("exp_avg", "exp_avg_sq", "steps")
    _scalar_states = ("steps",)
    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def _check_group(self, group, where):
        check_lr(group["lr"], where)
        betas = group["betas"]
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"{where}: betas must be two numbers in [0, 1), got {betas}")
        if not group["eps"] >= 0.0:
            raise ValueError(f"{where}: eps must be >= 0, got {group['eps']}")
        if not group["weight_decay"] >= 0.0:
            raise ValueError(f"{where}: weight_decay must be >= 0, got {group['weight_decay']}")

    def step(self):
        """Updates every trainable parameter in place from its ``grad`` (frozen ones are skipped)."""
        self._begin_step()
        for group, i, p in self._each():
            lr, wd = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            g = p.grad
            if wd and self.decoupled:
                p.data *= 1 - lr * wd
            elif wd:
                g = g + wd * p.data
            if self.exp_avg[i] is None:
                self.exp_avg[i], self.exp_avg_sq[i] = np.zeros_like(p.data), np.zeros_like(p.data)
                self.steps[i] = np.array(0, dtype=np.int64)
            self.steps[i] += 1
            t = int(self.steps[i])
            m, v = self.exp_avg[i], self.exp_avg_sq[i]
            m += (1 - beta1) * (g - m)  # = beta1 * m + (1 - beta1) * g, PyTorch's lerp
            v *= beta2
            v += (1 - beta2) * (g * g)
            denom = np.sqrt(v) / math.sqrt(1 - beta2 ** t) + group["eps"]
            p.data -= lr / (1 - beta1 ** t) * (m / denom)

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        for i, m in enumerate(self.exp_avg):
            if m is not None and self.steps[i] is None:  # saved before per-parameter steps
                self.steps[i] = np.array(self.step_count, dtype=np.int64)
        return self


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as torch.optim.AdamW.

    Before the Adam update of ``Adam`` (whose gradient is then left without the L2 term):
    ``p = p * (1 - lr * weight_decay)``. Default weight_decay is PyTorch's 1e-2.

    Args:
        params: an iterable, ``model.parameters()``, or param-group dicts (see ``Optimizer``).
        lr (float): the learning rate, >= 0 (default 1e-3).
        betas (tuple): (beta1, beta2), each in [0, 1) (default (0.9, 0.999)).
        eps (float): added to the denominator, >= 0 (default 1e-8).
        weight_decay (float): the decoupled decay, >= 0 (default 1e-2).

    Example:
        >>> from npnet import nn, optim
        >>> model = nn.Linear(3, 2, rng=0)
        >>> optimizer = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        >>> optimizer.zero_grad(); optimizer.step()  # a zero gradient: only the decay acts
    """

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
