"""``npnet train --resume CHECKPOINT``: a run continues in its own folder with the checkpoint's own
config and gives the history of the run that was never stopped; a checkpoint that is missing,
cut short or not a checkpoint at all, or a config that disagrees with it, is one message (exit
2) and nothing is written; Ctrl-C stops with a resumable last.npz and the command line's hint.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from _ctrl_c import interrupt_when
from npnet.run.cli import main
from npnet.train import load_checkpoint
from test_cli import TINY
from test_cli_errors import A, ROOT, assert_message, npnet, write


def history(run):
    with open(os.path.join(run, "history.json")) as f:
        return [{k: v for k, v in row.items() if k != "time"} for row in json.load(f)["epochs"]]


def test_resume_continues_in_the_same_folder(tmp_path):
    out = tmp_path / "runs"
    config = dict(TINY, network={"model": "mlp", "options": {"hidden": [16]}, "save_best": False},
                  loss={"loss_type": "MSE"})
    path = write(tmp_path, "tiny.yaml", config)
    assert main(["train", path, "--out", str(out), "--epochs", "1", "--quiet"]) == 0
    (run,) = glob.glob(str(out / "tiny-*"))
    assert "best.npz" not in os.listdir(run)
    assert main(["train", path, "--epochs", "2", "--quiet", "--resume", f"{run}/last.npz"]) == 0
    assert len(os.listdir(out)) == 1
    assert len(history(run)) == 2


def test_resumed_run_gives_the_uninterrupted_runs_history(tmp_path):
    """Shuffling and augmentation draw from the loaders' generators: their state must come back
    from the checkpoint (read once, before training) for epoch 2 to see the same batches."""
    path = write(tmp_path, "tiny.yaml", TINY)
    assert main(["train", path, "--out", str(tmp_path / "a"), "--epochs", "2", "--quiet"]) == 0
    assert main(["train", path, "--out", str(tmp_path / "b"), "--epochs", "1", "--quiet"]) == 0
    (whole,), (part,) = glob.glob(str(tmp_path / "a" / "*")), glob.glob(str(tmp_path / "b" / "*"))
    assert main(["train", "--resume", os.path.join(part, "last.npz"), "--epochs", "2",
                 "--quiet"]) == 0
    assert history(part) == history(whole) and len(history(part)) == 2


def test_resume_continues_the_checkpoints_own_config(tmp_path, capsys):
    out = tmp_path / "runs"
    path = write(tmp_path, "tiny.yaml", TINY)
    assert main(["train", path, "--out", str(out), "--epochs", "1", "--quiet",
                 "--set", "train.learning_rate=0.02"]) == 0
    (run,) = glob.glob(str(out / "tiny-*"))
    last = os.path.join(run, "last.npz")
    # no CONFIG: the stored config (learning rate 0.02), extended to 2 epochs
    assert main(["train", "--resume", last, "--epochs", "2", "--quiet"]) == 0
    assert [r["lr"] for r in history(run)] == [0.02, 0.002]  # steps [1]: x0.1 after epoch 1
    assert yaml.safe_load(open(os.path.join(run, "config.yaml")))["train"]["epochs"] == 2
    # a disagreeing --set is refused, naming the key; finished runs need a larger --epochs
    assert main(["train", "--resume", last, "--epochs", "3", "--set", "seed=4"]) == 2
    assert "at seed:" in capsys.readouterr().err
    assert main(["train", "--resume", last]) == 2
    assert "already trained 2 epoch(s)" in capsys.readouterr().err
    assert main(["train", path, "--resume", last, "--name", "x"]) == 2
    assert "do not apply with --resume" in capsys.readouterr().err
    assert len(os.listdir(out)) == 1


def test_resume_with_another_config_is_refused_and_overwrites_nothing(tmp_path):
    status, _, err = npnet(tmp_path, "train", write(tmp_path, "a.yaml", A), "--out", "runs",
                           "--quiet")
    assert status == 0, err
    (run,) = glob.glob(str(tmp_path / "runs" / "a-*"))
    before = {f: open(os.path.join(run, f), "rb").read() for f in os.listdir(run)}
    b = dict(A, network={"model": "mlp"}, train=dict(A["train"], learning_rate=0.5))
    status, _, err = npnet(tmp_path, "train", write(tmp_path, "b.yaml", b), "--resume",
                           os.path.join(run, "last.npz"), "--epochs", "2")
    assert_message(status, err, "network.model", "train.learning_rate", "Nothing was written",
                   "npnet train --resume CHECKPOINT")
    after = {f: open(os.path.join(run, f), "rb").read() for f in os.listdir(run)}
    assert after == before


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 1-epoch run of config A: (its folder, its last.npz's bytes)."""
    tmp = tmp_path_factory.mktemp("finished")
    assert main(["train", write(tmp, "a.yaml", A), "--out", str(tmp / "runs"), "--quiet"]) == 0
    (run,) = glob.glob(str(tmp / "runs" / "a-*"))
    return run, open(os.path.join(run, "last.npz"), "rb").read()


