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


def test_a_bad_set_value_shows_no_key_list_and_an_unknown_key_the_closest(tmp_path):
    path = write(tmp_path, "a.yaml", A)
    status, _, err = npnet(tmp_path, "train", path, "--set", "train.learning_rate=-1")
    assert_message(status, err, "'train.learning_rate': expected a value > 0.0, got -1")
    assert "valid keys" not in err and len(err.strip().splitlines()) == 2, err
    status, _, err = npnet(tmp_path, "train", path, "--set", "train.learning_rat=0.1")
    assert_message(status, err, "unknown key 'train.learning_rat' (did you mean "
                   "'train.learning_rate'?); valid keys in 'train': batch_size",
                   "every key, with its default: npnet train --help")
    assert "valid keys:\n" not in err and len(err.strip().splitlines()) == 3, err  # no schema dump
    assert not (tmp_path / "runs").exists()


def test_a_missing_data_root_is_an_error(tmp_path):
    config = dict(A, data=dict(A["data"], dataset="fashion-mnist",
                               root=str(tmp_path / "no-such-folder")))
    status, _, err = npnet(tmp_path, "train", write(tmp_path, "d.yaml", config), "--out", "runs")
    assert_message(status, err, "data.root", "no-such-folder", "is not a folder")
    assert not (tmp_path / "runs").exists()


def unwritable_folder(tmp_path):
    """A folder path in which no file can be written: a read-only folder, or (as root, whom
    permission bits do not stop) a path under /sys; skips where there is neither."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        (locked / "probe").write_text("")
    except OSError:
        return locked / "runs"
    (locked / "probe").unlink()
    locked.chmod(0o700)
    try:
        os.mkdir("/sys/npnet-out-test")
    except OSError:
        return "/sys/npnet-out-test"
    os.rmdir("/sys/npnet-out-test")
    pytest.skip("no unwritable folder on this machine")


@pytest.mark.parametrize("kind", ["file", "under a file", "unwritable"])
def test_a_bad_out_is_one_plain_message(tmp_path, kind):
    (tmp_path / "taken").write_text("a file\n")
    out, said = {"file": (tmp_path / "taken", "is a file, not a folder"),
                 "under a file": (tmp_path / "taken" / "runs", "is a file, so no folder"),
                 "unwritable": (None, "cannot write in")}[kind]
    out = unwritable_folder(tmp_path) if out is None else out
    config = write(tmp_path, "c.yaml", A)
    status, _, err = npnet(tmp_path, "train", config, "--out", out)
    assert_message(status, err, f"npnet train: --out {out}: ", said, "give a folder you can write in")
    assert "unexpected error" not in err and "bug" not in err and len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(tmp_path)) == sorted(["c.yaml", "taken"] + ["locked"] * (kind == "unwritable"))
    assert (tmp_path / "taken").read_text() == "a file\n"
    if os.path.isdir(tmp_path / "locked"):
        assert os.listdir(tmp_path / "locked") == []


def test_a_bad_out_of_sweep_and_compare_and_of_the_library_runner(tmp_path, capsys):
    from npnet.run.cli import main
    from npnet.run.config import validate_config
    from npnet.run.experiment import RunError
    from npnet.run.runner import run_experiment
    taken = tmp_path / "taken"
    taken.write_text("")
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"config": A, "grid": {"seed": [1, 2]}}))
    assert main(["sweep", str(sweep), "--out", str(taken)]) == 2
    assert main(["compare", str(tmp_path), "--out", str(taken / "figures")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"npnet sweep: --out {taken}: {taken} is a file, not a folder; give a folder you "
                   "can write in (made if missing)",
                   f"npnet compare: --out {taken / 'figures'}: {taken} is a file, so no folder "
                   f"{taken / 'figures'} can be made in it; give a folder you can write in (made if missing)"]
    with pytest.raises(RunError, match="cannot write the run folder .*give another --out"):
        run_experiment(validate_config(A), out=str(taken), progress=False, log=lambda *a: None)
    assert sorted(os.listdir(tmp_path)) == ["s.yaml", "taken"]
