"""The experiment runner: a 1-epoch run over the embedded mini set writes the whole run folder;
bad configs fail before anything runs (an unknown key also says the closest and its section's keys); every shipped
config validates. Resuming: ``test_resume.py``; error messages of a real process:
``test_cli_errors.py``."""
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

from npnet.run.cli import main
from npnet.train import load_checkpoint
from npnet.run.config import ConfigError, load_config, validate_config
from npnet.run.overrides import differing_keys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG = b"\x89PNG\r\n\x1a\n"

TINY = {
    "seed": 3,
    "train": {"batch_size": 50, "learning_rate": 0.05, "epochs": 4, "momentum": 0.9,
              "steps": [1], "reg": 1.0e-4},
    "network": {"model": "linear", "save_best": True},
    "data": {"dataset": "fashion-mnist-mini", "val_fraction": 0.2, "max_train": 500,
             "max_test": 100, "augment": True},
    "loss": {"loss_type": "Focal", "gamma": 1.0, "beta": 0.99, "focal_kind": "softmax"},
}


def write(tmp_path, config, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return str(path)


def test_one_epoch_run_writes_the_whole_folder(tmp_path, capsys):
    out = tmp_path / "runs"
    status = main(["train", write(tmp_path, TINY), "--out", str(out), "--epochs", "1"])
    assert status == 0
    (run,) = glob.glob(str(out / "tiny-*"))
    files = set(os.listdir(run))
    assert {"config.yaml", "history.csv", "history.json", "metrics.json", "best.npz", "last.npz",
            "learning_curves.png", "confusion_matrix.png", "per_class_accuracy.png",
            "predictions.png", "weights.png"} <= files
    assert not [f for f in files if f.endswith(".tmp")]
    config = yaml.safe_load(open(os.path.join(run, "config.yaml")))
    assert config["train"]["epochs"] == 1 and config["name"] == "tiny"
    assert config == validate_config(config)
    m = json.load(open(os.path.join(run, "metrics.json")))
    assert 0 <= m["test_accuracy"] <= 1 and 0 <= m["balanced_accuracy"] <= 1
    assert len(m["per_class_accuracy"]) == 10 and "Ankle boot" in m["per_class_accuracy"]
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 100
    assert np.isclose(np.trace(cm) / 100, m["test_accuracy"])
    assert len(open(os.path.join(run, "history.csv")).read().splitlines()) == 2
    for png in ("learning_curves.png", "predictions.png", "weights.png"):
        assert open(os.path.join(run, png), "rb").read(8) == PNG
    ckpt = load_checkpoint(os.path.join(run, "best.npz"))
    assert int(ckpt["epoch"]) == 1 and ckpt["model/1.weight"].shape == (10, 784)
    assert "test accuracy" in capsys.readouterr().out
    assert main(["compare", run, run, "--out", str(tmp_path)]) == 0
    for png in ("compare_learning_curves.png", "compare_per_class_accuracy.png"):
        assert (tmp_path / png).read_bytes()[:8] == PNG


def test_compare_takes_an_unfinished_run_and_says_where_it_wrote(tmp_path, capsys):
    """A run stopped before its end has history.json and no metrics.json: compare draws its curves
    beside the finished run's and says so; two folders of one name are told apart by path."""
    import shutil
    assert main(["train", write(tmp_path, TINY), "--out", str(tmp_path / "a"), "--epochs", "1",
                 "--quiet"]) == 0
    (done,) = glob.glob(str(tmp_path / "a" / "tiny-*"))
    stopped = tmp_path / "b" / os.path.basename(done)
    shutil.copytree(done, stopped)
    os.remove(stopped / "metrics.json")
    history = json.load(open(stopped / "history.json"))
    history["epochs"] = []                                  # stopped inside its first epoch
    (stopped / "history.json").write_text(json.dumps(history))
    capsys.readouterr()
    assert main(["compare", done, str(stopped), "--out", str(tmp_path / "fig")]) == 0
    out = capsys.readouterr().out
    assert f"{os.path.normpath(done)}: test accuracy" in out
    assert f"{os.path.normpath(stopped)}: no metrics.json (the run did not finish)" in out
    figures = [str(tmp_path / "fig" / f"compare_{k}.png") for k in ("learning_curves", "per_class_accuracy")]
    assert out.splitlines()[-1] == "figures: " + ", ".join(figures)
    assert all(open(f, "rb").read(8) == PNG for f in figures)


@pytest.mark.parametrize("change, expected", [
    ({"train": {"lr": 0.1}}, "unknown key 'train.lr'; valid keys in 'train': batch_size"),
    ({"train": {"epochs": "ten"}}, "'train.epochs': expected int, got str"),
    ({"train": {"batch_size": 1.5}}, "'train.batch_size': expected int or null"),
    ({"network": {"model": "lenet"}}, "unknown model 'lenet'; one of linear, mlp"),
    ({"network": {"model": "mlp", "options": {"width": 3}}}, "valid: hidden, activation"),
    ({"loss": {"loss_type": "Hinge"}}, "expected one of CE, MSE, Focal"),
    ({"data": {"augment": "yes"}}, "'data.augment': expected bool"),
    ({"optimiser": {}}, "unknown top-level key 'optimiser'; valid: seed, name, train"),
    ({"train": {"learnin_rate": 0.1}}, "unknown key 'train.learnin_rate' (did you mean "
                                        "'train.learning_rate'?); valid keys in 'train': batch_size"),
    ({"train": {"dataset": "cifar10"}}, "unknown key 'train.dataset' (did you mean 'data.dataset'?)"),
    ({"netwrk": {}}, "unknown top-level key 'netwrk' (did you mean 'network'?)"),
])
def test_bad_configs_fail_cleanly(tmp_path, capsys, change, expected):
    config = {k: (dict(v, **change[k]) if k in change and isinstance(v, dict) else v)
              for k, v in TINY.items()}
    config.update({k: v for k, v in change.items() if k not in TINY})
    status = main(["train", write(tmp_path, config), "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert status == 2 and expected in err
    unknown = "unknown key" in expected or "unknown top-level key" in expected
    assert "valid keys:\n" not in err and "  train: " not in err, err  # no schema dump
    assert ("npnet train --help" in err) == unknown, err  # where every key is listed
    assert len(err.strip().splitlines()) == 3 or not unknown, err
    assert not (tmp_path / "runs").exists()


def test_config_errors_collect_every_problem(tmp_path):
    with pytest.raises(ConfigError) as e:
        validate_config({"train": {"lr": 1, "momentum": True}, "network": {}})
    text = str(e.value)
    assert "train.lr" in text and "train.momentum" in text and "network.model' is required" in text
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "train: [unclosed"))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- a list"))


def test_float_keys_accept_yaml_exponents():
    config = validate_config({"network": {"model": "linear"}, "train": {"reg": "5e-4"}})
    assert config["train"]["reg"] == 5e-4 and config["train"]["batch_size"] == 128


def shipped_configs():
    """Every config under configs/ except sweeps; those whose model is not in the zoo (yet) are
    left out of the checks that build one."""
    from npnet.models import MODELS
    paths = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")) +
                   glob.glob(os.path.join(ROOT, "configs", "fashion_mnist", "*.yaml")))
    return [p for p in paths if yaml.safe_load(open(p))["network"]["model"] in MODELS]


