"""Optimizers and LR schedules without PyTorch: hand-computed updates, dtypes, state dicts, errors."""
import io
import math
import re

import numpy as np
import pytest

from npnet.nn import Module, Parameter
from npnet.optim import SGD, Adagrad, Adam, AdamW, CosineAnnealingLR, ExponentialLR, MultiStepLR, RMSprop


def params(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal((3, 2)).astype(dtype)),
            Parameter(rng.standard_normal(3).astype(dtype))]


def set_grads(ps, seed):
    rng = np.random.default_rng(100 + seed)
    for p in ps:
        p.grad[...] = rng.standard_normal(p.shape)


def quadratic_grads(ps):
    """Gradient of sum(p^2 + sin(p)), so the trajectory depends on where the parameters are."""
    for p in ps:
        p.grad[...] = 2 * p.data + np.cos(p.data)


# -- update rules, by hand ------------------------------------------------------------------------------
def test_sgd_plain_is_gradient_descent():
    ps = params()
    before = [p.data.copy() for p in ps]
    set_grads(ps, 0)
    SGD(ps, lr=0.1).step()
    for p, b in zip(ps, before):
        np.testing.assert_allclose(p.data, b - 0.1 * p.grad, rtol=1e-15)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_by_hand(nesterov):
    ps = params()
    opt = SGD(ps, lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=0.01)
    ref = [p.data.copy() for p in ps]
    bufs = [None, None]
    for step in range(4):
        set_grads(ps, step)
        for i, p in enumerate(ps):
            g = p.grad + 0.01 * ref[i]
            bufs[i] = g.copy() if bufs[i] is None else 0.9 * bufs[i] + g
            ref[i] = ref[i] - 0.05 * (g + 0.9 * bufs[i] if nesterov else bufs[i])
        opt.step()
        for p, r in zip(ps, ref):
            np.testing.assert_allclose(p.data, r, rtol=1e-13)


def test_adam_by_hand_and_adamw_decouples():
    for cls, wd in ((Adam, 0.1), (AdamW, 0.1)):
        ps = params()
        opt = cls(ps, lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=wd)
        ref = [p.data.copy() for p in ps]
        m = [np.zeros_like(r) for r in ref]
        v = [np.zeros_like(r) for r in ref]
        for t in range(1, 4):
            set_grads(ps, t)
            for i, p in enumerate(ps):
                g = p.grad + (wd * ref[i] if cls is Adam else 0)
                if cls is AdamW:
                    ref[i] = ref[i] * (1 - 0.01 * wd)
                m[i] = 0.8 * m[i] + 0.2 * g
                v[i] = 0.9 * v[i] + 0.1 * g * g
                mhat, vhat = m[i] / (1 - 0.8 ** t), v[i] / (1 - 0.9 ** t)
                ref[i] = ref[i] - 0.01 * mhat / (np.sqrt(vhat) + 1e-6)
            opt.step()
            for p, r in zip(ps, ref):
                np.testing.assert_allclose(p.data, r, rtol=1e-12)


def test_param_groups_override_defaults():
    w, b = params()
    opt = SGD([{"params": [w]}, {"params": b, "lr": 1.0, "momentum": 0.5}], lr=0.1)
    assert opt.param_groups[0]["momentum"] == 0.0 and opt.param_groups[1]["momentum"] == 0.5
    w0, b0 = w.data.copy(), b.data.copy()
    w.grad[...] = 1.0
    b.grad[...] = 1.0
    opt.step()
    np.testing.assert_allclose(w.data, w0 - 0.1)
    np.testing.assert_allclose(b.data, b0 - 1.0)
    assert opt.lr == 0.1
    opt.lr = 0.5
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[1]["lr"] == 1.0


def test_zero_grad():
    ps = params()
    set_grads(ps, 0)
    SGD(ps, lr=1.0).zero_grad()
    assert all(not p.grad.any() for p in ps)


def test_module_parameters_are_accepted():
    class Tiny(Module):
        def __init__(self):
            super().__init__()
            self.w = Parameter(np.ones(3))

    model = Tiny()
    opt = Adam(model.parameters())
    assert opt.params == [model.w]


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, 0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
                                  lambda ps: Adam(ps, 1e-2, weight_decay=1e-3),
                                  lambda ps: AdamW(ps, 1e-2)])
def test_float32_stays_float32(make):
    ps = params(np.float32)
    opt = make(ps)
    for step in range(3):
        set_grads(ps, step)
        opt.step()
    assert all(p.data.dtype == np.float32 and p.grad.dtype == np.float32 for p in ps)
    assert all(v.dtype == np.float32 for v in opt.state_dict().values() if v.ndim and v.dtype.kind == "f"
               and v.shape in ((3, 2), (3,)))


