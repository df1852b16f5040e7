"""Losses, optimizers and schedules against PyTorch (skipped when torch is not installed)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from npnet.losses import CrossEntropyLoss, FocalLoss, MSELoss  # noqa: E402
from npnet.nn import Parameter  # noqa: E402
from npnet.optim import (SGD, Adagrad, Adam, AdamW, CosineAnnealingLR, ExponentialLR,  # noqa: E402
                         MultiStepLR, RMSprop)

REDUCTIONS = ["mean", "sum", "none"]
WEIGHT = np.array([0.5, 2.0, 1.0, 0.25, 1.5])


def batch(n=8, c=5, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (3 * rng.standard_normal((n, c))).astype(dtype), rng.integers(0, c, n)


def ours(loss, x, y, upstream):
    """(loss value, d loss / d x) from an npnet loss; 'none' is reduced against ``upstream``."""
    value = loss(x, y)
    grad = loss.backward(upstream) if loss.reduction == "none" else loss.backward()
    return np.asarray(value), grad


def theirs(fn, x, upstream, reduction):
    xt = torch.tensor(x, requires_grad=True)
    value = fn(xt)
    (value * torch.tensor(upstream) if reduction == "none" else value).sum().backward()
    return value.detach().numpy(), xt.grad.numpy()


def compare(loss, fn, x, y, rtol=1e-12):
    upstream = np.random.default_rng(1).standard_normal(len(x)).astype(x.dtype)
    v, g = ours(loss, x, y, upstream)
    vt, gt = theirs(fn, x, upstream, loss.reduction)
    np.testing.assert_allclose(v, vt, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(g, gt, rtol=rtol, atol=rtol)


# -- losses ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, WEIGHT])
@pytest.mark.parametrize("smoothing", [0.0, 0.2, 1.0])
def test_cross_entropy(reduction, weight, smoothing):
    x, y = batch()
    wt = None if weight is None else torch.tensor(weight)
    fn = lambda xt: F.cross_entropy(xt, torch.tensor(y), weight=wt, label_smoothing=smoothing,  # noqa
                                    reduction=reduction)
    compare(CrossEntropyLoss(weight, smoothing, reduction), fn, x, y)


def test_cross_entropy_float32_huge_logits():
    x, y = batch(dtype=np.float32)
    x[0, 1], x[3, 2] = 1e4, -1e4
    fn = lambda xt: F.cross_entropy(xt, torch.tensor(y), torch.tensor(WEIGHT, dtype=torch.float32),  # noqa
                                    label_smoothing=0.1)
    compare(CrossEntropyLoss(WEIGHT, 0.1), fn, x, y, rtol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse(reduction):
    x, y = batch()
    onehot = torch.tensor(np.eye(5)[y])
    compare(MSELoss(reduction), lambda xt: F.mse_loss(xt, onehot, reduction=reduction), x, y)
    t = np.random.default_rng(3).standard_normal(x.shape)
    compare(MSELoss(reduction), lambda xt: F.mse_loss(xt, torch.tensor(t), reduction=reduction), x, t)


def torch_softmax_focal(xt, y, gamma, weight, reduction):
    logp = F.log_softmax(xt, dim=1).gather(1, torch.tensor(y)[:, None])[:, 0]
    w = torch.ones(xt.shape[1], dtype=xt.dtype) if weight is None else torch.tensor(weight)
    wy = w[torch.tensor(y)]
    per = -wy * (1 - logp.exp()) ** gamma * logp
    return {"none": per, "sum": per.sum(), "mean": per.sum() / wy.sum()}[reduction]


def torch_sigmoid_focal(xt, y, gamma, weight, reduction):
    t = F.one_hot(torch.tensor(y), xt.shape[1]).to(xt.dtype)
    bce = F.binary_cross_entropy_with_logits(xt, t, reduction="none")
    p = torch.sigmoid(xt)
    pt = p * t + (1 - p) * (1 - t)
    w = torch.ones(xt.shape[1], dtype=xt.dtype) if weight is None else torch.tensor(weight)
    per = (w[torch.tensor(y)][:, None] * (1 - pt) ** gamma * bce).sum(dim=1)
    return {"none": per, "sum": per.sum(), "mean": per.sum() / len(y)}[reduction]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, WEIGHT])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_focal(kind, gamma, weight, reduction):
    x, y = batch(seed=2)
    ref = torch_softmax_focal if kind == "softmax" else torch_sigmoid_focal
    compare(FocalLoss(gamma, weight, kind, reduction), lambda xt: ref(xt, y, gamma, weight, reduction),
            x, y)


def test_sigmoid_focal_gamma0_is_torch_bce():
    x, y = batch(seed=4)
    t = torch.tensor(np.eye(5)[y])
    wy = torch.tensor(WEIGHT[y])[:, None].expand(-1, 5)
    fn = lambda xt: F.binary_cross_entropy_with_logits(xt, t, weight=wy, reduction="sum") / len(y)  # noqa
    compare(FocalLoss(0.0, WEIGHT, "sigmoid"), fn, x, y)


# -- optimizers: five steps on a least-squares model ----------------------------------------------------
def model_data():
    rng = np.random.default_rng(5)
    return rng.standard_normal((3, 4)), rng.standard_normal(3), rng.standard_normal((6, 4)), \
        rng.standard_normal((6, 3))


def np_grads(w, b, x, t):
    """Gradients of mean((x w^T + b - t)^2), by hand."""
    dout = 2 * (x @ w.data.T + b.data - t) / t.size  # (N, out)
    w.grad[...] = dout.T @ x
    b.grad[...] = dout.sum(axis=0)


def groups(ps, split):
    if not split:
        return list(ps)
    return [{"params": [ps[0]], **split[0]}, {"params": [ps[1]], **split[1]}]


CONFIGS = {
    "sgd": (SGD, torch.optim.SGD, dict(lr=0.1), None),
    "momentum": (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9), None),
    "nesterov": (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True), None),
    "weight_decay": (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.5, weight_decay=0.05), None),
    "sgd_groups": (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9),
                   [{"weight_decay": 0.1}, {"lr": 0.3, "momentum": 0.5, "nesterov": True}]),
    "adam": (Adam, torch.optim.Adam, dict(lr=0.05), None),
    "adam_wd": (Adam, torch.optim.Adam, dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1),
                None),
    "adam_groups": (Adam, torch.optim.Adam, dict(lr=0.05),
                    [{"betas": (0.5, 0.9)}, {"lr": 0.01, "weight_decay": 0.2}]),
    "adamw": (AdamW, torch.optim.AdamW, dict(lr=0.05), None),
    "adamw_wd": (AdamW, torch.optim.AdamW, dict(lr=0.05, weight_decay=0.3), None),
    "rmsprop": (RMSprop, torch.optim.RMSprop, dict(), None),
    "rmsprop_all": (RMSprop, torch.optim.RMSprop, dict(lr=0.02, alpha=0.9, eps=1e-6, weight_decay=0.1,
                                                       momentum=0.8, centered=True), None),
    "rmsprop_groups": (RMSprop, torch.optim.RMSprop, dict(lr=0.01),
                       [{"momentum": 0.5}, {"centered": True, "alpha": 0.5}]),
    "adagrad": (Adagrad, torch.optim.Adagrad, dict(), None),
    "adagrad_all": (Adagrad, torch.optim.Adagrad, dict(lr=0.1, lr_decay=0.3, weight_decay=0.05,
                                                       initial_accumulator_value=0.2, eps=1e-6), None),
    "adagrad_groups": (Adagrad, torch.optim.Adagrad, dict(lr=0.1),
                       [{"lr_decay": 0.5}, {"weight_decay": 0.1, "eps": 1e-3}]),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_five_steps_match_torch_optim(name):
    ours_cls, torch_cls, kwargs, split = CONFIGS[name]
    w0, b0, x, t = model_data()
    w, b = Parameter(w0.copy()), Parameter(b0.copy())
    wt, bt = torch.tensor(w0, requires_grad=True), torch.tensor(b0, requires_grad=True)
    opt, opt_t = ours_cls(groups([w, b], split), **kwargs), torch_cls(groups([wt, bt], split), **kwargs)
    xt, tt = torch.tensor(x), torch.tensor(t)
    for _ in range(5):
        opt.zero_grad()
        np_grads(w, b, x, t)
        opt.step()
        opt_t.zero_grad()
        ((xt @ wt.T + bt - tt) ** 2).mean().backward()
        opt_t.step()
        np.testing.assert_allclose(w.data, wt.detach().numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(b.data, bt.detach().numpy(), rtol=1e-10, atol=1e-10)


# -- schedules ------------------------------------------------------------------------------------------
def sequences(ours_sched, torch_sched, epochs=25):
    ours_lr, torch_lr = [], []
    for _ in range(epochs):
        ours_lr.append(ours_sched.get_last_lr())
        torch_lr.append(torch_sched.get_last_lr())
        ours_sched.optimizer.step()
        torch_sched.optimizer.step()
        ours_sched.step()
        torch_sched.step()
    return np.array(ours_lr), np.array(torch_lr)


def both_optimizers():
    ps = [Parameter(np.zeros(2)), Parameter(np.zeros(1))]
    ts = [torch.zeros(2, dtype=torch.float64, requires_grad=True),
          torch.zeros(1, dtype=torch.float64, requires_grad=True)]
    return (SGD([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.5}], lr=0.1),
            torch.optim.SGD([{"params": ts[:1]}, {"params": ts[1:], "lr": 0.5}], lr=0.1))


@pytest.mark.parametrize("name", ["multistep", "exponential", "cosine"])
def test_schedules_match_torch(name):
    opt, opt_t = both_optimizers()
    lrs = torch.optim.lr_scheduler
    if name == "multistep":
        pair = MultiStepLR(opt, [3, 3, 7, 12], gamma=0.5), lrs.MultiStepLR(opt_t, [3, 3, 7, 12], gamma=0.5)
    elif name == "exponential":
        pair = ExponentialLR(opt, 0.9), lrs.ExponentialLR(opt_t, 0.9)
    else:
        pair = CosineAnnealingLR(opt, 10, eta_min=0.01), lrs.CosineAnnealingLR(opt_t, 10, eta_min=0.01)
    got, expected = sequences(*pair)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_warmup_matches_torch_linear_then_multistep():
    # Our warmup lr = base * (e + 1) / W for e < W is LinearLR(1/W -> 1 over W - 1 epochs),
    # chained (multiplied) with MultiStepLR.
    opt, opt_t = both_optimizers()
    lrs = torch.optim.lr_scheduler
    chained = lrs.ChainedScheduler([lrs.LinearLR(opt_t, start_factor=1 / 4, total_iters=3),
                                    lrs.MultiStepLR(opt_t, [6, 9], gamma=0.1)])
    got, expected = sequences(MultiStepLR(opt, [6, 9], gamma=0.1, warmup_epochs=4), chained, 15)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
@pytest.mark.parametrize("lr", [1e-3, 0.0, -0.0, -1e-12, -1.0])
def test_learning_rate_rule_is_pytorchs(name, lr):
    """A finite lr is accepted exactly when PyTorch accepts it (lr >= 0, zero included)."""
    ours_cls = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW, "RMSprop": RMSprop, "Adagrad": Adagrad}[name]
    try:
        getattr(torch.optim, name)([torch.zeros(1, requires_grad=True)], lr=lr)
        torch_accepts = True
    except ValueError:
        torch_accepts = False
    try:
        ours_cls([Parameter(np.zeros(1))], lr=lr)
        assert torch_accepts, f"npnet accepted lr={lr}, PyTorch refuses it"
    except ValueError:
        assert not torch_accepts, f"npnet refused lr={lr}, PyTorch accepts it"


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, WEIGHT])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("ignore_index, labels", [(-100, [0, -100, 4, 1, -100, 2, 3, 3]),
                                                  (3, [0, 3, 4, 1, 3, 2, 3, 1]),
                                                  (-100, [-100] * 8)])
def test_cross_entropy_ignore_index(reduction, weight, smoothing, ignore_index, labels):
    """Including a batch whose every label is ignored (PyTorch: NaN mean, zero gradient)."""
    x, _ = batch()
    y = np.array(labels)
    wt = None if weight is None else torch.tensor(weight)
    fn = lambda xt: F.cross_entropy(xt, torch.tensor(y), weight=wt, ignore_index=ignore_index,  # noqa
                                    label_smoothing=smoothing, reduction=reduction)
    compare(CrossEntropyLoss(weight, smoothing, reduction, ignore_index=ignore_index), fn, x, y)


@pytest.mark.parametrize("cls, key, bad", [
    ("RMSprop", "alpha", -0.1), ("RMSprop", "eps", -1e-8), ("RMSprop", "momentum", -0.5),
    ("RMSprop", "weight_decay", -1.0), ("Adagrad", "lr_decay", -0.1), ("Adagrad", "eps", -1.0),
    ("Adagrad", "weight_decay", -1.0), ("Adagrad", "initial_accumulator_value", -0.5)])
def test_rmsprop_and_adagrad_refuse_what_pytorch_refuses(cls, key, bad):
    with pytest.raises(ValueError):
        getattr(torch.optim, cls)([torch.zeros(1, requires_grad=True)], **{key: bad})
    with pytest.raises(ValueError, match=f"{cls}: {key} must be >= 0, got {bad}"):
        {"RMSprop": RMSprop, "Adagrad": Adagrad}[cls]([Parameter(np.zeros(1))], **{key: bad})


@pytest.mark.parametrize("name", ["rmsprop_all", "adagrad_all"])
def test_a_frozen_parameter_keeps_its_step_count_as_in_torch(name):
    """Parameter b is frozen for steps 2-3 (PyTorch: grad None); its own t (Adagrad's lr decay)
    and buffers do not advance, and the float32 state stays float32."""
    ours_cls, torch_cls, kwargs, _ = CONFIGS[name]
    w0, b0, x, t = model_data()
    w, b = Parameter(w0.copy()), Parameter(b0.copy())
    wt, bt = torch.tensor(w0, requires_grad=True), torch.tensor(b0, requires_grad=True)
    opt, opt_t = ours_cls([w, b], **kwargs), torch_cls([wt, bt], **kwargs)
    xt, tt = torch.tensor(x), torch.tensor(t)
    for k in range(5):
        b.requires_grad = k not in (1, 2)
        opt.zero_grad()
        np_grads(w, b, x, t)
        opt.step()
        opt_t.zero_grad()
        ((xt @ wt.T + bt - tt) ** 2).mean().backward()
        if k in (1, 2):
            bt.grad = None
        opt_t.step()
        np.testing.assert_allclose(w.data, wt.detach().numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(b.data, bt.detach().numpy(), rtol=1e-10, atol=1e-10)
    p32 = Parameter(np.ones(3, np.float32))
    p32.grad[...] = 0.5
    opt32 = ours_cls([p32], **kwargs)
    opt32.step()
    buffers = [getattr(opt32, n)[0] for n in opt32._state_names if n not in opt32._scalar_states]
    assert p32.data.dtype == np.float32 and {b.dtype for b in buffers if b is not None} == {np.dtype(np.float32)}
