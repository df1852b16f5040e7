"""``npnet sweep`` on the local backend: a 2x2 grid on the embedded mini set, 1 epoch, 2 worker
processes, a line per finished trial in its output; reruns skip finished trials; failures are
recorded and the others finish; an invalid grid is refused before anything runs; the summary
says why a trial did not finish; Ctrl-C stops cleanly and a rerun resumes."""
import contextlib
import csv
import glob
import io
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from npnet.run.asha import Asha
from _ctrl_c import interrupt_when
from npnet.run.cli import main
from npnet.run.config import ConfigError
from npnet.run.sweep_report import write_report
from npnet.run.sweep_spec import load_sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG = b"\x89PNG\r\n\x1a\n"

BASE = {"seed": 0,
        "train": {"batch_size": 50, "learning_rate": 0.05, "epochs": 1, "momentum": 0.9},
        "network": {"model": "mlp", "options": {"hidden": [16]}},
        "data": {"dataset": "fashion-mnist-mini", "max_train": 300, "max_test": 100,
                 "val_fraction": 0.2}}
GRID = {"train.learning_rate": [0.05, 0.1], "loss.loss_type": ["CE", "Focal"]}


def write_sweep(folder, grid=GRID, name="grid", **extra):
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"config": BASE, "grid": grid, **extra}, sort_keys=False))
    return str(path)


