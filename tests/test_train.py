"""Trainer: overfitting, bit-for-bit resume (epoch boundary and Ctrl-C mid-epoch), atomic
checkpoints, non-finite losses, callbacks and History files."""
import json
import os
import signal

import numpy as np
import pytest

from npnet import nn
from npnet.data import Compose, DataLoader, Normalize, RandomHorizontalFlip, load_dataset
from npnet.losses import CrossEntropyLoss
from npnet.optim import SGD, Adam, MultiStepLR
from npnet.train import (Callback, Checkpoint, EarlyStopping, History, NonFiniteLossError,
                         Trainer, load_checkpoint, save_checkpoint)


@pytest.fixture(scope="module")
def mini():
    x, y, _, _ = load_dataset("fashion-mnist-mini")
    keep = np.random.default_rng(0).permutation(len(x))[:400]
    return x[keep], y[keep]


def make_run(data, callbacks=(), seed=0, progress=False):
    """A small run with every source of randomness: Dropout, shuffling, a random flip, BN."""
    x, y = data
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32, rng=rng), nn.BatchNorm1d(32), nn.ReLU(),
                          nn.Dropout(0.3, rng=rng), nn.Linear(32, 10, rng=rng))
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    sched = MultiStepLR(opt, [1], gamma=0.5)
    norm = Normalize((0.286,), (0.353,))
    train = DataLoader(x[:300], y[:300], 32, shuffle=True, seed=seed,
                       transform=Compose([RandomHorizontalFlip(seed=seed + 1), norm]))
    val = DataLoader(x[300:], y[300:], 50, shuffle=False, transform=norm)
    trainer = Trainer(model, CrossEntropyLoss(), opt, sched, list(callbacks),
                      config={"seed": seed}, progress=progress)
    return trainer, train, val


def rows(history):
    return [{k: v for k, v in r.items() if k != "time"} for r in history.epochs]


def assert_same_run(a, b):
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert np.array_equal(va, vb), k
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert rows(a.history) == rows(b.history)
    assert a.history.step_loss == b.history.step_loss
    assert a.optimizer.lr == b.optimizer.lr and a.global_step == b.global_step


def test_overfits_a_tiny_batch(mini):
    x, y = mini
    x = Normalize((0.286,), (0.353,))(x[:16])
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64, rng=rng), nn.ReLU(),
                          nn.Linear(64, 10, rng=rng))
    trainer = Trainer(model, CrossEntropyLoss(), Adam(model.parameters(), lr=1e-2), progress=False)
    history = trainer.fit(DataLoader(x, y[:16], None, seed=0), epochs=60)
    assert history["train_accuracy"][-1] == 1.0
    assert history["train_loss"][-1] < 0.05
    assert trainer.evaluate(DataLoader(x, y[:16], 8, shuffle=False))["accuracy"] == 1.0
    logits = trainer.predict(x, batch_size=5)
    assert logits.shape == (16, 10) and logits.dtype == np.float32
    assert (logits.argmax(axis=1) == y[:16]).all() and model.training


def test_resume_is_bit_for_bit(mini, tmp_path):
    full, train, val = make_run(mini)
    full.fit(train, val, epochs=2)

    first, train, val = make_run(mini, [Checkpoint(tmp_path / "best.npz")])
    first.fit(train, val, epochs=1)
    assert (tmp_path / "last.npz").exists() and (tmp_path / "best.npz").exists()

    resumed, train, val = make_run(mini, [Checkpoint(tmp_path / "best.npz")], seed=7)  # other init
    resumed.fit(train, val, epochs=2, resume=tmp_path / "last.npz")
    assert len(resumed.history) == 2 and resumed.epoch == 2
    assert_same_run(full, resumed)


