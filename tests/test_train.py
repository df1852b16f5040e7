"""Trainer: overfitting, bit-for-bit resume (epoch boundary and Ctrl-C mid-epoch), atomic
checkpoints, non-finite losses, callbacks and History files; what the user sees (a bar per batch
in a terminal, a line per epoch elsewhere); clear errors (empty loaders, empty BatchNorm batches,
unreadable checkpoints); a failed load changes nothing."""
import io
import json
import os
import re
import signal
import sys

import numpy as np
import pytest

from npnet import init, nn
from npnet.data import Compose, DataLoader, Normalize, RandomHorizontalFlip, load_dataset
from npnet.losses import CrossEntropyLoss
from npnet.optim import SGD, Adam, MultiStepLR
from npnet.train import (Callback, Checkpoint, EarlyStopping, EpochLogger, History,
                         NonFiniteLossError, Trainer, load_checkpoint, save_checkpoint)


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


def test_history_files(mini, tmp_path):
    trainer, train, val = make_run(mini)
    history = trainer.fit(train, None, epochs=2)
    csv_path, json_path = history.save(tmp_path)
    lines = open(csv_path).read().splitlines()
    assert lines[0] == "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,time"
    assert len(lines) == 3 and lines[1].startswith("1,") and ",,," in lines[1]
    again = History.load(json_path)
    assert again.epochs == history.epochs and again.step_loss == history.step_loss
    assert len(history.step_loss) == 20 and history["lr"] == [0.05, 0.025]
    assert history.best("train_accuracy") == (2, history["train_accuracy"][1])


# -- what the user sees ----------------------------------------------------------------------------
EPOCH_LINE = (r"epoch (\d)/2: train loss \d\.\d{4} acc \d\.\d{4}  val loss \d\.\d{4} acc \d\.\d{4}  "
              r"lr 0\.0\d+  \d+\.\d s  [\d,]+ img/s")