def rows(folder):
    with open(os.path.join(folder, "trials.csv"), newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory):
    """The 2x2 grid run once on the local backend, its output going to a file (not a terminal):
    (sweep file, its arguments, its folder, what it printed)."""
    tmp = tmp_path_factory.mktemp("local_grid")
    path = write_sweep(tmp)
    args = ["sweep", path, "--out", str(tmp / "out"), "--workers", "2", "--threads-per-trial", "1"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(args) == 0
    return path, args, tmp / "out" / "grid", printed.getvalue()


def test_output_to_a_file_has_a_line_per_epoch_and_per_finished_trial(local_grid):
    *_, printed = local_grid
    lines = [l for l in printed.splitlines() if l.startswith("trial ")]
    assert len(lines) == 4, printed
    for i, line in enumerate(sorted(lines), 1):
        assert re.fullmatch(rf"trial {i}/4 learning_rate=(0\.05|0\.1),loss_type=(CE|Focal): done, "
                            r"test accuracy \d+\.\d\d % \(\d+ s\)", line), line
    epochs = [l for l in printed.splitlines() if re.match(r"  learning_rate=.*: epoch 1: train loss", l)]
    assert len(epochs) == 4, printed


def test_grid_on_two_workers_writes_the_sweep_folder_and_reruns_skip(local_grid, capsys):
    _, args, folder, _ = local_grid
    table = rows(folder)
    assert [(r["train.learning_rate"], r["loss.loss_type"]) for r in table] == [
        ("0.05", "CE"), ("0.05", "Focal"), ("0.1", "CE"), ("0.1", "Focal")]
    for r in table:
        assert r["status"] == "done" and r["epochs"] == "1" and r["error"] == ""
        assert 0 <= float(r["test_accuracy"]) <= 1 and float(r["best_val_accuracy"]) > 0
        assert 0 <= float(r["acc_Ankle boot"]) <= 1 and os.path.isdir(r["run_dir"])
        assert os.path.isfile(os.path.join(r["run_dir"], "metrics.json"))
    for png in ("per_class_heatmap.png", "accuracy_vs_train.learning_rate.png",
                "accuracy_vs_loss.loss_type.png"):
        assert (folder / png).read_bytes()[:8] == PNG
    summary = (folder / "summary.md").read_text()
    assert "## Best trial per metric" in summary and "learning_rate=0.1,loss_type=CE" in summary
    records = json.loads((folder / "results.json").read_text())["trials"]
    assert len(records) == 4 and all(len(r["history"]) == 1 for r in records.values())
    stamps = {r["run_dir"]: os.path.getmtime(os.path.join(r["run_dir"], "last.npz"))
              for r in table}
    capsys.readouterr()
    assert main(args) == 0  # nothing left to run
    assert "4 trials, 4 already finished" in capsys.readouterr().out
    assert {d: os.path.getmtime(os.path.join(d, "last.npz")) for d in stamps} == stamps
    assert rows(folder) == table


def test_failed_and_diverged_trials_are_recorded_and_the_rest_finish(tmp_path, capsys):
    grid = {"network.options.activation": ["relu", "nope"], "train.learning_rate": [0.05, 1e6]}
    path = write_sweep(tmp_path, grid, name="faults")
    assert main(["sweep", path, "--out", str(tmp_path / "out"), "--workers", "2",
                 "--threads-per-trial", "1", "--quiet"]) == 1
    status = {(r["network.options.activation"], r["train.learning_rate"]): (r["status"], r["error"])
              for r in rows(tmp_path / "out" / "faults")}
    assert status[("relu", "0.05")] == ("done", "")
    assert status[("relu", "1e+06")][0] == "diverged"
    assert "non-finite" in status[("relu", "1e+06")][1]
    for lr in ("0.05", "1e+06"):
        assert status[("nope", lr)][0] == "failed"
        assert "unknown activation 'nope'" in status[("nope", lr)][1]
    summary = (tmp_path / "out" / "faults" / "summary.md").read_text()
    assert "## Trials that did not finish" in summary and "unknown activation" in summary


@pytest.mark.parametrize("grid, extra, expected", [
    ({"train.lr": [0.1, 0.2]}, {}, "unknown key 'train.lr'; valid keys in 'train'"),
    ({"train.learning_rate": [0.1, 0.0]}, {}, "'train.learning_rate': expected a value > 0.0"),
    ({"train.learning_rate": 0.1}, {}, "needs a non-empty list of values"),
    (GRID, {"seeds": [1, 1]}, "'seeds' must be a list of distinct ints"),
    (GRID, {"base": "x.yaml"}, "give exactly one of 'base: CONFIG.yaml'"),
    (GRID, {"trials": 3}, "unknown sweep key(s) trials"),
])
def test_an_invalid_sweep_is_refused_before_anything_runs(tmp_path, capsys, grid, extra, expected):
    path = write_sweep(tmp_path, grid, name="bad", **extra)
    assert main(["sweep", path, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_set_applies_to_every_trial_but_not_to_a_swept_key(tmp_path):
    path = write_sweep(tmp_path, seeds=[0, 3])
    sweep = load_sweep(path, ["train.epochs=2", "data.max_test=50"])
    assert len(sweep.trials) == 8 and sweep.keys == list(GRID)
    assert {(t.config["train"]["epochs"], t.config["data"]["max_test"])
            for t in sweep.trials} == {(2, 50)}
    assert [t.config["seed"] for t in sweep.trials[:2]] == [0, 3]
    assert sweep.trials[1].id == "learning_rate=0.05,loss_type=CE,seed=3"
    with pytest.raises(ConfigError, match="--set loss.loss_type would be overwritten"):
        load_sweep(path, ["loss.loss_type=MSE"])
    with pytest.raises(ConfigError, match="--set seed would be overwritten"):
        load_sweep(path, ["seed=1"])


def test_shipped_sweeps_load():
    from npnet.models import MODELS
    for path in sorted(glob.glob(os.path.join(ROOT, "configs", "sweeps", "*.yaml"))):
        spec = yaml.safe_load(open(path))
        assert set(spec) <= {"name", "base", "config", "set", "grid", "seeds"}, path
        model = (spec.get("config") or {}).get("network", {}).get("model")
        if model is not None and model not in MODELS:
            continue  # a zoo entry that is not on this branch yet: the file structure only
        for dataset in ("fashion-mnist", "cifar10"):
            sweep = load_sweep(path, [f"data.dataset={dataset}"])
            assert sweep.trials and all(t.config["data"]["dataset"] == dataset for t in sweep.trials)
    beta = load_sweep(os.path.join(ROOT, "configs", "sweeps", "longtail_beta.yaml"))
    assert [(t.config["loss"]["loss_type"], t.config["loss"]["beta"]) for t in beta.trials[::3]] == [
        ("CE", 0.0), ("Focal", 0.9), ("Focal", 0.99), ("Focal", 0.999), ("Focal", 0.9999)]
    assert [t.config["seed"] for t in beta.trials] == [0, 1, 2] * 5
    c = beta.trials[0].config
    assert (c["data"]["imbalance"], c["data"]["imbalance_factor"], c["train"]["epochs"],
            c["train"]["steps"], c["network"]["init_prior"]) == ("exp", 100.0, 30, [20, 25], 0.1)


def test_summary_says_why_a_trial_stopped_and_shows_no_spread_for_one_seed(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, {"train.learning_rate": [0.05]}, seeds=[0, 1]))
    done, stopped = sweep.trials
    metrics = {"test_accuracy": 0.5, "balanced_accuracy": 0.25, "best_val_accuracy": 0.5,
               "per_class_accuracy": {"a": 0.5, "b": 0.0}, "classes": ["a", "b"]}
    records = {done.id: {"status": "done", "metrics": metrics, "history": [{}], "seconds": 2.0,
                         "run_dir": "x", "error": None},
               stopped.id: {"status": "interrupted", "metrics": None, "history": None,
                            "seconds": 1.0, "run_dir": "y",
                            "error": "stopped by Ctrl-C after 0 completed epoch(s)"}}
    write_report(str(tmp_path), sweep, records)
    summary = (tmp_path / "summary.md").read_text()
    assert "| 0.05 | 1 | 50.00 | 25.00 |" in summary and "± 0.00" not in summary
    assert f"- {stopped.id}: interrupted: stopped by Ctrl-C after 0 completed epoch(s)" in summary
    records[stopped.id] = dict(records[done.id], metrics=dict(metrics, test_accuracy=0.7))
    write_report(str(tmp_path), sweep, records)
    assert "| 0.05 | 2 | 60.00 ± 10.00 | 25.00 ± 0.00 |" in (tmp_path / "summary.md").read_text()


def test_asha_stops_the_trials_below_the_rung_quantile():
    asha = Asha(max_epochs=20, grace_period=2, reduction_factor=3)
    assert sorted(asha.rungs) == [2, 6, 18]
    assert asha.report("a", 1, 0.1)                  # not a rung
    assert asha.report("a", 2, 0.50)                 # first at the rung: goes on
    assert asha.report("b", 2, 0.70)                 # better
    assert not asha.report("c", 2, 0.40)             # below the top third so far
    assert asha.report("d", 2, 0.90)


def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(tmp_path):
    config = dict(BASE, train=dict(BASE["train"], epochs=3), network={"model": "cnn-small"},
                  data=dict(BASE["data"], max_train=2000))
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump({"config": config, "grid": {"seed": [1, 2]}}))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "npnet", "sweep", str(path), "--out", str(out),
               "--workers", "2", "--threads-per-trial", "1"]
    env = dict(os.environ, PYTHONPATH=ROOT, MPLBACKEND="Agg")
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    logs = lambda: [open(p).read() for p in glob.glob(str(out / "long" / "trials" / "*" / "log.txt"))]
    # Ctrl-C once both trials are in epoch 2 of 3 (each has a last.npz to resume from)
    _, err = interrupt_when(driver, lambda: len(logs()) == 2 and all("epoch 1:" in t for t in logs()),
                            "the trials did not finish epoch 1", poll=0.2, wait=600)
    assert driver.returncode == 130, err
    assert "Traceback" not in err and "run the same command again" in err + _
    records = json.loads((out / "long" / "results.json").read_text())["trials"]
    assert {r["status"] for r in records.values()} == {"interrupted"}
    assert all("stopped by Ctrl-C" in r["error"] for r in records.values()), records
    summary = (out / "long" / "summary.md").read_text()
    assert summary.count(": interrupted: stopped by Ctrl-C") == 2 and "None" not in summary
    assert all(os.path.isfile(os.path.join(r["run_dir"], "last.npz")) for r in records.values())
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    for r in rows(out / "long"):
        assert r["status"] == "done" and r["epochs"] == "3"
        assert "resumed from" in open(os.path.join(r["run_dir"], "log.txt")).read()


def test_a_key_added_since_a_trial_finished_is_no_change_but_a_changed_value_is(tmp_path):
    """A sweep folder from an earlier npnet: its records lack a key added since (``train.sync_bn``
    came with data-parallel runs). At the key's default that is the same trial and a rerun skips
    it; a different value, or a key the schema no longer has, is another config and is refused."""
    import copy
    from npnet.run.experiment import RunError
    from npnet.run.sweep_run import plan
    sweep = load_sweep(write_sweep(tmp_path))
    def records(edit):
        out = {}
        for t in sweep.trials:
            config = copy.deepcopy(t.config)
            edit(config)
            out[t.id] = {"status": "done", "config": config}
        return out
    assert plan(sweep, records(lambda c: c["train"].pop("sync_bn"))) == []
    with pytest.raises(RunError, match=r"differs at train\.sync_bn"):
        plan(sweep, records(lambda c: c["train"].update(sync_bn=True)))
    with pytest.raises(RunError, match=r"differs at train\.gone"):
        plan(sweep, records(lambda c: c["train"].update(gone=1)))
