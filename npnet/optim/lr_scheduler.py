"""Learning-rate schedules stepped once per epoch: MultiStepLR (with warmup), ExponentialLR,
CosineAnnealingLR."""
import bisect
import math

import numpy as np

from .optimizer import Optimizer


class LRScheduler:
    """Base class: an epoch-based schedule written in closed form from the base rates.

    Convention (PyTorch's): building the scheduler sets the rate of epoch 0 in the optimizer;
    call ``scheduler.step()`` once **after** each epoch, which moves to the next epoch and sets its
    rate. ``last_epoch`` is the epoch whose rate is in the optimizer. Rates are computed from
    ``base_lrs`` (each group's lr when the scheduler was built), so a rate set by hand lasts
    only until the next ``step()``. Unlike PyTorch's, the constructors take no ``last_epoch``:
    a resumed run restores the schedule with ``load_state_dict``.

    ``state_dict()`` is a flat ``str -> numpy array`` dict: ``"last_epoch"``, ``"base_lrs"`` (one per
    group) and the schedule's hyperparameters (e.g. ``"gamma"``, ``"milestones"``).
    ``load_state_dict`` restores them and sets the optimizer's rates for ``last_epoch``.

    Args:
        optimizer (Optimizer): the npnet optimizer whose ``param_groups[g]["lr"]`` the schedule
            sets (every group, each from its own base rate).

    Example:
        >>> from npnet import nn, optim
        >>> optimizer = optim.SGD(nn.Linear(3, 2, rng=0).parameters(), lr=1.0)
        >>> scheduler = optim.ExponentialLR(optimizer, gamma=0.5)  # any schedule: the same API
        >>> scheduler.step(); scheduler.step()  # after epochs 0 and 1
        >>> scheduler.last_epoch, scheduler.get_last_lr()
        (2, [0.25])
        >>> state = scheduler.state_dict()  # saved with a checkpoint: arrays only
        >>> resumed = optim.ExponentialLR(optim.SGD(nn.Linear(3, 2, rng=0).parameters(), lr=1.0),
        ...                               gamma=0.5).load_state_dict(state)
        >>> resumed.optimizer.param_groups[0]["lr"]
        0.25
    """

    _hyper = ()  # names of the hyperparameters stored in the state dict

    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an npnet Optimizer, "
                            f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def lr_at(self, epoch):
        """The rate of every param group during ``epoch`` (0-based)."""
        return [self._rate(base, epoch) for base in self.base_lrs]

    def _rate(self, base, epoch):
        raise NotImplementedError

    def step(self):
        """Ends an epoch: sets every param group's ``lr`` to the rate of the next epoch."""
        self.last_epoch += 1
        self._apply()

    def _apply(self):
        for group, lr in zip(self.optimizer.param_groups, self.lr_at(self.last_epoch)):
            group["lr"] = float(lr)

    def get_last_lr(self):
        """The current rate of every param group, as in PyTorch."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self):
        """The schedule's state as a flat ``str -> array`` dict (epoch, base rates, settings)."""
        state = {"last_epoch": np.array(self.last_epoch, dtype=np.int64),
                 "base_lrs": np.array(self.base_lrs, dtype=np.float64)}
        state.update({name: np.array(getattr(self, name)) for name in self._hyper})
        return state

    def load_state_dict(self, state_dict):
        """Restores ``state_dict()``'s output; refuses missing or unexpected keys with a ValueError,
        changing nothing."""
        expected = self.state_dict()
        given = {k: np.asarray(v) for k, v in state_dict.items()}
        problems = sorted(set(expected) ^ set(given))
        if not problems and given["base_lrs"].shape != expected["base_lrs"].shape:
            problems = [f"base_lrs of shape {given['base_lrs'].shape} for "
                        f"{len(self.base_lrs)} param groups"]
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: missing or unexpected keys / "
                             f"bad values: {problems}")
        self.last_epoch = int(given["last_epoch"])
        self.base_lrs = [float(b) for b in given["base_lrs"]]
        for name in self._hyper:
            old = getattr(self, name)
            value = given[name]
            setattr(self, name, [int(v) for v in value] if isinstance(old, list) else type(old)(value))
        self._apply()
        return self

    def __repr__(self):
        hyper = ", ".join(f"{name}={getattr(self, name)}" for name in self._hyper)
        return f"{type(self).__name__}({hyper}, last_epoch={self.last_epoch})"


def _check(cond, name, message, value):
    if not cond:
        raise ValueError(f"{name}: {message}, got {value!r}")