# -- state dicts ----------------------------------------------------------------------------------------
def roundtrip(state):
    """Through np.savez and np.load(allow_pickle=False), as a checkpoint would go."""
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def run(opt, ps, steps, sched=None):
    for _ in range(steps):
        quadratic_grads(ps)
        opt.step()
        if sched is not None:
            sched.step()


OPTIMIZERS = {
    "sgd": lambda ps: SGD(ps, 0.1),
    "momentum": lambda ps: SGD(ps, 0.1, momentum=0.9, weight_decay=1e-2),
    "nesterov": lambda ps: SGD([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.3}], 0.1,
                               momentum=0.8, nesterov=True),
    "adam": lambda ps: Adam(ps, 0.05, weight_decay=1e-2),
    "adamw": lambda ps: AdamW([{"params": ps[:1], "betas": (0.5, 0.6)}, {"params": ps[1:]}], 0.05),
    "rmsprop": lambda ps: RMSprop([{"params": ps[:1], "centered": True}, {"params": ps[1:]}], 0.01,
                                  momentum=0.9, weight_decay=1e-2),
    "adagrad": lambda ps: Adagrad([{"params": ps[:1], "initial_accumulator_value": 0.5},
                                   {"params": ps[1:]}], 0.1, lr_decay=0.1),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_dict_resumes_exactly(name):
    ps = params()
    opt = OPTIMIZERS[name](ps)
    sched = MultiStepLR(opt, [2, 4], gamma=0.5, warmup_epochs=2)
    run(opt, ps, 3, sched)
    saved_params = [p.data.copy() for p in ps]
    opt_state, sched_state = roundtrip(opt.state_dict()), roundtrip(sched.state_dict())
    assert all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in opt_state.items())
    run(opt, ps, 4, sched)

    ps2 = params(seed=7)
    for p, s in zip(ps2, saved_params):
        p.data[...] = s
    opt2 = OPTIMIZERS[name](ps2)
    sched2 = MultiStepLR(opt2, [2, 4], gamma=0.5, warmup_epochs=2)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(sched_state)
    run(opt2, ps2, 4, sched2)
    for p, q in zip(ps, ps2):
        np.testing.assert_array_equal(p.data, q.data)
    assert opt2.lr == opt.lr and sched2.last_epoch == sched.last_epoch == 7


def test_state_dict_keys():
    ps = params()
    opt = SGD([{"params": ps[:1]}, {"params": ps[1:], "weight_decay": 0.1}], lr=0.1, momentum=0.9)
    assert set(opt.state_dict()) == {"step", "group.0.params", "group.1.params"} | {
        f"group.{g}.{k}" for g in (0, 1) for k in ("lr", "momentum", "nesterov", "weight_decay")}
    run(opt, ps, 1)
    state = opt.state_dict()
    assert state["step"] == 1 and state["group.1.weight_decay"] == 0.1
    np.testing.assert_array_equal(state["group.1.params"], [1])
    assert state["state.1.momentum_buffer"].shape == (3,)
    adam = Adam(ps, betas=(0.5, 0.6))
    run(adam, ps, 1)
    s = adam.state_dict()
    np.testing.assert_array_equal(s["group.0.betas"], [0.5, 0.6])
    assert {"state.0.exp_avg", "state.0.exp_avg_sq", "state.1.exp_avg"} <= set(s)


