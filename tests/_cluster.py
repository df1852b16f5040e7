"""The real engines of a cluster on localhost, for tests/test_cluster_*.py: Debian's Open MPI with an
mpi4py built against it (a second environment, made by .ci/run), and a one-node Slurm (munged,
slurmctld, slurmd) started from a slurm.conf written here, every server on 127.0.0.1.

``slurm_cluster`` starts the daemons once per test session and stops each by its PID at the end,
also when a test failed; what is missing (a package, a daemon that will not start) is a skip
with the reason.
"""
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
# the environment with mpi4py built against Open MPI (.ci/run makes it)
OMPI_PYTHON = os.environ.get("NPNET_OPENMPI_PYTHON", "/opt/npnet-openmpi/bin/python")
ROOT_OK = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
MPICH_PYTHON = sys.executable  # the mpich wheel's

# a tiny run: mlp on 250 images of the embedded mini set (200 to train), 1 epoch of 8 steps
TINY = {"seed": 1, "train": {"batch_size": 25, "learning_rate": 0.05, "epochs": 1, "momentum": 0.9},
        "network": {"model": "mlp", "save_best": False},
        "speed": {"tune": False},
        "data": {"dataset": "fashion-mnist-mini", "val_fraction": 0.2, "max_train": 250,
                 "max_test": 40}}


def env(**extra):
    """The environment of every rank: this worktree's npnet, no thread settings, root allowed."""
    e = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join([ROOT, HERE]),
             PYTHONUNBUFFERED="1", **ROOT_OK)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        e.pop(var, None)
    e.update(extra)
    return e