@pytest.mark.parametrize("case, expected", [
    ("missing", ["no such checkpoint file"]),
    ("truncated", ["cut.npz: a truncated .npz archive"]),
    ("text", ["notes.npz: not an npnet checkpoint", "not an .npz archive"]),
    ("random", ["noise.npz: not an npnet checkpoint"]),
])
def test_an_unreadable_checkpoint_is_one_plain_message(tmp_path, finished_run, capsys, case,
                                                        expected):
    """Never NumPy's advice to unpickle, never "truncated" for a file that is no archive."""
    run, good = finished_run
    path = {"missing": tmp_path / "gone" / "last.npz", "truncated": tmp_path / "cut.npz",
            "text": tmp_path / "notes.npz", "random": tmp_path / "noise.npz"}[case]
    if case == "truncated":
        path.write_bytes(good[:2000])
    elif case == "text":
        path.write_text("hello, not a checkpoint\n")
    elif case == "random":
        path.write_bytes(os.urandom(3000))
    before = sorted(os.listdir(run))
    assert main(["train", "--resume", str(path)]) == 2
    err = capsys.readouterr().err
    assert_message(2, err, *expected)
    assert "pickle" not in err and err.count("truncated") <= 1, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "gone").exists() and sorted(os.listdir(run)) == before


def test_ctrl_c_prints_only_the_command_lines_hint(tmp_path):
    # so many epochs that the run cannot end by itself before the Ctrl-C, however the machine
    # shares its time between this test and the run
    config = dict(A, train=dict(A["train"], epochs=10_000_000), network={"model": "linear",
                                                                          "save_best": False})
    path = write(tmp_path, "long.yaml", config)
    env = dict(os.environ, PYTHONPATH=ROOT, MPLBACKEND="Agg")
    proc = subprocess.Popen([sys.executable, "-m", "npnet", "train", path, "--out", "runs"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = interrupt_when(proc, lambda: glob.glob(str(tmp_path / "runs" / "*" / "last.npz")), "no last.npz")
    assert proc.returncode == 130, err
    (last,) = glob.glob(str(tmp_path / "runs" / "*" / "last.npz"))
    hint = f"resume with: npnet train --resume {os.path.relpath(last, tmp_path)}"
    assert "stopped by Ctrl-C after" in out and hint in out, (out, err)
    assert "fit(" not in out + err and "Traceback" not in err, (out, err)


def test_a_second_sigterm_aborts_at_once_and_leaves_no_temporary(tmp_path):
    """scancel twice, or a launcher's SIGTERM after a Slurm --signal: the first asks for a stop
    after the step, the second aborts in the middle of it; exit 143 either way, the checkpoint
    of the epoch before whole, no temporary file left."""
    from _cluster import slow_site, wait_for  # slow_site: each step 0.5 s longer, so the second
    # signal lands inside one
    config = dict(A, train=dict(A["train"], epochs=10_000_000), network={"model": "linear",
                                                                          "save_best": False})
    path = write(tmp_path, "long.yaml", config)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, slow_site(tmp_path)]),
               MPLBACKEND="Agg", NPNET_TEST_STEP_SLEEP="0.5")
    proc = subprocess.Popen([sys.executable, "-m", "npnet", "train", path, "--out", "runs"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: glob.glob(str(tmp_path / "runs" / "*" / "last.npz")), "a first checkpoint",
                 seconds=300, proc=proc)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        sent = time.time()
        out, err = proc.communicate(timeout=120)
        took = time.time() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == 143, err
    assert err.count("SIGTERM: stopping after this step") == 1, err
    assert "npnet train: aborted by SIGTERM" in err and "Traceback" not in err, err
    assert took < 10, took  # at once, not after the epoch
    (run,) = glob.glob(str(tmp_path / "runs" / "*"))
    assert not [f for f in os.listdir(run) if f.endswith(".tmp")], os.listdir(run)
    load_checkpoint(os.path.join(run, "last.npz"))  # whole
