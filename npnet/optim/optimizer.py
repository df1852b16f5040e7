"""Optimizer base: parameter groups, zero_grad, the ``lr`` property and flat state dicts."""
import math

import numpy as np

from ..nn.module import Module, Parameter


class Optimizer:
    """Base class of the optimizers.

    ``params`` is an iterable of ``Parameter`` or of param-group dicts, as in PyTorch:
    ``[{"params": [w1, w2]}, {"params": [b], "weight_decay": 0.0}]``; a group's keys override the
    constructor's values for that group (unknown keys raise, so a typo cannot be ignored).
    ``self.params`` is the flat list of every group's parameters in order; per-parameter state
    lives in lists indexed like it (``_state_names`` names them) and is created at the first step.

    A parameter with ``requires_grad=False`` is skipped by ``step()`` entirely, as PyTorch skips a
    parameter whose ``grad`` is None: no update, no weight decay, no change to its state, even if
    its ``grad`` holds numbers. Unfrozen later, it starts its state where it stopped.

    Learning rate: PyTorch's rule, ``lr >= 0`` (0 is allowed, a negative rate is refused), and it
    must be finite. ``step()`` checks every group's hyperparameters again before it changes
    anything, so a NaN or inf written into ``param_groups[g]["lr"]`` (by hand or by a schedule)
    raises a ValueError naming the optimizer and the group instead of turning the weights to NaN.

    ``state_dict()`` is a **flat** ``dict`` of ``str -> numpy array`` (no pickle: it round-trips
    through ``np.savez`` / ``np.load(allow_pickle=False)``):

    * ``"step"``: steps taken (int64 scalar);
    * ``"group.<g>.params"``: indices into the flat parameter list of group g;
    * ``"group.<g>.<hyperparameter>"``: e.g. ``"group.0.lr"``, ``"group.1.betas"`` (shape (2,));
    * ``"state.<i>.<buffer>"``: e.g. ``"state.3.momentum_buffer"``, only once the buffer exists.
      Buffers have their parameter's shape and dtype, except the per-parameter counters named in
      ``_scalar_states`` (int64 scalars, e.g. Adam's ``"state.3.steps"``).

    Args:
        params: an iterable of ``Parameter`` (``model.parameters()``) or of param-group dicts.
        **defaults: the hyperparameters of every group (``lr``, ...), given by the subclass.
    """

    _state_names = ()
    _scalar_states = ()

    def __init__(self, params, **defaults):
        self.defaults = defaults
        self.param_groups = [self._make_group(g, k) for k, g in enumerate(_as_groups(self, params))]
        self.params = [p for group in self.param_groups for p in group["params"]]
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError(f"{self._name}: a parameter appears more than once in params")
        for name in self._state_names:
            setattr(self, name, [None] * len(self.params))
        self.step_count = 0

    @property
    def _name(self):
        return type(self).__name__

    def _make_group(self, given, k):
        unknown = sorted(set(given) - set(self.defaults) - {"params"})
        if unknown:
            raise ValueError(f"{self._name}: param group {k} has unknown keys {unknown}; "
                             f"allowed: params, {', '.join(self.defaults)}")
        params = given["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        bad = [type(p).__name__ for p in params if not isinstance(p, Parameter)]
        if bad or not params:
            raise TypeError(f"{self._name}: param group {k} must hold at least one Parameter, "
                            f"got {bad or 'none'}")
        where = self._name + (f" (param group {k})" if k else "")
        group = {"params": params}
        for key, default in self.defaults.items():
            try:
                group[key] = _coerce(given.get(key, default), default)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: invalid {key} {given.get(key, default)!r}") from None
        self._check_group(group, where)
        return group

    def _check_group(self, group, where):
        """Subclasses raise ValueError naming ``where`` for invalid hyperparameters."""
        check_lr(group["lr"], where)

    def _each(self):
        """Yields ``(group, i, p)`` over every parameter that requires a gradient, i its index in
        the flat list; frozen parameters are passed over."""
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                if p.requires_grad:
                    yield group, i, p
                i += 1

    @staticmethod
    def _decayed_grad(group, p):
        """``p.grad`` plus the L2 term ``weight_decay * p.data`` (PyTorch's coupled weight decay of
        SGD, RMSprop and Adagrad), a new array only when there is decay."""
        return p.grad + group["weight_decay"] * p.data if group["weight_decay"] else p.grad

    def _begin_step(self):
        """Checks every group before anything changes (a NaN lr would poison every weight), then
        counts the step."""
        for k, group in enumerate(self.param_groups):
            self._check_group(group, f"{self._name}.step (param group {k})")
        self.step_count += 1

    def zero_grad(self, set_to_none=True):
        """Zeroes every gradient. ``set_to_none`` is accepted for PyTorch's signature; npnet always
        keeps zeroed arrays, because ``backward`` adds into ``grad`` in place."""
        for p in self.params:
            p.zero_grad()

    def step(self):
        """Updates every trainable parameter in place from its ``grad`` (frozen ones are skipped)."""
        raise NotImplementedError(f"{self._name}.step is not implemented")

    @property
    def lr(self):
        """The learning rate of the first param group (set it for other groups in param_groups)."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        check_lr(value, f"{self._name}.lr")
        self.param_groups[0]["lr"] = float(value)

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self):
        """A flat dict of copies, ``str -> numpy array`` (see the class docstring for the keys)."""
        state = {"step": np.array(self.step_count, dtype=np.int64)}
        start = 0
        for g, group in enumerate(self.param_groups):
            size = len(group["params"])
            state[f"group.{g}.params"] = np.arange(start, start + size, dtype=np.int64)
            start += size
            for key in self.defaults:
                state[f"group.{g}.{key}"] = np.array(group[key])
        for name in self._state_names:
            for i, buf in enumerate(getattr(self, name)):
                if buf is not None:
                    state[f"state.{i}.{name}"] = buf.copy()
        return state

    def load_state_dict(self, state_dict):
        """Restores a ``state_dict()`` of an optimizer built over the same parameter shapes.

        Problems (missing, unexpected or mis-shaped keys) raise one ``ValueError`` listing them.
        Buffers are copied and cast to their parameter's dtype.
        """
        given = {k: np.asarray(v) for k, v in state_dict.items()}
        expected = self.state_dict()
        problems = [f"missing key {k}" for k in expected if k.startswith(("step", "group.")) and
                    k not in given]
        for key, value in given.items():
            problem = self._check_key(key, value, expected)
            if problem:
                problems.append(problem)
        if problems:
            raise ValueError(f"{self._name}.load_state_dict: " + "; ".join(problems))
        self.step_count = int(given["step"])
        for g, group in enumerate(self.param_groups):
            for key, default in self.defaults.items():
                group[key] = _coerce(given[f"group.{g}.{key}"], default)
        for name in self._state_names:
            buffers = getattr(self, name)
            for i, p in enumerate(self.params):
                buf = given.get(f"state.{i}.{name}")
                dtype = np.int64 if name in self._scalar_states else p.data.dtype
                buffers[i] = None if buf is None else buf.astype(dtype, copy=True)
        return self

    def _check_key(self, key, value, expected):
        if key.startswith("state."):
            _, idx, name = (key.split(".") + ["", ""])[:3]
            if name not in self._state_names or not idx.isdigit() or int(idx) >= len(self.params):
                return f"unexpected key {key}"
            shape = () if name in self._scalar_states else self.params[int(idx)].data.shape
        elif key in expected:
            shape = expected[key].shape
        else:
            return f"unexpected key {key}"
        if value.shape != shape:
            return f"{key}: expected shape {shape}, got {value.shape}"
        if key.endswith(".params") and not np.array_equal(value, expected[key]):
            return f"{key}: parameter indices {value.tolist()} differ from {expected[key].tolist()}"
        return None

    def __repr__(self):
        groups = "; ".join(", ".join(f"{k}={g[k]}" for k in self.defaults) for g in self.param_groups)
        return f"{self._name}({groups})"


def _as_groups(opt, params):
    """A list of group dicts from an iterable of Parameters or of dicts."""
    if isinstance(params, (Parameter, Module, dict)):
        hint = " (pass model.parameters())" if isinstance(params, Module) else ""
        raise TypeError(f"{opt._name}: params must be an iterable of Parameters or of dicts, "
                        f"got a {type(params).__name__}{hint}")
    items = list(params)
    if not items:
        raise ValueError(f"{opt._name}: got an empty parameter list")
    if all(isinstance(p, dict) for p in items):
        if any("params" not in g for g in items):
            raise ValueError(f"{opt._name}: every param group dict needs a 'params' key")
        return items
    return [{"params": items}]


def _coerce(value, default):
    """Hyperparameters as Python scalars, so float32 arrays are never upcast by a NumPy float64."""
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, tuple):
        return tuple(float(v) for v in np.asarray(value).reshape(-1))
    return float(value)


def check_lr(lr, where):
    """PyTorch refuses a negative rate and accepts 0; npnet also refuses NaN and inf."""
    ok = isinstance(lr, (int, float, np.number)) and math.isfinite(lr) and lr >= 0
    if not ok:
        raise ValueError(f"{where}: invalid learning rate {lr!r} (expected a finite number >= 0)")
