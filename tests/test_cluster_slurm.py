"""npnet train on a real one-node Slurm (munged, slurmctld, slurmd on 127.0.0.1, started once for
the session and stopped by PID): srun with the PMI of each MPI, the docs' sbatch script, srun
without a PMI refused, scancel leaving a checkpoint that resumes to the straight run's numbers,
a SIGKILLed rank ending the others by the deadline, a config error on one rank, --nproc inside
an allocation. Skipped with the reason when Slurm, munge or Open MPI's mpi4py are missing."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import _cluster as c
from npnet.train import load_checkpoint

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(c.slurm_reason() is not None, reason=str(c.slurm_reason()))]
OMPI = c.openmpi_reason() if c.slurm_reason() is None else "no Slurm"
needs_openmpi = pytest.mark.skipif(OMPI is not None, reason=str(OMPI))

# the recipe of docs/guide/distributed.md, "Slurm: sbatch", with its paths filled in
SBATCH = """#!/bin/bash
#SBATCH --job-name=npnet-test
#SBATCH --ntasks=2
#SBATCH --cpus-per-task=1
#SBATCH --signal=TERM@60
#SBATCH --output={out}/job.log
export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK NUMBA_NUM_THREADS=$SLURM_CPUS_PER_TASK
srun --mpi=pmi2 --kill-on-bad-exit=1 {python} -m npnet train {config} --out {out}/runs
"""


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    cluster = c.Slurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except (RuntimeError, OSError) as e:
        cluster.stop()
        pytest.skip(f"the Slurm daemons did not start: {e}")
    try:
        yield cluster
    finally:
        cluster.stop()


def srun(slurm, *args, timeout=300, extra_env=None, python=c.MPICH_PYTHON):
    cmd = ["srun", "-n", "2", *args[:-1], python, "-m", "npnet", "train", *args[-1]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=c.env(**slurm.env, **(extra_env or {})), cwd=c.ROOT)


def assert_one_run(out, stdout, world=2, launcher="srun"):
    runs = c.run_folders(out)
    assert len(runs) == 1, runs
    assert stdout.count("run folder:") == 1 and stdout.count("test accuracy") == 1, stdout
    record = json.load(open(os.path.join(runs[0], "metrics.json")))["world"]
    assert record["world_size"] == world and record["launcher"] == launcher, record
    assert len(record["threads"]) == world
    return runs[0]


def test_srun_with_pmi2_runs_one_world_on_the_mpich_wheel(slurm, tmp_path):
    config = c.write_config(tmp_path)
    proc = srun(slurm, "--mpi=pmi2", "--kill-on-bad-exit=1", [config, "--out", str(tmp_path / "r")])
    assert proc.returncode == 0, proc.stderr
    assert_one_run(tmp_path / "r", proc.stdout)
    assert "world: 2 processes, launcher srun, MPICH" in proc.stdout, proc.stdout


@needs_openmpi
def test_srun_with_pmix_runs_one_world_on_open_mpi(slurm, tmp_path):
    config = c.write_config(tmp_path)
    proc = srun(slurm, "--mpi=pmix", "--kill-on-bad-exit=1", [config, "--out", str(tmp_path / "r")],
                python=c.OMPI_PYTHON)
    assert proc.returncode == 0, proc.stderr
    assert_one_run(tmp_path / "r", proc.stdout)
    assert "Open MPI v4" in proc.stdout, proc.stdout


def test_srun_without_a_pmi_is_refused_with_the_fix(slurm, tmp_path):
    config = c.write_config(tmp_path)
    proc = srun(slurm, "--mpi=none", [config, "--out", str(tmp_path / "r")])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("MPI sees a world of 1") == 1, proc.stderr
    assert "srun --mpi=pmi2" in proc.stderr and "srun --mpi=list" in proc.stderr
    assert not (tmp_path / "r").exists() and "run folder" not in proc.stdout


def test_a_config_error_on_one_rank_is_one_message_and_exit_2(slurm, tmp_path):
    config = c.write_config(tmp_path)
    cmd = ["srun", "-n", "2", "--mpi=pmi2", sys.executable, os.path.join(c.HERE, "_cluster.py"),
           "rank-args", "1", "--set", "train.batch_size=0", "--", sys.executable, "-m", "npnet",
           "train", config, "--out", str(tmp_path / "r")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env=c.env(**slurm.env), cwd=c.ROOT)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("npnet train: rank 1: ") == 1, proc.stderr
    assert proc.stderr.count("expected a value >= 1, got 0") == 1, proc.stderr
    assert not (tmp_path / "r").exists() and "run folder" not in proc.stdout, proc.stdout


def test_nproc_inside_an_allocation_forks_its_ranks(slurm, tmp_path):
    config = c.write_config(tmp_path)
    wrap = f"{sys.executable} -m npnet train {config} --nproc 2 --out {tmp_path}/r"
    proc = subprocess.run(["sbatch", "--wait", "-n", "2", f"--output={tmp_path}/job.log",
                           "--wrap", wrap], capture_output=True, text=True, timeout=300,
                          env=c.env(**slurm.env), cwd=c.ROOT)
    log = (tmp_path / "job.log").read_text()
    assert proc.returncode == 0, log
    assert_one_run(tmp_path / "r", log, launcher="npnet train --nproc")


def _submit(slurm, tmp_path, config, extra_env=None):
    script = tmp_path / "train.sh"
    script.write_text(SBATCH.format(out=tmp_path, python=sys.executable, config=config))
    proc = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True,
                          timeout=60, env=c.env(**slurm.env, **(extra_env or {})), cwd=c.ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def _job_state(slurm, job):
    proc = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True,
                          timeout=30, env=c.env(**slurm.env))
    for word in proc.stdout.split():
        if word.startswith("JobState="):
            return word[9:]
    return "GONE"


def _ended(slurm, job):
    return _job_state(slurm, job) not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")


def test_the_docs_sbatch_script_gives_one_run(slurm, tmp_path):
    job = _submit(slurm, tmp_path, c.write_config(tmp_path))
    c.wait_for(lambda: _ended(slurm, job), f"the end of job {job}", seconds=300)
    log = (tmp_path / "job.log").read_text()
    assert _job_state(slurm, job) in ("COMPLETED", "GONE"), log
    assert_one_run(tmp_path / "runs", log)


def test_scancel_leaves_a_checkpoint_that_resumes_to_the_straight_run(slurm, tmp_path):
    config = c.write_config(tmp_path, dict(c.TINY, train=dict(c.TINY["train"], epochs=3)))
    straight = subprocess.run([sys.executable, "-m", "npnet", "train", config, "--out",
                               str(tmp_path / "straight"), "--quiet"], env=c.env(), cwd=c.ROOT,
                              timeout=300, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    site = c.slow_site(tmp_path)  # 0.2 s a step: 24 steps outlast the scancel
    job = _submit(slurm, tmp_path, config, {"PYTHONPATH": os.pathsep.join([c.ROOT, c.HERE, site])})
    c.wait_for(lambda: glob.glob(str(tmp_path / "runs" / "*" / "last.npz")), "a first checkpoint",
               seconds=300)
    subprocess.run(["scancel", job], check=True, timeout=30, env=c.env(**slurm.env))
    c.wait_for(lambda: _ended(slurm, job), f"the end of job {job}", seconds=120)
    log = (tmp_path / "job.log").read_text()
    assert log.count("SIGTERM: stopping after this step") == 1, log
    assert "resume with: npnet train --resume" in log and "Traceback" not in log, log
    last = glob.glob(str(tmp_path / "runs" / "*" / "last.npz"))[0]
    saved = load_checkpoint(last)
    assert (int(saved["epoch"]), int(saved["step"])) != (3, 0), "the job ended before scancel"
    assert not glob.glob(str(tmp_path / "runs" / "*" / ".*.tmp"))  # no temporary survives
    resumed = subprocess.run([sys.executable, "-m", "npnet", "train", "--resume", last, "--quiet"],
                             env=c.env(), cwd=c.ROOT, timeout=300, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    ref = load_checkpoint(glob.glob(str(tmp_path / "straight" / "*" / "last.npz"))[0])
    got = load_checkpoint(last)
    for k in (k for k in ref if k.startswith("model/")):
        scale = float(np.abs(ref[k]).max())
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-4, atol=1e-4 * scale, err_msg=k)


def _rank_pid(marker, rank):
    """The PID of the process whose command line holds ``marker`` and whose SLURM_PROCID is rank."""
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                line = f.read()
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if marker.encode() in line and b"npnet" in line and line.startswith(sys.executable.encode()) \
                and f"SLURM_PROCID={rank}".encode() in environ:
            return int(pid)
    return None


def test_a_sigkilled_rank_ends_the_others_by_the_deadline(slurm, tmp_path):
    config = c.write_config(tmp_path, dict(c.TINY, train=dict(c.TINY["train"], epochs=1000),
                                           distributed={"timeout": 8}))
    site = c.slow_site(tmp_path)
    out = str(tmp_path / "r")
    cmd = ["srun", "-n", "2", "--mpi=pmi2", sys.executable, "-m", "npnet", "train", config,
           "--out", out]  # no --kill-on-bad-exit: the deadline alone must end rank 0
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=c.env(**slurm.env, PYTHONPATH=os.pathsep.join([c.ROOT, c.HERE, site])),
                            cwd=c.ROOT)
    try:
        c.wait_for(lambda: glob.glob(os.path.join(out, "*", "last.npz")), "a first checkpoint",
                   seconds=300, proc=proc)
        pid = _rank_pid(out, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = time.time()
        _, err = proc.communicate(timeout=120)
        took = time.time() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    assert took < 8 + 10 + 15, took  # the deadline, the survivors' roll call, slack
    assert err.count("rank 1 went silent") == 1, err
    assert "distributed.timeout" in err
    load_checkpoint(glob.glob(os.path.join(out, "*", "last.npz"))[0])  # whole
    assert _rank_pid(out, 0) is None  # rank 0 is gone too