def test_load_state_dict_rejects_mismatch():
    ps = params()
    opt = SGD(ps, lr=0.1, momentum=0.9)
    run(opt, ps, 1)
    state = opt.state_dict()
    other = SGD([Parameter(np.zeros((2, 2))), ps[1]], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"SGD.load_state_dict.*state.0.momentum_buffer.*\(2, 2\)"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="unexpected key state.0.exp_avg"):
        opt.load_state_dict({**state, "state.0.exp_avg": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="missing key group.0.lr"):
        opt.load_state_dict({k: v for k, v in state.items() if k != "group.0.lr"})


# -- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda ps: SGD(ps, lr=float("inf")), r"SGD.*learning rate inf"),
    (lambda ps: SGD(ps, lr=-1), r"SGD.*learning rate -1"),
    (lambda ps: SGD(ps, lr=0.1, momentum=1.0), r"SGD.*momentum.*\[0, 1\).*1\.0"),
    (lambda ps: SGD(ps, lr=0.1, momentum=-0.1), r"SGD.*momentum.*-0\.1"),
    (lambda ps: SGD(ps, lr=0.1, nesterov=True), r"SGD.*nesterov.*momentum"),
    (lambda ps: SGD(ps, lr=0.1, weight_decay=-1), r"SGD.*weight_decay.*-1"),
    (lambda ps: SGD([{"params": ps, "lr": -2}], lr=0.1), r"SGD.*-2"),
    (lambda ps: SGD([{"params": ps, "weight_deacy": 0}], lr=0.1), r"SGD.*unknown keys.*weight_deacy"),
    (lambda ps: Adam(ps, betas=(0.9, 1.0)), r"Adam.*betas.*1\.0"),
    (lambda ps: Adam(ps, betas=(0.9,)), r"Adam.*betas"),
    (lambda ps: AdamW(ps, eps=-1e-8), r"AdamW.*eps"),
    (lambda ps: Adam(ps, lr=float("nan")), r"Adam.*learning rate nan"),
    (lambda ps: Adam([], lr=0.1), r"Adam.*empty"),
    (lambda ps: SGD(ps + ps[:1], lr=0.1), r"SGD.*more than once"),
])
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make(params())


def test_zero_lr_is_allowed_negative_refused_as_in_pytorch():
    ps = params()
    before = [p.data.copy() for p in ps]
    set_grads(ps, 0)
    for make in (lambda: SGD(ps, lr=0.0, momentum=0.9), lambda: Adam(ps, lr=0), lambda: AdamW(ps, 0.0)):
        make().step()
    assert all(np.array_equal(p.data, b) for p, b in zip(ps, before))
    with pytest.raises(ValueError, match=r"AdamW.*learning rate -1e-09.*>= 0"):
        AdamW(ps, lr=-1e-9)


@pytest.mark.parametrize("make", [lambda ps: SGD([{"params": ps[:1]}, {"params": ps[1:]}], 0.1, momentum=0.9),
                                  lambda ps: Adam([{"params": ps[:1]}, {"params": ps[1:]}], 0.1),
                                  lambda ps: AdamW([{"params": ps[:1]}, {"params": ps[1:]}], 0.1)])
@pytest.mark.parametrize("key, bad", [("lr", float("nan")), ("lr", float("inf")), ("lr", -0.1),
                                      ("weight_decay", float("nan"))])
def test_bad_hyperparameter_set_by_hand_raises_at_step_and_changes_nothing(make, key, bad):
    ps = params()
    opt = make(ps)
    run(opt, ps, 2)
    before, state = [p.data.copy() for p in ps], opt.state_dict()
    opt.param_groups[1][key] = bad
    quadratic_grads(ps)
    said = {"lr": "invalid learning rate", "weight_decay": "weight_decay must be >= 0"}[key]
    with pytest.raises(ValueError, match=re.escape(f"{type(opt).__name__}.step (param group 1): {said}")
                       + f".*{bad}"):
        opt.step()
    assert all(np.array_equal(p.data, b) for p, b in zip(ps, before))
    after = opt.state_dict()
    assert after.keys() == state.keys()
    assert all(np.array_equal(after[k], state[k]) for k in state if k != f"group.1.{key}")


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_frozen_parameter_is_skipped_entirely(name):
    ps = params()
    opt = OPTIMIZERS[name](ps)
    ps[0].requires_grad = False
    frozen, other = ps[0].data.copy(), ps[1].data.copy()
    for _ in range(5):
        quadratic_grads(ps)  # a frozen parameter with a non-zero grad is still left alone
        opt.step()
    assert np.array_equal(ps[0].data, frozen) and not np.array_equal(ps[1].data, other)
    assert not any(k.startswith("state.0.") for k in opt.state_dict())


def test_adam_counts_steps_per_parameter_as_pytorch():
    """Unfrozen after 3 steps, a parameter's first Adam update is a fresh Adam's first update
    (t = 1, full bias correction), not one at t = 4."""
    ps, fresh = params(), params()
    opt = Adam(ps, lr=0.1)
    ps[0].requires_grad = False
    run(opt, ps, 3)
    ps[0].requires_grad = True
    quadratic_grads(ps)
    quadratic_grads(fresh)
    opt.step()
    Adam(fresh[:1], lr=0.1).step()
    np.testing.assert_array_equal(ps[0].data, fresh[0].data)
    state = opt.state_dict()
    assert state["step"] == 4 and state["state.0.steps"] == 1 and state["state.1.steps"] == 4
    assert state["state.0.steps"].dtype == np.int64 and state["state.0.steps"].shape == ()


