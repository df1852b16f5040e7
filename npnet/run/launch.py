"""``npnet train CONFIG --nproc N``: one run on N local processes, started through the MPI launcher.

The command checks everything it can before it starts anything (the config, ``--nproc``, the
batch against the number of processes, mpi4py and ``mpiexec`` being there): a problem is one
message and exit status 2, with no run folder. Then it runs
``mpiexec -n N`` on localhost (``launch_command``: Open MPI or MPICH) ``python -m npnet train
...`` with the same arguments, each rank
limited to ``cores // N`` Numba and BLAS threads unless the environment sets them
(``OMP_NUM_THREADS``, ``NUMBA_NUM_THREADS``, ...), and returns mpiexec's exit status. The ranks
find their world from MPI (``npnet.run.ranks``), exactly as under ``mpiexec`` or ``srun`` used
directly. Ctrl-C is passed on to every rank (found in the launcher's session): the run stops
after the current step with a resumable checkpoint and exit status 130 (a second Ctrl-C aborts
at once); SIGTERM does the same with exit status 143.
"""
import importlib.util
import os
import shutil
import signal
import subprocess
import sys

from .experiment import RunError
from .threads import THREAD_VARS, available_cores, thread_env

PROGRESS_VAR = "NPNET_PROGRESS"  # "bar" when the launcher's stderr is a terminal


def check_launch(nproc, config):
    """RunError for what makes ``--nproc`` impossible: N < 1, mpi4py or mpiexec missing, a global
    batch smaller than N (every process needs one image of each batch)."""
    if nproc < 1:
        raise RunError(f"--nproc must be >= 1, got {nproc}")
    if nproc == 1:
        return
    if not _has_mpi4py():
        from ..distributed.world import INSTALL_HINT
        raise RunError(f"--nproc {nproc} needs MPI: {INSTALL_HINT}")
    mpiexec = find_mpiexec()
    if mpiexec is None:
        raise RunError(f"--nproc {nproc} needs an MPI launcher (mpiexec), found none next to "
                       f"{sys.executable} or on PATH; pip install mpich (or your system's MPI)")
    check_root(mpi_family(mpiexec))
    batch = config["train"]["batch_size"]
    if batch is not None and batch < nproc:
        raise RunError(f"--nproc {nproc}: train.batch_size {batch} is smaller than the number "
                       f"of processes; every process needs at least one image of each batch")


def _has_mpi4py():
    return importlib.util.find_spec("mpi4py") is not None  # found, not imported


def find_mpiexec():
    """The launcher of the MPI that mpi4py uses (Open MPI's mpirun for an mpi4py built against
    Open MPI, hydra's mpiexec for MPICH): the first of ``mpiexec`` next to this Python (the mpich
    wheel puts it there), on PATH, ``mpiexec.openmpi`` / ``mpiexec.mpich`` (Debian's names) whose
    family is the library's; the first found when the library does not say; else None."""
    names = [os.path.join(os.path.dirname(sys.executable), "mpiexec"), "mpiexec",
             "mpiexec.openmpi", "mpiexec.mpich", "mpiexec.hydra"]
    found = [p for p in (n if os.path.isabs(n) else shutil.which(n) for n in names)
             if p and os.access(p, os.X_OK)]
    want = library_family()
    for path in found:
        if want == "unknown" or mpi_family(path) == want:
            return path
    return found[0] if found else None


def library_family():
    """The family of the MPI library mpi4py loads ("openmpi", "mpich", "unknown"), asked of a
    child process that loads it without starting MPI (this one never loads MPI)."""
    code = ("import mpi4py; mpi4py.rc.initialize = mpi4py.rc.finalize = False; "
            "from mpi4py import MPI; print(MPI.Get_library_version())")
    try:
        text = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return _family(text)


def _family(text):
    if "OpenRTE" in text or "Open MPI" in text or "open-mpi.org" in text:
        return "openmpi"
    if "HYDRA" in text or "MPICH" in text or "Intel(R) MPI" in text:
        return "mpich"
    return "unknown"


