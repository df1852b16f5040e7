"""The tune pass (``npnet.tune``, ``nn/tuning.py``) and the algorithm attribute of ``Conv2d``: a layer
runs the algorithm it carries (the fixed rule unless set), tune measures once per shape and machine,
sets the fastest, changes nothing else in the model, and the choices travel (checkpoints, ranks)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import npnet
from npnet import kernels as K
from npnet import nn
from npnet.kernels import autotune
from npnet.models import build_model
from npnet.nn.tuning import algorithms, set_algorithms
from npnet.run.config import CONV_ALGORITHMS

ROOT = str(Path(__file__).resolve().parents[1])


def small_net():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, rng=0), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1, rng=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 8, 1, rng=2), nn.Flatten(), nn.Linear(8 * 4 * 4, 3, rng=3))


def batch(n=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 8, 8)).astype(np.float32)


def test_conv2d_carries_its_algorithm():
    assert nn.Conv2d(16, 16, 3, padding=1).algorithm == "winograd"          # the fixed rule
    assert nn.Conv2d(3, 16, 3, padding=1).algorithm == "im2col"
    assert nn.Conv2d(16, 16, 3, stride=2).algorithm == "im2col"
    conv = nn.Conv2d(16, 16, 3, padding=1, algorithm="winograd4")
    assert "algorithm='winograd4'" in repr(conv)
    conv.algorithm = None
    assert conv.algorithm == "winograd"
    with pytest.raises(ValueError, match=r"kernel_size=\(5, 5\).*algorithm must be one of \('im2col',\)"):
        nn.Conv2d(16, 16, 5, algorithm="winograd")
    with pytest.raises(ValueError, match="got 'fft'"):
        conv.algorithm = "fft"
    assert K.CONV_ALGORITHMS == autotune.ALGORITHMS == CONV_ALGORITHMS


@pytest.mark.parametrize("algorithm", K.CONV_ALGORITHMS)
def test_the_layers_algorithm_is_what_runs(algorithm, monkeypatch):
    from npnet.kernels import conv
    ran = []
    for name in ("winograd_forward", "_im2col_forward"):
        real = getattr(conv, name)
        monkeypatch.setattr(conv, name, lambda *a, _r=real, _n=name, **k: ran.append(_n) or _r(*a, **k))
    layer = nn.Conv2d(16, 16, 3, padding=1, algorithm=algorithm)
    layer(np.ones((1, 16, 6, 6), np.float32))
    assert ran == ["_im2col_forward" if algorithm == "im2col" else "winograd_forward"]


def test_tune_sets_the_fastest_and_the_cache_remembers_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NPNET_AUTOTUNE_CACHE", str(tmp_path))  # a folder of its own: no other test's keys
    tune_cache = tmp_path
    model, x = small_net(), batch()
    timed = []
    real = autotune._timed
    monkeypatch.setattr(autotune, "_timed", lambda run: (timed.append(1), real(run))[1])
    report = npnet.tune(model, x, algorithms=K.CONV_ALGORITHMS)   # F(4x4) asked for too
    assert [r["layer"] for r in report] == ["0", "3"]          # the 1x1 layer has no choice
    assert [r["input"] for r in report] == [(4, 3, 8, 8), (4, 16, 8, 8)]
    assert len(timed) == 2 * len(K.CONV_ALGORITHMS) * autotune.ROUNDS
    for r in report:
        assert set(r["times"]) == set(K.CONV_ALGORITHMS) and r["algorithm"] == min(r["times"], key=r["times"].get)
    assert [model[0].algorithm, model[3].algorithm] == [r["algorithm"] for r in report]
    assert "layer" in str(report) and "winograd4" in str(report)
    saved = json.loads(Path(autotune.cache_file()).read_text())
    assert saved["setting"] == autotune.machine_setting() and "threads" not in saved["setting"]
    assert sorted(saved["choices"]) == sorted(
        f"train ({r['input'][0]}, {r['input'][1]}, 8, 8) -> 16 3x3 pad (1, 1) float32" for r in report)
    assert Path(autotune.cache_file()).parent == tune_cache and not list(tune_cache.glob(".*.tmp"))
    again = small_net()
    again_report = npnet.tune(again, x, algorithms=K.CONV_ALGORITHMS)  # same shapes: read, not measured
    assert len(timed) == 2 * len(K.CONV_ALGORITHMS) * autotune.ROUNDS
    assert [r["times"] for r in again_report] == [{}, {}] and algorithms(again) == algorithms(model)
    assert "(from the cache)" in str(again_report)
    two = npnet.tune(small_net(), x, algorithms=("winograd", "im2col"))  # another candidate set: measured anew
    assert all(set(r["times"]) == {"im2col", "winograd"} for r in two)
    assert npnet.nn.tuning.DEFAULT_ALGORITHMS == K.CONV_ALGORITHMS


def test_tune_changes_nothing_but_the_algorithms():
    model, x = small_net(), batch()
    model(x)                                                      # running statistics not at their start
    model[1].eval()                                               # a mixed mode must survive too
    before = model.state_dict()
    rng_before = npnet.init.get_rng().bit_generator.state
    npnet.tune(model, x, algorithms=("im2col", "winograd"))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert model.training and not model[1].training and model[0].training
    assert npnet.init.get_rng().bit_generator.state == rng_before
    assert {model[0].algorithm, model[3].algorithm} <= {"im2col", "winograd"}
    assert model[0].__dict__.get("check_input") is None              # the recorder is gone


def test_tune_finds_the_convolutions_of_a_fused_model_by_their_unfused_names():
    plain, fused = build_model("resnet32", (3, 8, 8), 10, rng=0), npnet.fuse(build_model("resnet32", (3, 8, 8), 10, rng=0))
    x = batch(2)
    names = [r["layer"] for r in npnet.tune(plain, x, algorithms=("im2col", "winograd"))]
    assert names == [r["layer"] for r in npnet.tune(fused, x, algorithms=("im2col", "winograd"))]
    assert len(names) == 29 and names[1] == "3.conv1"  # 31 convolutions, two with stride 2 and algorithms(plain) == algorithms(fused)
    fused.eval()
    npnet.unfuse(fused)
    npnet.fuse(fused, inference=True)                              # folds: conv inside ConvBn2d
    assert [r["layer"] for r in npnet.tune(fused, x, algorithms=("im2col", "winograd"), train=False)] == names


def test_set_algorithms_is_all_or_nothing():
    model = small_net()
    before = algorithms(model)
    with pytest.raises(ValueError, match=r"no Conv2d named \['9'\]"):
        set_algorithms(model, {"0": "winograd", "9": "im2col"})
    with pytest.raises(ValueError, match="algorithm must be one of"):
        set_algorithms(model, {"0": "winograd", "6": "winograd"})   # a 1x1 layer
    assert algorithms(model) == before
    set_algorithms(model, {"0": "winograd4", "3": "im2col"})
    assert algorithms(model) == {"0": "winograd4", "3": "im2col", "6": "im2col"}
    with pytest.raises(ValueError, match="algorithms must name some of"):
        npnet.tune(model, batch(), algorithms=("fft",))


def test_the_checkpoint_keeps_the_algorithms(tmp_path):
    from npnet import losses, optim
    from npnet.train import Trainer
    model = small_net()
    set_algorithms(model, {"0": "winograd", "3": "winograd4"})
    trainer = Trainer(model, losses.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
    path = trainer.save_checkpoint(tmp_path / "last.npz")
    fresh = small_net()
    assert algorithms(fresh) != algorithms(model)
    Trainer(fresh, losses.CrossEntropyLoss(), optim.SGD(fresh.parameters(), lr=0.1)).load_checkpoint(path)
    assert algorithms(fresh) == algorithms(model)


def test_an_unwritable_cache_still_tunes_in_memory(tune_cache, monkeypatch, caplog):
    tune_cache.mkdir(parents=True, exist_ok=True)
    blocker = tune_cache / "file"
    blocker.write_text("")
    monkeypatch.setenv("NPNET_AUTOTUNE_CACHE", str(blocker / "sub"))   # a folder below a file: cannot exist
    report = npnet.tune(small_net(), batch())
    assert len(report) == 2 and "could not write" in caplog.text


def test_concurrent_processes_share_one_valid_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NPNET_AUTOTUNE_CACHE", str(tmp_path))
    tune_cache = tmp_path
    code = ("import sys, numpy as np, npnet; from npnet import nn\n"
            "H = int(sys.argv[1]); npnet.tune(nn.Conv2d(16, 16, 3, padding=1), np.ones((1, 16, H, H), 'f4'))\n")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(h)], env=env) for h in (6, 8, 10, 12)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    files = list(tune_cache.glob("*.json"))
    assert len(files) == 1 and not list(tune_cache.glob(".*.tmp"))
    keys = json.loads(files[0].read_text())["choices"]
    assert all(k.startswith("train (1, 16, ") for k in keys) and 1 <= len(keys) <= 4  # last writer may win


def train_small(tmp_path, max_train, **sections):
    """``npnet train`` of cnn-small on a few images of the mini set, with ``sections`` added to the
    config; returns (exit status, config path)."""
    import yaml
    from npnet.run.cli import main
    config = {"seed": 0, "train": {"batch_size": 20, "epochs": 1}, **sections,
              "network": {"model": "cnn-small", "save_best": False},
              "data": {"dataset": "fashion-mnist-mini", "max_train": max_train, "max_test": 20}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return main(["train", str(path), "--out", str(tmp_path / "runs")]), path


def test_the_runner_tunes_once_and_a_resumed_run_keeps_the_checkpoints_algorithms(tmp_path, monkeypatch, capsys):
    from npnet.run import speed
    from npnet.run.cli import main
    assert train_small(tmp_path, 60)[0] == 0
    assert "speed: fused" in capsys.readouterr().out
    run = next((tmp_path / "runs").iterdir())
    first = json.loads((run / "metrics.json").read_text())["speed"]
    assert first["tune"] and first["fuse"] and first["fused"] and len(first["algorithms"]) == 3
    def refuse(*a, **k):
        raise AssertionError("a resumed run must not tune")
    monkeypatch.setattr(speed, "tune", refuse)
    assert main(["train", "--resume", str(run / "last.npz"), "--epochs", "2"]) == 0
    assert "convolution algorithms (the checkpoint's)" in capsys.readouterr().out
    again = json.loads((run / "metrics.json").read_text())["speed"]
    assert again["algorithms"] == first["algorithms"] and not again["tune"]


def test_speed_tune_false_keeps_the_fixed_rule(tmp_path, capsys):
    from npnet.run.cli import main
    status, path = train_small(tmp_path, 40, speed={"tune": False, "fuse": False})
    assert status == 0
    assert "speed: not fused; convolution algorithms (the fixed rule)" in capsys.readouterr().out
    record = json.loads((next((tmp_path / "runs").iterdir()) / "metrics.json").read_text())["speed"]
    assert record["fused"] == [] and record["algorithms"] == algorithms(build_model("cnn-small", (1, 28, 28), 10))
    assert main(["train", str(path), "--set", "speed.algorithms=im2col,fft"]) == 2
    assert "speed.algorithms" in capsys.readouterr().err


@pytest.mark.parametrize("algorithm", K.CONV_ALGORITHMS)
def test_an_empty_batch_gives_an_empty_output_with_every_algorithm(algorithm):
    """As PyTorch: N = 0 is a valid batch (Winograd's grouping divided by zero before)."""
    conv = nn.Conv2d(16, 8, 3, padding=1, algorithm=algorithm)
    y = conv(np.zeros((0, 16, 8, 8), np.float32))
    assert y.shape == (0, 8, 8, 8) and y.dtype == np.float32
    dx = conv.backward(np.zeros_like(y))
    assert dx.shape == (0, 16, 8, 8) and not conv.weight.grad.any() and not conv.bias.grad.any()