def test_adam_state_dict_without_per_parameter_steps_loads():
    """A state dict written before ``steps`` existed: every buffer is at the global step."""
    ps = params()
    opt = Adam(ps, lr=0.05)
    run(opt, ps, 3)
    old = {k: v for k, v in roundtrip(opt.state_dict()).items() if not k.endswith(".steps")}
    ps2 = [Parameter(p.data.copy()) for p in ps]
    opt2 = Adam(ps2, lr=0.05).load_state_dict(old)
    run(opt, ps, 2)
    run(opt2, ps2, 2)
    assert all(np.array_equal(p.data, q.data) for p, q in zip(ps, ps2))


def test_zero_grad_accepts_set_to_none():
    ps = params()
    set_grads(ps, 0)
    grads = [p.grad for p in ps]
    SGD(ps, lr=1.0).zero_grad(set_to_none=True)  # npnet keeps the (zeroed) arrays
    assert all(p.grad is g and not g.any() for p, g in zip(ps, grads))


def test_bad_params_types():
    with pytest.raises(TypeError, match="SGD.*Parameter"):
        SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match=r"Adam.*model.parameters\(\)"):
        Adam(Module())
    with pytest.raises(ValueError, match=r"SGD.lr.*-0\.5"):
        SGD(params(), lr=0.1).lr = -0.5


# -- schedules ------------------------------------------------------------------------------------------
def rates(sched, epochs):
    out = [sched.optimizer.lr]
    for _ in range(epochs - 1):
        sched.step()
        out.append(sched.optimizer.lr)
    return out


def test_multistep_with_warmup_sequence():
    opt = SGD(params(), lr=0.3)
    got = rates(MultiStepLR(opt, milestones=[5, 8], gamma=0.1, warmup_epochs=3), 10)
    expected = [0.1, 0.2, 0.3, 0.3, 0.3, 0.03, 0.03, 0.03, 0.003, 0.003]
    np.testing.assert_allclose(got, expected, rtol=1e-14)


def test_exponential_and_cosine_sequences():
    got = rates(ExponentialLR(SGD(params(), lr=0.2), gamma=0.5), 5)
    np.testing.assert_allclose(got, [0.2, 0.1, 0.05, 0.025, 0.0125], rtol=1e-15)
    got = rates(CosineAnnealingLR(SGD(params(), lr=1.0), T_max=4, eta_min=0.1), 9)
    half = [1.0, 0.1 + 0.9 * (1 + math.sqrt(0.5)) / 2, 0.55, 0.1 + 0.9 * (1 - math.sqrt(0.5)) / 2, 0.1]
    np.testing.assert_allclose(got, half + half[-2::-1], rtol=1e-14)


def test_schedule_scales_every_group_from_its_base():
    w, b = params()
    opt = SGD([{"params": [w]}, {"params": [b], "lr": 1.0}], lr=0.1)
    sched = ExponentialLR(opt, gamma=0.5)
    sched.step()
    assert sched.get_last_lr() == [0.05, 0.5]


def test_scheduler_state_dict_round_trip():
    opt = SGD(params(), lr=0.3)
    sched = MultiStepLR(opt, milestones=[4, 2, 6], gamma=0.5, warmup_epochs=1)
    rates(sched, 4)
    state = roundtrip(sched.state_dict())
    assert set(state) == {"last_epoch", "base_lrs", "milestones", "gamma", "warmup_epochs"}
    opt2 = SGD(params(), lr=99.0)
    sched2 = MultiStepLR(opt2, milestones=[1], gamma=0.9)
    sched2.load_state_dict(state)
    assert sched2.milestones == [2, 4, 6] and sched2.gamma == 0.5 and opt2.lr == opt.lr
    assert rates(sched2, 5) == rates(sched, 5)
    with pytest.raises(ValueError, match="ExponentialLR.load_state_dict"):
        ExponentialLR(opt2, 0.5).load_state_dict(state)


@pytest.mark.parametrize("make, match", [
    (lambda o: MultiStepLR(o, [2, -1]), "MultiStepLR.*milestones"),
    (lambda o: MultiStepLR(o, [2], warmup_epochs=-1), "MultiStepLR.*warmup_epochs"),
    (lambda o: ExponentialLR(o, 0.0), "ExponentialLR.*gamma"),
    (lambda o: CosineAnnealingLR(o, 0), "CosineAnnealingLR.*T_max"),
])
def test_bad_schedules(make, match):
    with pytest.raises(ValueError, match=match):
        make(SGD(params(), lr=0.1))