def mpi_family(mpiexec):
    """``"openmpi"``, ``"mpich"`` (MPICH, Intel MPI: the hydra launcher) or ``"unknown"``, from
    what ``mpiexec --version`` prints (Open MPI 4: ``mpiexec (OpenRTE) 4.1.4``; Open MPI 5:
    ``mpiexec (Open MPI) 5.0``; MPICH: ``HYDRA build details``)."""
    try:
        text = subprocess.run([mpiexec, "--version"], capture_output=True, text=True,
                              timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return _family(text)


OMPI_ROOT_VARS = ("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM")


def check_root(family):
    """RunError when Open MPI would refuse to start: run as root without its two variables."""
    if family == "openmpi" and os.geteuid() == 0 and any(os.environ.get(v) != "1"
                                                         for v in OMPI_ROOT_VARS):
        raise RunError("Open MPI refuses to start processes as root; in a container or CI where "
                       "root is expected, export OMPI_ALLOW_RUN_AS_ROOT=1 "
                       "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 (or run as another user)")


def rank_argv(args):
    """The arguments of ``npnet train`` for every rank: the user's, without ``--nproc``."""
    argv = [] if args.config is None else [args.config]
    for s in args.set:
        argv += ["--set", s]
    for flag, value in (("--out", args.out), ("--epochs", args.epochs), ("--name", args.name),
                        ("--resume", args.resume)):
        if value is not None:
            argv += [flag, str(value)]
    return argv + [flag for flag, on in (("--quiet", args.quiet), ("--traceback", args.traceback))
                   if on]


def launch_command(mpiexec, nproc, argv, family=None):
    """The launcher's command for N processes on this machine only, then ``python -m npnet train
    ARGV``. Open MPI: N slots on localhost (``--host localhost:N``; it would count cores
    otherwise), no binding (each rank runs cores / N threads). MPICH's hydra: ``-launcher fork``,
    so that inside a Slurm allocation it forks the ranks instead of trying ``srun``."""
    family = family or mpi_family(mpiexec)
    if family == "openmpi":
        where = ["--host", f"localhost:{nproc}", "--bind-to", "none"]
    elif family == "mpich":
        where = ["-launcher", "fork", "-host", "localhost"]
    else:
        where = ["-host", "localhost"]
    return [mpiexec, "-n", str(nproc), *where, sys.executable, "-m", "npnet", "train", *argv]


def rank_env(nproc):
    """The environment of the ranks: the threads shared out (unless set), npnet's markers."""
    from ..distributed.world import LAUNCHED_BY_NPNET
    env = dict(os.environ)
    if not any(var in env for var in THREAD_VARS):
        env.update(thread_env(max(1, available_cores() // nproc)))
    env[LAUNCHED_BY_NPNET] = "1"
    env[PROGRESS_VAR] = "bar" if _is_terminal(sys.stderr) else "lines"
    env.setdefault("PYTHONUNBUFFERED", "1")  # lines arrive as they are printed
    return env


def launch(args):
    """Runs the ranks and waits for them; returns the exit status (130 after a Ctrl-C, 143 after
    a SIGTERM, e.g. from a Slurm time limit or ``scancel`` of the job running this command)."""
    cmd = launch_command(find_mpiexec(), args.nproc, rank_argv(args))  # ~0.5 s: asks the library
    # a session of its own: the terminal's Ctrl-C reaches only this process, which passes one
    # signal on per signal (the launcher reads a second one as "abort at once")
    proc = subprocess.Popen(cmd, env=rank_env(args.nproc), start_new_session=True)
    signals = []

    def forward(signum, frame):
        signals.append(signum)
        ranks = _ranks_of(proc.pid)  # the ranks themselves: Open MPI's mpirun would kill them
        for pid in ranks or [proc.pid]:
            try:
                os.kill(pid, signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)
            except ProcessLookupError:
                pass
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if code < 0:  # mpiexec itself ended by a signal
        code = 128 - code
    if signals and code != 0:
        return 128 + int(signals[0])  # 130 or 143, whatever the launcher made of it
    return code


def _ranks_of(session):
    """The PIDs of the ranks (``python -m npnet train``) in the launcher's session ``session``,
    from /proc (Linux); [] elsewhere or before they started. Signals go to them directly: Open
    MPI's mpirun turns a signal into a kill sequence that leaves no time for a checkpoint."""
    found = []
    for pid in filter(str.isdigit, _listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                sid = int(f.read().rsplit(")", 1)[1].split()[4])  # field 6: the session
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                line = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if sid == session and int(pid) != session and b"npnet" in line and b"train" in line:
            found.append(int(pid))
    return found


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