def write_config(folder, config=TINY, name="tiny"):
    path = os.path.join(str(folder), f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return path


def run_folders(out):
    return sorted(glob.glob(os.path.join(str(out), "*")))


def openmpi_reason():
    """Why the Open MPI tests cannot run (None when they can)."""
    if not os.path.exists("/usr/bin/mpirun") or not os.path.exists(OMPI_PYTHON):
        return ("needs Debian's openmpi-bin and an environment with mpi4py built against it at "
                f"{OMPI_PYTHON} (.ci/run makes both)")
    proc = subprocess.run([OMPI_PYTHON, "-c", "from mpi4py import MPI; "
                           "print(MPI.Get_library_version())"], capture_output=True, text=True,
                          env=env(), timeout=120)
    if proc.returncode != 0 or "Open MPI" not in proc.stdout:
        return f"{OMPI_PYTHON}'s mpi4py is not Open MPI's: {proc.stdout[:80]} {proc.stderr[-300:]}"
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SLURM_CONF = """\
ClusterName=npnet
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SrunPortRange={srun_ports}
CommunicationParameters=NoInAddrAny
AuthType=auth/munge
AuthInfo=socket={dir}/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
KillWait=30
MinJobAge=5
InactiveLimit=0
SchedulerType=sched/backfill
FirstJobId={first_job}
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


def _first_job_id():
    """A first job id of its own for each test cluster, as a real cluster never gives an id twice.

    A rank killed by SIGKILL (a test does that, or a failed start) leaves MPICH's shared-memory
    segment in /dev/shm (``mpich_shm_<hash of the job>_0``); a cluster started afresh from job 1
    gave the same ids again, and every later step of a job with that id failed in MPI_Init (UCX's
    address exchange: "Message truncated", "failed to unpack address"), under srun --mpi=pmi2 on
    the mpich wheel (8 December: a job 1 killed in one cluster, job 1 of the next two clusters
    failed; with the segment removed, 12 of 12 steps started)."""
    return 1000 + int.from_bytes(os.urandom(4), "little") % 60_000_000  # MaxJobId: 67,043,328


def _mpich_segments():
    return glob.glob("/dev/shm/mpich_shm_*")


class Slurm:
    """A running one-node Slurm: ``env`` for its commands (SLURM_CONF), ``dir`` its folder."""

    def __init__(self, folder):
        self.dir = str(folder)
        self.conf = os.path.join(self.dir, "slurm.conf")
        self.daemons = []  # (name, Popen)
        self.shm_before = set()  # MPICH's segments in /dev/shm before the cluster started

    def start(self):
        self.shm_before = set(_mpich_segments())
        os.makedirs(os.path.join(self.dir, "state"))
        os.makedirs(os.path.join(self.dir, "spool"))
        low = free_port() // 100 * 100
        with open(self.conf, "w") as f:
            f.write(SLURM_CONF.format(host=socket.gethostname(), ctld_port=free_port(),
                                      d_port=free_port(), dir=self.dir,
                                      srun_ports=f"{max(low, 20000)}-{max(low, 20000) + 99}",
                                      first_job=_first_job_id()))
        key = os.path.join(self.dir, "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o600)
        self._daemon("munged", ["munged", "-F", "--force", f"--socket={self.dir}/munge.socket",
                                f"--key-file={key}", f"--pid-file={self.dir}/munged.pid",
                                f"--log-file={self.dir}/munged.log",
                                f"--seed-file={self.dir}/munged.seed"])
        self._wait(lambda: os.path.exists(f"{self.dir}/munge.socket"), "munged's socket")
        self._daemon("slurmctld", ["slurmctld", "-D", "-i", "-f", self.conf])
        self._daemon("slurmd", ["slurmd", "-D", "-f", self.conf])
        self._wait(self._node_idle, "the node to be idle (sinfo)")
        return self

    @property
    def env(self):
        return {"SLURM_CONF": self.conf}

    def _daemon(self, name, cmd):
        log = open(os.path.join(self.dir, f"{name}.out"), "w")
        self.daemons.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                    env=dict(os.environ, SLURM_CONF=self.conf),
                                                    start_new_session=True)))

    def _node_idle(self):
        proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                              env=dict(os.environ, SLURM_CONF=self.conf), timeout=30)
        return proc.stdout.strip() in ("idle", "mix")

    def _wait(self, ready, what, seconds=60):
        end = time.time() + seconds
        while not ready():
            for name, proc in self.daemons:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} ended with {proc.returncode}: " + self.log(name))
            if time.time() > end:
                raise RuntimeError(f"no {what} after {seconds} s: " + "".join(
                    self.log(n) for n, _ in self.daemons))
            time.sleep(0.2)

    def log(self, name):
        text = ""
        for path in (f"{self.dir}/{name}.out", f"{self.dir}/{name}.log"):
            with contextlib.suppress(OSError), open(path) as f:
                text += f.read()[-1500:]
        return text

    def stop(self):
        """Stops every daemon by its PID (slurmd, slurmctld, munged), SIGKILL after 10 s, then
        any step daemon (slurmstepd) of this cluster that outlived its slurmd."""
        self._stop_daemons()
        for pid in self._step_daemons():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for path in set(_mpich_segments()) - self.shm_before:
            with contextlib.suppress(OSError):
                os.remove(path)  # what a site's job epilog does: see _first_job_id

    def _step_daemons(self):
        mine = f"SLURM_CONF={self.conf}".encode()
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if not f.read().startswith(b"slurmstepd"):
                        continue
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if mine in f.read().split(b"\0"):
                        found.append(int(pid))
            except OSError:
                continue
        return found

    def _stop_daemons(self):
        for _, proc in reversed(self.daemons):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in reversed(self.daemons):
            try:
                proc.wait(timeout=3 if name == "munged" else 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def slurm_reason():
    """Why the Slurm tests cannot run (None when they can)."""
    missing = [c for c in ("munged", "slurmctld", "slurmd", "srun", "sbatch", "scancel")
               if shutil.which(c) is None]
    if missing:
        return f"needs Debian's slurm-wlm and munge ({', '.join(missing)} missing; .ci/run installs them)"
    return None


SLOW_SITE = """import os, time
import npnet.train.trainer as t
_real = t.train_step
def _slow(*args):
    time.sleep(float(os.environ.get("NPNET_TEST_STEP_SLEEP", "0.2")))
    return _real(*args)
t.train_step = _slow
"""


def slow_site(folder):
    """A folder whose sitecustomize makes every training step 0.2 s slower (a run that a test
    can stop in the middle however fast the machine); put it on PYTHONPATH."""
    site = os.path.join(str(folder), "slow-site")
    os.makedirs(site, exist_ok=True)
    with open(os.path.join(site, "sitecustomize.py"), "w") as f:
        f.write(SLOW_SITE)
    return site


def wait_for(ready, what, seconds=120, proc=None):
    """Polls ``ready()`` until true; fails after ``seconds`` or if ``proc`` ended first."""
    end = time.time() + seconds
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"ended before {what}: {proc.communicate()}")
        assert time.time() < end, f"no {what} in {seconds} s"
        time.sleep(0.2)


def rank_args():
    """``python _cluster.py rank-args RANK ARG... -- CMD...``: runs CMD, with ARG... appended on
    the rank RANK only (the launcher's rank variable), to give one rank another config."""
    argv = sys.argv[2:]
    want, extra = argv[0], argv[1:argv.index("--")]
    cmd = argv[argv.index("--") + 1:]
    mine = next((os.environ[v] for v in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID")
                 if v in os.environ), "0")
    os.execv(cmd[0], cmd + (extra if mine == want else []))


if __name__ == "__main__" and sys.argv[1] == "rank-args":
    rank_args()