class MultiStepLR(LRScheduler):
    """Step decay with optional linear warmup. During epoch e (0-based)::

        lr = base * (e + 1) / warmup_epochs                  if e < warmup_epochs
        lr = base * gamma ** (number of milestones <= e)     otherwise

    so the warmup reaches the base rate in its last epoch (e = warmup_epochs - 1). Milestones are
    absolute epochs (not shifted by the warmup); a repeated milestone multiplies by gamma twice.
    With warmup_epochs=0 this is ``torch.optim.lr_scheduler.MultiStepLR``.

    Args:
        optimizer (Optimizer): the optimizer whose groups' ``lr`` the schedule sets.
        milestones (list of int): the epochs (>= 0, 0-based) from which the rate is multiplied
            by gamma once more; any order, any iterable (they are sorted).
        gamma (float): the factor at each milestone, > 0 (default 0.1).
        warmup_epochs (int): epochs of linear warmup before the step decay, >= 0 (default 0: none;
            an npnet addition, PyTorch has no such argument).

    Example:
        >>> from npnet import nn, optim
        >>> optimizer = optim.SGD(nn.Linear(3, 2, rng=0).parameters(), lr=1.0)
        >>> scheduler = optim.MultiStepLR(optimizer, milestones=[3, 5], gamma=0.5, warmup_epochs=2)
        >>> rates = []
        >>> for epoch in range(6):
        ...     rates.append(optimizer.param_groups[0]["lr"])  # the rate of this epoch
        ...     # ... train one epoch ...
        ...     scheduler.step()
        >>> rates
        [0.5, 1.0, 1.0, 0.5, 0.5, 0.25]
    """

    _hyper = ("milestones", "gamma", "warmup_epochs")

    def __init__(self, optimizer, milestones, gamma=0.1, warmup_epochs=0):
        name = "MultiStepLR"
        milestones = list(milestones)
        _check(all(isinstance(m, (int, np.integer)) and m >= 0 for m in milestones), name,
               "milestones must be non-negative integers", milestones)
        _check(isinstance(warmup_epochs, (int, np.integer)) and warmup_epochs >= 0, name,
               "warmup_epochs must be an integer >= 0", warmup_epochs)
        _check(math.isfinite(gamma) and gamma > 0, name, "gamma must be > 0", gamma)
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma, self.warmup_epochs = float(gamma), int(warmup_epochs)
        super().__init__(optimizer)

    def _rate(self, base, epoch):
        if epoch < self.warmup_epochs:
            return base * (epoch + 1) / self.warmup_epochs
        return base * self.gamma ** bisect.bisect_right(self.milestones, epoch)


class ExponentialLR(LRScheduler):
    """``lr = base * gamma ** e`` during epoch e, as ``torch.optim.lr_scheduler.ExponentialLR``.

    Args:
        optimizer (Optimizer): the optimizer whose groups' ``lr`` the schedule sets.
        gamma (float): the factor applied after every epoch, > 0 (required, as in PyTorch).

    Example:
        >>> from npnet import nn, optim
        >>> optimizer = optim.Adam(nn.Linear(3, 2, rng=0).parameters(), lr=1.0)
        >>> scheduler = optim.ExponentialLR(optimizer, gamma=0.5)
        >>> [scheduler.lr_at(epoch)[0] for epoch in range(4)]
        [1.0, 0.5, 0.25, 0.125]
        >>> scheduler.step()  # after epoch 0
        >>> optimizer.param_groups[0]["lr"]
        0.5
    """

    _hyper = ("gamma",)

    def __init__(self, optimizer, gamma):
        _check(math.isfinite(gamma) and gamma > 0, "ExponentialLR", "gamma must be > 0", gamma)
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def _rate(self, base, epoch):
        return base * self.gamma ** epoch


class CosineAnnealingLR(LRScheduler):
    """``lr = eta_min + (base - eta_min) * (1 + cos(pi * e / T_max)) / 2`` during epoch e.

    The closed form of ``torch.optim.lr_scheduler.CosineAnnealingLR`` (no restarts); past T_max the
    cosine continues, rising again, exactly as PyTorch's sequence does.

    Args:
        optimizer (Optimizer): the optimizer whose groups' ``lr`` the schedule sets.
        T_max (int): the epoch at which the rate reaches ``eta_min``, > 0 (usually the number of
            epochs of the run).
        eta_min (float): the lowest rate, >= 0 (default 0).

    Example:
        >>> from npnet import nn, optim
        >>> optimizer = optim.SGD(nn.Linear(3, 2, rng=0).parameters(), lr=1.0, momentum=0.9)
        >>> scheduler = optim.CosineAnnealingLR(optimizer, T_max=4)
        >>> [round(scheduler.lr_at(epoch)[0], 3) for epoch in range(5)]
        [1.0, 0.854, 0.5, 0.146, 0.0]
    """

    _hyper = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max, eta_min=0.0):
        name = "CosineAnnealingLR"
        _check(isinstance(T_max, (int, np.integer)) and T_max > 0, name,
               "T_max must be a positive integer", T_max)
        _check(math.isfinite(eta_min) and eta_min >= 0, name, "eta_min must be >= 0", eta_min)
        self.T_max, self.eta_min = int(T_max), float(eta_min)
        super().__init__(optimizer)

    def _rate(self, base, epoch):
        return self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
