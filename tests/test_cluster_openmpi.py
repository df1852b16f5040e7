"""npnet train on Debian's Open MPI 4 (mpirun, and mpi4py built against it in a second
environment): ``mpirun -n 2`` and ``--nproc 2`` train one world as one process does, a config
error on one rank is one message and exit 2, SIGTERM stops with a resumable checkpoint and exit
143, root without Open MPI's two variables is one message. Skipped with the reason when Open MPI
or that environment is missing (.ci/run makes them)."""
import glob
import json
import os
import signal
import subprocess

import numpy as np
import pytest

import _cluster as c
from npnet.train import load_checkpoint

MPIRUN = "/usr/bin/mpirun.openmpi" if os.path.exists("/usr/bin/mpirun.openmpi") else "/usr/bin/mpirun"
REASON = c.openmpi_reason()
pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(REASON is not None, reason=str(REASON))]


def weights(run):
    arrays = load_checkpoint(os.path.join(run, "last.npz"))
    return {k: v for k, v in arrays.items() if k.startswith("model/")}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The one-process run of the tiny config (the mpich environment's Python: the same NumPy)."""
    folder = tmp_path_factory.mktemp("one")
    config = c.write_config(folder)
    proc = subprocess.run([c.MPICH_PYTHON, "-m", "npnet", "train", config, "--out",
                           str(folder / "r"), "--quiet"], env=c.env(), cwd=c.ROOT, timeout=300,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return config, weights(c.run_folders(folder / "r")[0])


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        scale = float(np.abs(a[k]).max())
        np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-4 * scale, err_msg=k)


def test_mpirun_two_ranks_train_as_one_process(one_process, tmp_path):
    config, ref = one_process
    proc = subprocess.run([MPIRUN, "-n", "2", "--bind-to", "none", c.OMPI_PYTHON, "-m", "npnet",
                           "train", config, "--out", str(tmp_path / "r")], capture_output=True,
                          text=True, env=c.env(), cwd=c.ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    runs = c.run_folders(tmp_path / "r")
    assert len(runs) == 1 and proc.stdout.count("run folder:") == 1, proc.stdout
    world = json.load(open(os.path.join(runs[0], "metrics.json")))["world"]
    assert world["world_size"] == 2 and world["launcher"] == "mpirun (Open MPI)", world
    assert world["mpi"].startswith("Open MPI v4") and len(world["threads"]) == 2
    assert_same(ref, weights(runs[0]))


def test_nproc_two_on_open_mpi(one_process, tmp_path):
    config, ref = one_process
    proc = subprocess.run([c.OMPI_PYTHON, "-m", "npnet", "train", config, "--nproc", "2", "--out",
                           str(tmp_path / "r")], capture_output=True, text=True, env=c.env(),
                          cwd=c.ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    runs = c.run_folders(tmp_path / "r")
    assert len(runs) == 1, runs
    assert "world: 2 processes, launcher npnet train --nproc, Open MPI v4" in proc.stdout
    assert_same(ref, weights(runs[0]))


def test_a_config_error_on_one_rank_under_mpirun(tmp_path):
    config = c.write_config(tmp_path)
    cmd = [MPIRUN, "-n", "2", "--bind-to", "none", c.OMPI_PYTHON,
           os.path.join(c.HERE, "_cluster.py"), "rank-args", "1", "--set", "train.batch_size=0",
           "--", c.OMPI_PYTHON, "-m", "npnet", "train", config, "--out", str(tmp_path / "r")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=c.env(), cwd=c.ROOT, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("npnet train: rank 1: ") == 1, proc.stderr
    assert proc.stderr.count("expected a value >= 1, got 0") == 1, proc.stderr
    assert not (tmp_path / "r").exists() and "run folder" not in proc.stdout


def test_root_without_open_mpis_variables_is_one_message(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root needs OMPI_ALLOW_RUN_AS_ROOT")
    e = c.env()
    for var in c.ROOT_OK:
        e.pop(var)
    proc = subprocess.run([c.OMPI_PYTHON, "-m", "npnet", "train", c.write_config(tmp_path),
                           "--nproc", "2", "--out", str(tmp_path / "r")], capture_output=True,
                          text=True, env=e, cwd=c.ROOT, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_sigterm_under_nproc_stops_with_a_resumable_checkpoint(tmp_path):
    config = c.write_config(tmp_path, dict(c.TINY, train=dict(c.TINY["train"], epochs=1000)))
    site = c.slow_site(tmp_path)
    out = str(tmp_path / "r")
    proc = subprocess.Popen([c.OMPI_PYTHON, "-m", "npnet", "train", config, "--nproc", "2",
                             "--out", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=c.ROOT,
                            env=c.env(PYTHONPATH=os.pathsep.join([c.ROOT, c.HERE, site])))
    try:
        c.wait_for(lambda: glob.glob(os.path.join(out, "*", "last.npz")), "a first checkpoint",
                   seconds=300, proc=proc)
        proc.send_signal(signal.SIGTERM)  # as a Slurm time limit or kill would
        stdout, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == 143, err
    assert err.count("SIGTERM: stopping after this step") == 1, err
    assert "resume with: npnet train --resume" in stdout and "Traceback" not in err
    last = glob.glob(os.path.join(out, "*", "last.npz"))[0]
    saved = load_checkpoint(last)
    assert int(saved["epoch"]) + int(saved["step"]) > 1
    assert os.path.exists(os.path.join(os.path.dirname(last), "history.json"))
    assert not glob.glob(os.path.join(out, "*", ".*.tmp"))
