"""``npnet train CONFIG --nproc N``: one run on N local processes, started through the MPI launcher.

The command checks everything it can before it starts anything (the config, ``--nproc``, the
batch against the number of processes, mpi4py and ``mpiexec`` being there): a problem is one
message and exit status 2, with no run folder. Then it runs
``mpiexec -n N -host localhost python -m npnet train ...`` with the same arguments, each rank
limited to ``cores // N`` Numba and BLAS threads unless the environment sets them
(``OMP_NUM_THREADS``, ``NUMBA_NUM_THREADS``, ...), and returns mpiexec's exit status. The ranks
find their world from MPI (``npnet.run.ranks``), exactly as under ``mpiexec`` or ``srun`` used
directly. Ctrl-C is passed on to mpiexec, which passes it to every rank: the run stops after the
current step with a resumable checkpoint and exit status 130 (a second Ctrl-C aborts at once).
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
    if find_mpiexec() is None:
        raise RunError(f"--nproc {nproc} needs an MPI launcher (mpiexec), found none next to "
                       f"{sys.executable} or on PATH; pip install mpich (or your system's MPI)")
    batch = config["train"]["batch_size"]
    if batch is not None and batch < nproc:
        raise RunError(f"--nproc {nproc}: train.batch_size {batch} is smaller than the number "
                       f"of processes; every process needs at least one image of each batch")


def _has_mpi4py():
    return importlib.util.find_spec("mpi4py") is not None  # found, not imported


def find_mpiexec():
    """The ``mpiexec`` of this Python's environment (the mpich wheel puts it next to python),
    else the first on PATH, else None."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.access(here, os.X_OK) else shutil.which("mpiexec")


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


def launch_command(mpiexec, nproc, argv):
    """``mpiexec -n N -host localhost python -m npnet train ARGV`` (Open MPI spells the slots)."""
    try:
        version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        version = ""
    host = ["--host", f"localhost:{nproc}"] if "Open MPI" in version else ["-host", "localhost"]
    return [mpiexec, "-n", str(nproc), *host, sys.executable, "-m", "npnet", "train", *argv]


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
    """Runs the ranks and waits for them; returns the exit status (130 after a Ctrl-C)."""
    cmd = launch_command(find_mpiexec(), args.nproc, rank_argv(args))
    # a session of its own: the terminal's Ctrl-C reaches only this process, which passes one
    # SIGINT on per Ctrl-C (mpiexec reads a second one as "abort at once")
    proc = subprocess.Popen(cmd, env=rank_env(args.nproc), start_new_session=True)
    interrupted = []

    def forward(signum, frame):
        interrupted.append(signum)
        try:
            proc.send_signal(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)
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
    return 130 if interrupted and code != 0 else code


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