class SendCtrlC(Callback):
    def __init__(self, at_step):
        self.at_step, self.sent = at_step, False

    def on_batch_end(self, trainer, step, logs):
        if trainer.epoch == 1 and step == self.at_step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_leaves_a_resumable_checkpoint(mini, tmp_path, capsys):
    full, train, val = make_run(mini)
    full.fit(train, val, epochs=3)

    stopped, train, val = make_run(mini, [Checkpoint(tmp_path / "best.npz"), SendCtrlC(4)])
    history = stopped.fit(train, val, epochs=3)
    assert history.interrupted and len(history) == 1 and len(history.step_loss) == 10 + 4
    assert "resume" in capsys.readouterr().err
    saved = load_checkpoint(tmp_path / "last.npz")
    assert int(saved["epoch"]) == 1 and int(saved["step"]) == 4

    resumed, train2, val2 = make_run(mini, [Checkpoint(tmp_path / "r.npz"), SendCtrlC(99)], seed=3)
    resumed.fit(train2, val2, epochs=3, resume=tmp_path / "last.npz")
    assert_same_run(full, resumed)

    stopped.fit(train, val, epochs=3)  # in the same process, fit() again continues too
    assert_same_run(full, stopped)


def test_checkpoint_layout_has_no_pickle(mini, tmp_path):
    trainer, train, val = make_run(mini, [Checkpoint(tmp_path / "best.npz", save_best=False)])
    trainer.fit(train, val, epochs=1)
    with np.load(tmp_path / "best.npz", allow_pickle=False) as z:
        keys = set(z.files)
        assert json.loads(str(z["config"])) == {"seed": 0}
        assert all(not z[k].dtype.hasobject for k in keys)
    assert {"epoch", "global_step", "history", "model/1.weight", "model/2.running_var",
            "optimizer/state.0.momentum_buffer", "scheduler/last_epoch", "train_loader/rng",
            "train_loader/transform.0.rng", "rng/model.4.rng", "rng/npnet.default"} <= keys
    assert not (tmp_path / "last.npz").exists()


def test_atomic_checkpoint_survives_a_crash(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, {"w": np.arange(3.0)})
    before = path.read_bytes()

    def crash(file, **arrays):
        file.write(b"PK half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"w": np.zeros(3)})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ck.npz"]
    np.testing.assert_array_equal(load_checkpoint(path)["w"], np.arange(3.0))


class PoisonWeights(Callback):
    def on_batch_end(self, trainer, step, logs):
        if trainer.epoch == 1 and step == 2:
            trainer.model[1].weight.data[0, 0] = np.inf


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_loss_names_epoch_and_step(mini, tmp_path):
    trainer, train, val = make_run(mini, [Checkpoint(tmp_path / "best.npz"), PoisonWeights()])
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 3 of 10") as e:
        trainer.fit(train, val, epochs=3)
    assert str(tmp_path / "last.npz") in str(e.value) and "kept" in str(e.value)
    assert e.value.epoch == 2 and e.value.step == 3 and len(e.value.history) == 1
    assert int(load_checkpoint(tmp_path / "last.npz")["epoch"]) == 1


def test_early_stopping_and_monitor_checks(mini):
    trainer, train, val = make_run(mini, [EarlyStopping(patience=1, monitor="train_loss", mode="max")])
    trainer.fit(train, val, epochs=5)
    assert len(trainer.history) == 2  # loss falls: no "improvement" in max mode after epoch 1
    trainer, train, _ = make_run(mini, [Checkpoint("unused.npz")])
    with pytest.raises(ValueError, match="val_loader"):
        trainer.fit(train, None, epochs=1)


def test_history_files_and_quiet_progress(mini, tmp_path, capsys):
    trainer, train, val = make_run(mini, progress=None)  # stderr is not a terminal here
    history = trainer.fit(train, None, epochs=2)
    assert capsys.readouterr().err == ""
    csv_path, json_path = history.save(tmp_path)
    lines = open(csv_path).read().splitlines()
    assert lines[0] == "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,time"
    assert len(lines) == 3 and lines[1].startswith("1,") and ",,," in lines[1]
    again = History.load(json_path)
    assert again.epochs == history.epochs and again.step_loss == history.step_loss
    assert len(history.step_loss) == 20 and history["lr"] == [0.05, 0.025]
    assert history.best("train_accuracy") == (2, history["train_accuracy"][1])