def test_shipped_configs_validate():
    paths = shipped_configs()
    models = {load_config(p)["network"]["model"] for p in paths}
    assert {"linear", "mlp", "cnn-small", "cnn-bn", "alexnet", "resnet32"} <= models
    cnn_bn = load_config(os.path.join(ROOT, "configs", "cnn_bn.yaml"))["train"]
    assert (cnn_bn["batch_size"], cnn_bn["learning_rate"], cnn_bn["reg"], cnn_bn["momentum"],
            cnn_bn["steps"]) == (128, 0.01, 5e-4, 0.94, [12, 18])
    fashion = {os.path.basename(p) for p in paths if "fashion_mnist" in p}
    assert {"cnn_bn.yaml", "cnn_small.yaml", "resnet32.yaml", "longtail_ce.yaml",
            "longtail_focal.yaml"} <= fashion
    for name in fashion:
        config = load_config(os.path.join(ROOT, "configs", "fashion_mnist", name))
        assert config["data"]["dataset"] == "fashion-mnist"
        cifar = os.path.join(ROOT, "configs", name)
        if os.path.exists(cifar):  # the same experiment as its CIFAR-10 twin, but for the data
            keys = differing_keys(config, load_config(cifar))
            assert all(k.startswith(("data.", "train.", "network.save_best", "network.init_prior",
                                     "network.model", "network.options")) for k in keys), keys


def test_readme_train_line_runs_as_written(tmp_path, monkeypatch):
    """README's ``npnet train`` line, shortened to one epoch on a few images."""
    line = next(l for l in open(os.path.join(ROOT, "README.md")) if "`npnet train configs/" in l)
    command = line.split("`")[1].split()
    assert command[:2] == ["npnet", "train"]
    monkeypatch.chdir(ROOT)
    status = main(command[1:] + ["--out", str(tmp_path), "--epochs", "1", "--quiet",
                                 "--set", "data.max_train=200", "--set", "data.max_test=50"])
    assert status == 0 and len(os.listdir(tmp_path)) == 1