def test_one_plain_line_per_epoch_when_not_a_terminal(mini, capsys):
    trainer, train, val = make_run(mini, progress=None)  # stderr is not a terminal under pytest
    trainer.fit(train, val, epochs=2)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert [re.fullmatch(EPOCH_LINE, line).group(1) for line in lines] == ["1", "2"], lines
    assert "lr 0.05 " in lines[0] and "lr 0.025 " in lines[1] and captured.out == ""

    logged = []  # an EpochLogger writes the line instead of the Trainer: never two of them
    trainer, train, val = make_run(mini, [EpochLogger(logged.append)], progress=None)
    trainer.fit(train, val, epochs=1)
    assert capsys.readouterr().err == "" and len(logged) == 1
    assert logged[0].startswith("epoch 1: train loss") and logged[0].endswith("img/s")


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_bar_moves_with_every_batch_in_a_terminal(mini, monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    trainer, train, val = make_run(mini, progress=None)
    trainer.fit(train, val, epochs=1)
    out = terminal.getvalue()
    assert "epoch 1/1:   0%" in out and "0/10 [" in out  # counts batches, from the first one
    last = out.rstrip().rsplit("\r", 1)[-1]
    assert "epoch 1/1: 100%" in last and "10/10 [" in last
    for field in ("loss=", "acc=", "val_loss=", "val_acc=", "img/s="):
        assert field in last, last
    assert not re.search(EPOCH_LINE, out)  # no plain line beside the bar

    silent = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", silent)
    trainer, train, val = make_run(mini, progress=False)
    trainer.fit(train, val, epochs=1)
    assert silent.getvalue() == ""


# -- clear errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("data", [(0, 32, False), (20, 32, True)])
def test_empty_training_loader_is_an_error(mini, data):
    n, batch, drop_last = data
    x, y = mini
    trainer, _, val = make_run(mini)
    empty = DataLoader(x[:n], y[:n], batch, drop_last=drop_last)
    with pytest.raises(ValueError, match="training loader has no batches"):
        trainer.fit(empty, val, epochs=1)
    assert trainer.epoch == 0 and len(trainer.history) == 0 and trainer.history.step_loss == []
    trainer, train, _ = make_run(mini)
    with pytest.raises(ValueError, match="validation loader has no batches"):
        trainer.fit(train, empty, epochs=1)
    with pytest.raises(ValueError, match="no batches"):
        trainer.evaluate(empty)


@pytest.mark.parametrize("layer, shape", [(nn.BatchNorm2d(3), (0, 3, 4, 4)),
                                          (nn.BatchNorm1d(5), (0, 5)),
                                          (nn.BatchNorm2d(3), (2, 3, 0, 4))])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_on_an_empty_batch_names_layer_and_shape(layer, shape, training):
    layer.train(training)
    with pytest.raises(ValueError, match=re.escape(f"BatchNorm{len(shape) - 2 or 1}d(")) as e:
        layer(np.zeros(shape, np.float32))
    assert f"empty batch of shape {shape}" in str(e.value)


# -- a failed load changes nothing ---------------------------------------------------------------
def snapshot(trainer, train, val):
    """Every array and counter a load could change."""
    arrays = {f"model/{k}": v for k, v in trainer.model.state_dict().items()}
    arrays.update({f"optimizer/{k}": v for k, v in trainer.optimizer.state_dict().items()})
    arrays.update({f"scheduler/{k}": v for k, v in trainer.scheduler.state_dict().items()})
    arrays.update({f"train/{k}": v for k, v in train.state_dict().items()})
    arrays.update({f"val/{k}": v for k, v in val.state_dict().items()})
    arrays["rng"] = np.array(str(init.get_rng().bit_generator.state))
    arrays["lr"] = np.array([g["lr"] for g in trainer.optimizer.param_groups])
    arrays["counters"] = np.array([trainer.epoch, trainer.global_step, len(trainer.history),
                                   len(trainer.history.step_loss)])
    return arrays, (trainer.train_loader, trainer.val_loader, trainer.last_checkpoint)


def assert_unchanged(before, after):
    (a, refs_a), (b, refs_b) = before, after
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    assert all(x is y for x, y in zip(refs_a, refs_b))


class RefusesToLoad(Callback):
    """Passes the key check but refuses in its own load_state_dict: the last line of defence."""

    def state_dict(self):
        return {"x": np.zeros(2)}

    def load_state_dict(self, state):
        raise ValueError("RefusesToLoad: no")


def wide_run(data):
    """Another model: 64 hidden units instead of 32."""
    trainer, train, val = make_run(data)
    rng = np.random.default_rng(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64, rng=rng), nn.BatchNorm1d(64), nn.ReLU(),
                          nn.Dropout(0.3, rng=rng), nn.Linear(64, 10, rng=rng))
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    return Trainer(model, CrossEntropyLoss(), opt, MultiStepLR(opt, [1], gamma=0.5)), train, val


def adam_run(data):
    trainer, train, val = make_run(data)
    opt = Adam(trainer.model.parameters(), lr=1e-3)
    return Trainer(trainer.model, CrossEntropyLoss(), opt, MultiStepLR(opt, [1])), train, val


def refusing_run(data):
    return make_run(data, [RefusesToLoad()])


@pytest.mark.parametrize("build, expect", [(adam_run, "optimizer: missing keys group.0.betas"),
                                           (wide_run, "model: wrong shapes 1.weight (32, 784) (expected (64, 784))"),
                                           (refusing_run, "RefusesToLoad: no")])
