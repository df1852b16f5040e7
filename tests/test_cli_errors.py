"""The runner's numbered defects of issue 12, each checked through a real ``python -m npnet``
process: the exit status, a message that says what to do, no traceback, no run folder left
behind, and nothing overwritten.

1. ``npnet train B.yaml --resume A/last.npz`` overwrote A's config.yaml before checking anything.
2. Every shipped config needed CIFAR-10, with nothing on the command line to point it elsewhere.
3. Tracebacks instead of messages: --resume of a missing path (which also created that folder),
   of a truncated checkpoint; ``learning_rate: 0`` or ``.nan`` (which left a folder behind).
4. An explicit ``data.root`` that does not exist silently loaded the system's Fashion-MNIST.
"""
import glob
import os
import socket
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

A = {"seed": 1,
     "train": {"batch_size": 50, "learning_rate": 0.05, "epochs": 1},
     "network": {"model": "linear"},
     "data": {"dataset": "fashion-mnist-mini", "max_train": 200, "max_test": 50,
              "val_fraction": 0.2}}


def npnet(cwd, *args, setup=""):
    """Runs ``npnet args`` in a fresh interpreter (``setup``: Python run first); returns
    (exit status, stdout, stderr)."""
    code = f"import sys\n{setup}\nfrom npnet.run.cli import main\nsys.exit(main(sys.argv[1:]))"
    env = dict(os.environ, PYTHONPATH=ROOT, MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


def write(folder, name, config):
    path = folder / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


def assert_message(status, err, *phrases):
    assert status == 2, err
    assert "Traceback" not in err, err
    for phrase in phrases:
        assert phrase in err, err


def test_1_resume_with_another_config_is_refused_and_overwrites_nothing(tmp_path):
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


def test_2_a_cifar_config_without_cifar_says_what_to_do(tmp_path):
    with socket.socket() as s:  # a port nobody listens on: the download fails at once, locally
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    setup = ("import npnet.data\n"
             f"npnet.data.CIFAR10_URLS['python'] = 'http://127.0.0.1:{port}/cifar.tar.gz'")
    empty = tmp_path / "data"
    empty.mkdir()
    config = os.path.join(ROOT, "configs", "cnn_bn.yaml")
    status, _, err = npnet(tmp_path, "train", config, "--out", "runs",
                           "--set", f"data.root={empty}", setup=setup)
    assert_message(status, err, "CIFAR-10 not found", "--set data.dataset=fashion-mnist-mini")
    assert not (tmp_path / "runs").exists()
    # ... and the remedy works: the same config on the embedded set
    status, out, err = npnet(tmp_path, "train", config, "--out", "runs", "--epochs", "1",
                             "--set", "data.dataset=fashion-mnist-mini",
                             "--set", "data.max_train=100", "--set", "data.max_test=20")
    assert status == 0, err
    assert "test accuracy" in out and len(os.listdir(tmp_path / "runs")) == 1


@pytest.mark.parametrize("case", ["missing", "truncated", "lr0", "lrnan"])
def test_3_failures_are_messages_and_leave_no_folder(tmp_path, case):
    if case in ("missing", "truncated"):
        status, _, err = npnet(tmp_path, "train", write(tmp_path, "a.yaml", A), "--out", "runs",
                               "--quiet")
        assert status == 0, err
        (run,) = glob.glob(str(tmp_path / "runs" / "a-*"))
        if case == "missing":
            path, expect = tmp_path / "gone" / "last.npz", ("no such checkpoint file",)
        else:
            path, expect = tmp_path / "cut.npz", ("cut.npz", "truncated")
            path.write_bytes(open(os.path.join(run, "last.npz"), "rb").read()[:2000])
        status, _, err = npnet(tmp_path, "train", "a.yaml", "--resume", path)
        assert_message(status, err, *expect)
        assert not (tmp_path / "gone").exists()
        assert os.listdir(tmp_path / "runs") == [os.path.basename(run)]
        return
    lr = {"lr0": 0, "lrnan": float("nan")}[case]
    config = dict(A, train=dict(A["train"], learning_rate=lr))
    status, _, err = npnet(tmp_path, "train", write(tmp_path, "c.yaml", config), "--out", "runs")
    assert_message(status, err, "train.learning_rate", "expected a" if lr == 0 else "finite")
    assert not (tmp_path / "runs").exists()


def test_4_a_missing_data_root_is_an_error(tmp_path):
    config = dict(A, data=dict(A["data"], dataset="fashion-mnist",
                               root=str(tmp_path / "no-such-folder")))
    status, _, err = npnet(tmp_path, "train", write(tmp_path, "d.yaml", config), "--out", "runs")
    assert_message(status, err, "data.root", "no-such-folder", "is not a folder")
    assert not (tmp_path / "runs").exists()
