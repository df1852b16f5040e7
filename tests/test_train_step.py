"""train_step: the one training step. It equals the hand-written step bit for bit, stops before
the backward pass on NaN or inf, and is the step the Trainer runs (no second copy of it)."""
import inspect

import numpy as np
import pytest

from npnet import nn
from npnet.data import DataLoader
from npnet.losses import CrossEntropyLoss, MSELoss
from npnet.optim import SGD, Adam
from npnet.train import NonFiniteError, NonFiniteLossError, Trainer, train_step
from npnet.train import trainer as trainer_module


def small_cnn(seed=0):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=rng), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Dropout(0.2, rng=rng), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 5, rng=rng))


def batches(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((6, 1, 8, 8), dtype=np.float32), rng.integers(0, 5, 6))
            for _ in range(n)]


def state(model, optimizer):
    return {**{f"m.{k}": v for k, v in model.state_dict().items()},
            **{f"o.{k}": v for k, v in optimizer.state_dict().items()},
            **{f"g.{k}": p.grad.copy() for k, p in model.named_parameters()}}


@pytest.mark.parametrize("make_optimizer", [lambda p: SGD(p, 0.1, momentum=0.9, weight_decay=1e-3),
                                            lambda p: Adam(p, 1e-2)])
def test_train_step_equals_the_hand_written_step_bit_for_bit(make_optimizer):
    ours, theirs = small_cnn(), small_cnn()
    opt_ours, opt_theirs = make_optimizer(ours.parameters()), make_optimizer(theirs.parameters())
    crit_ours, crit_theirs = CrossEntropyLoss(), CrossEntropyLoss()
    for x, y in batches():
        loss, correct = train_step(ours, crit_ours, opt_ours, x, y)

        opt_theirs.zero_grad()
        out = theirs(x)
        expected = crit_theirs(out, y)
        theirs.backward(crit_theirs.backward(), input_grad=False)
        opt_theirs.step()

        assert loss == expected and isinstance(loss, float)
        assert correct == int((out.argmax(axis=1) == y).sum()) and isinstance(correct, int)
        a, b = state(ours, opt_ours), state(theirs, opt_theirs)
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def test_no_accuracy_for_targets_that_are_not_labels():
    rng = np.random.default_rng(0)
    model = nn.Linear(4, 3, rng=rng)
    x = rng.standard_normal((5, 4), dtype=np.float32)
    onehot = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1]]
    loss, correct = train_step(model, MSELoss(), SGD(model.parameters(), 0.1), x, onehot)
    assert loss > 0 and correct is None


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("where", ["outputs", "loss"])
def test_non_finite_stops_before_the_backward_pass(where):
    model = small_cnn()
    opt = SGD(model.parameters(), 0.1, momentum=0.9)
    (x, y), = batches(1)
    train_step(model, CrossEntropyLoss(), opt, x, y)  # momentum buffers exist
    before = {k: v for k, v in state(model, opt).items() if not k.startswith("g.")}
    crit = CrossEntropyLoss()
    if where == "outputs":
        x = x.copy()
        x[0, 0, 0, 0] = np.nan
    else:
        crit.forward = lambda out, y: float("nan")
    with pytest.raises(NonFiniteError, match="non-finite values") as e:
        train_step(model, crit, opt, x, y)
    assert e.value.what == {"outputs": "the model's outputs", "loss": "the loss"}[where]
    after = state(model, opt)
    for k, v in before.items():
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked")):  # forward ran
            assert np.array_equal(v, after[k]), k
    weights = [v for k, v in after.items() if k.startswith(("o.", "g.")) or k in
               {f"m.{name}" for name, _ in model.named_parameters()}]
    assert all(np.isfinite(v).all() for v in weights if v.dtype.kind == "f")
    assert issubclass(NonFiniteLossError, NonFiniteError) and issubclass(NonFiniteError,
                                                                          FloatingPointError)


def test_trainer_runs_every_step_through_train_step(monkeypatch):
    calls = []

    def counting(*args):
        calls.append(args)
        return train_step(*args)

    monkeypatch.setattr(trainer_module, "train_step", counting)
    model = small_cnn()
    data = batches(4)
    x, y = np.concatenate([b[0] for b in data]), np.concatenate([b[1] for b in data])
    opt, crit = SGD(model.parameters(), 0.05), CrossEntropyLoss()
    trainer = Trainer(model, crit, opt, progress=False)
    trainer.fit(DataLoader(x, y, 8, seed=0), epochs=2)
    assert len(calls) == 2 * 3 == trainer.global_step == len(trainer.history.step_loss)
    assert all(c[:3] == (model, crit, opt) for c in calls)
    # and the Trainer holds no second copy of the step
    source = inspect.getsource(trainer_module)
    for piece in ("zero_grad(", ".backward(", "optimizer.step(", "input_grad"):
        assert piece not in source, piece