def test_failed_load_changes_nothing(mini, tmp_path, build, expect):
    saver, train, val = make_run(mini, [Checkpoint(tmp_path / "best.npz"), RefusesToLoad()])
    saver.fit(train, val, epochs=1)  # an SGD checkpoint with momentum buffers, after 1 epoch

    trainer, train, val = build(mini)
    trainer.fit(train, val, epochs=1)  # its own buffers, its own epoch, moved generators
    before = snapshot(trainer, train, val)
    with pytest.raises(ValueError, match=re.escape(expect)) as e:
        trainer.fit(train, val, epochs=3, resume=tmp_path / "last.npz")
    assert str(e.value).startswith(str(tmp_path / "last.npz"))
    assert_unchanged(before, snapshot(trainer, train, val))
    with pytest.raises(ValueError, match=re.escape(expect)):
        trainer.load_state_dict(load_checkpoint(tmp_path / "last.npz"))
    assert_unchanged(before, snapshot(trainer, train, val))


def test_truncated_or_foreign_checkpoint_names_the_file(mini, tmp_path):
    trainer, train, val = make_run(mini, [Checkpoint(tmp_path / "best.npz")])
    trainer.fit(train, val, epochs=1)
    good = (tmp_path / "last.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[:len(good) // 2])
    (tmp_path / "text.npz").write_text("not a checkpoint")
    np.savez(tmp_path / "other.npz", w=np.zeros(3))
    for name, message in (("cut.npz", "truncated"), ("text.npz", "not an npnet checkpoint"),
                          ("other.npz", "not an npnet checkpoint")):
        path = str(tmp_path / name)
        with pytest.raises(ValueError, match=message) as e:
            load_checkpoint(path)
        assert str(e.value).startswith(path) and "pickle" not in str(e.value)
        before = snapshot(trainer, train, val)
        with pytest.raises(ValueError, match=re.escape(path)):
            trainer.fit(train, val, epochs=2, resume=path)
        assert_unchanged(before, snapshot(trainer, train, val))


# -- state with one owner --------------------------------------------------------------------------
def test_state_dict_round_trip_and_checkpoints_written_once_per_epoch(mini, tmp_path, monkeypatch):
    calls = []
    original = Trainer.state_dict
    monkeypatch.setattr(Trainer, "state_dict", lambda self: calls.append(self.epoch) or original(self))
    stop = EarlyStopping(patience=1, monitor="val_accuracy")
    trainer, train, val = make_run(mini, [Checkpoint(tmp_path / "best.npz"), stop])
    trainer.fit(train, val, epochs=2)
    # best.npz and last.npz of an epoch hold one state, taken once after every callback ran
    assert calls == [1, 2]
    saved = load_checkpoint(tmp_path / "last.npz")
    assert int(saved["callback/EarlyStopping.0/wait"]) == stop.wait
    assert int(saved["callback/Checkpoint.0/best_epoch"]) == trainer.callbacks[0].best_epoch

    full, train_a, val_a = make_run(mini)
    full.fit(train_a, val_a, epochs=2)
    first, train_b, val_b = make_run(mini)
    first.fit(train_b, val_b, epochs=1)
    second, train_c, val_c = make_run(mini, seed=5)
    second.train_loader, second.val_loader = train_c, val_c
    second.load_state_dict(first.state_dict())
    second.fit(train_c, val_c, epochs=2)
    assert_same_run(full, second)


def test_a_cold_kernel_cache_is_announced_once_with_an_estimate(mini, tmp_path, monkeypatch, capsys):
    from npnet.train import progress
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))  # read by kernels_cached() only
    monkeypatch.setitem(progress._said, "cold start", False)
    assert not progress.kernels_cached()
    quiet, train, val = make_run(mini, progress=False)
    quiet.fit(train, val, epochs=1)
    assert "compile" not in capsys.readouterr().err  # progress=False: nothing at all
    for _ in range(2):
        shown, train, val = make_run(mini, progress=None)
        shown.fit(train, val, epochs=1)
    err = capsys.readouterr().err
    assert err.count("npnet: the first steps compile npnet's Numba kernels") == 1, err
    assert "about 40 s on 2 idle cores" in err and "later runs start in about a second" in err
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "conv._conv_forward-12.py311.nbi").write_bytes(b"")
    assert progress.kernels_cached()
