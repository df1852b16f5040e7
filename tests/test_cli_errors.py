"""What ``npnet train`` says when it cannot run, checked through a real ``python -m npnet``
process: exit status 2, one message that says what was wrong and what to do, no traceback, no
run folder left behind. A CIFAR-10 config without CIFAR-10 on disk points at the embedded set
(and that remedy works); a bad value names the key without burying it under the key list; an
explicit ``data.root`` that does not exist is an error, never a silent fallback. Resume errors:
``test_resume.py``; sweep errors: ``test_sweep.py``.
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


def test_cifar_config_without_cifar_points_at_the_embedded_set(tmp_path):
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


@pytest.mark.parametrize("lr, expected", [(0, "expected a value > 0.0"),
                                          (float("nan"), "expected a finite number")])
def test_a_bad_value_names_the_key_and_leaves_no_folder(tmp_path, lr, expected):
    config = dict(A, train=dict(A["train"], learning_rate=lr))
    status, _, err = npnet(tmp_path, "train", write(tmp_path, "c.yaml", config), "--out", "runs")
    assert_message(status, err, "train.learning_rate", expected)
    assert "valid keys" not in err and "batch_size" not in err  # no key list after a bad value
    assert not (tmp_path / "runs").exists()


def test_a_bad_set_value_shows_no_key_list_but_an_unknown_key_does(tmp_path):
    path = write(tmp_path, "a.yaml", A)
    status, _, err = npnet(tmp_path, "train", path, "--set", "train.learning_rate=-1")
    assert_message(status, err, "'train.learning_rate': expected a value > 0.0, got -1")
    assert "valid keys" not in err and len(err.strip().splitlines()) == 2, err
    status, _, err = npnet(tmp_path, "train", path, "--set", "train.learning_rat=0.1")
    assert_message(status, err, "unknown key 'train.learning_rat'", "valid keys:", "batch_size")
    assert not (tmp_path / "runs").exists()


def test_a_missing_data_root_is_an_error(tmp_path):
    config = dict(A, data=dict(A["data"], dataset="fashion-mnist",
                               root=str(tmp_path / "no-such-folder")))
    status, _, err = npnet(tmp_path, "train", write(tmp_path, "d.yaml", config), "--out", "runs")
    assert_message(status, err, "data.root", "no-such-folder", "is not a folder")
    assert not (tmp_path / "runs").exists()