def test_set_overrides_any_key(tmp_path):
    path = write(tmp_path, TINY)
    config = load_config(path, ["train.learning_rate=0.2", "network.options.hidden=[8]",
                                "network.model=mlp", "data.max_train=null", "seed=7",
                                "train.reg=5e-4"])
    assert config["train"]["learning_rate"] == 0.2 and config["network"]["options"] == {"hidden": [8]}
    assert config["data"]["max_train"] is None and config["seed"] == 7
    assert config["train"]["reg"] == 5e-4
    assert load_config(path)["train"]["learning_rate"] == 0.05  # the file is not changed


@pytest.mark.parametrize("override, expected", [
    ("train.lr=0.1", "unknown key 'train.lr'; valid keys in 'train': batch_size"),
    ("train.learning_rate=0", "'train.learning_rate': expected a value > 0.0, got 0"),
    ("train.learning_rate=.inf", "'train.learning_rate': expected a finite number"),
    ("loss.beta=1", "'loss.beta': expected a value < 1.0"),
    ("train.momentum=.nan", "'train.momentum': expected a finite number"),
    ("network.options={dropout: .nan}", "'network.options.dropout': expected a finite number"),
    ("learning_rate", "expected KEY=VALUE with a dotted key"),
    ("train.epochs.x=1", "'train.epochs' is 4, not a mapping"),
    ("train.steps=[1, 2", "the value is not valid YAML"),
])
def test_bad_overrides_fail_cleanly(tmp_path, capsys, override, expected):
    status = main(["train", write(tmp_path, TINY), "--out", str(tmp_path / "runs"),
                   "--set", override])
    err = capsys.readouterr().err
    assert status == 2 and expected in err, err
    assert not (tmp_path / "runs").exists()


def test_train_does_not_import_the_application():
    """The floors: npnet.train stands below npnet.run, the model zoo and the figures."""
    code = ("import sys, npnet.train; bad = sorted(m for m in sys.modules if m.startswith("
            "('npnet.run', 'npnet.models', 'npnet.plots', 'matplotlib'))); "
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    for path in glob.glob(os.path.join(ROOT, "npnet", "train", "*.py")):
        for line in open(path):
            if re.match(r"\s*(from|import)\s+(\.\.|npnet)", line):
                assert not re.search(r"\b(run|models|plots)\b", line), (path, line)


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "npnet", "summary", "cnn-small"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "Total parameters: 122,570" in result.stdout


def test_version_summary_help_and_num_classes(capsys):
    import npnet
    from npnet.models import MODELS
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"npnet {npnet.__version__}"
    with pytest.raises(SystemExit):
        main(["summary", "--help"])
    listed = " ".join(capsys.readouterr().out.split("models:")[1].split())
    assert listed == ", ".join(MODELS)
    for bad in ("0", "-3"):
        assert main(["summary", "mlp", "--in-shape", "1,28,28", "--num-classes", bad]) == 2
        assert capsys.readouterr().err.strip() == f"npnet summary: --num-classes must be >= 1, got {bad}"


def test_metrics_json_has_no_float_noise(tmp_path):
    from npnet.run.report import _without_float_noise
    assert 0.1 + 0.2 != 0.3 and _without_float_noise({"a": [0.1 + 0.2, 2], "b": 0.5}) == {"a": [0.3, 2], "b": 0.5}
    assert _without_float_noise(0.6900000000000001) == 0.69 and _without_float_noise(19 / 60) == 19 / 60
    config = dict(TINY, train=dict(TINY["train"], epochs=1), data=dict(TINY["data"], max_test=70))
    assert main(["train", write(tmp_path, config), "--out", str(tmp_path / "runs"), "--quiet"]) == 0
    (run,) = glob.glob(str(tmp_path / "runs" / "*"))
    m = json.load(open(os.path.join(run, "metrics.json")))

    def floats(obj):
        if isinstance(obj, float):
            yield obj
        for v in (obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else ()):
            yield from floats(v)

    noisy = [v for v in floats(m) if float(f"{v:.12g}") != v
             and abs(float(f"{v:.12g}") - v) <= 4 * np.spacing(v)]
    assert not noisy and m["train_seconds"] == round(m["train_seconds"], 3)
    assert m["test_accuracy"] == round(m["test_accuracy"] * 70) / 70  # an exact share of 70 images
