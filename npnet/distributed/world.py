"""The MPI world of a data-parallel run: ``init``, ``rank``, ``world_size`` and how a run ends.

mpi4py is imported by ``init()`` only: ``import npnet.distributed`` imports no MPI, and before
``init()`` (or without MPI) the world is one process, rank 0. Every rank runs the same program;
they meet in collectives (allreduce, broadcast), so a rank that stops early would leave the
others waiting for ever. Two rules keep that from happening:

* **Before training** (nothing collective has run yet) a rank that fails says so in the run's
  first collective, ``handshake``: every rank learns which ranks failed, the lowest failing rank
  prints the one message and every rank exits with its code (``PeerFailed`` on the others).
* **During training** a rank that fails prints its message and ends the job: ``MPI_Abort`` (or,
  under ``npnet train --nproc``, whose launcher ends every rank when one exits, a plain exit
  without MPI's own abort banner). ``init()`` makes an uncaught exception do the same in a
  user's own script.
"""
import os
import sys

INSTALL_HINT = ("mpi4py is not installed; install the MPI extra: pip install -e \".[mpi]\" "
                "(or pip install mpi4py mpich)")
# environment variables by which MPI launchers tell a process how many they started:
# MPICH / Intel MPI (hydra, also Slurm's PMI2), Open MPI, Slurm's srun
LAUNCHER_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")
LAUNCHED_BY_NPNET = "NPNET_LAUNCHER"  # set by ``npnet train --nproc`` for its ranks

_world = {"comm": None, "MPI": None, "started": False}


class PeerFailed(SystemExit):
    """Another rank failed before training started and printed the message; this rank exits
    with the same code, silently (a ``SystemExit``: no traceback)."""


def launched_size():
    """How many processes the MPI launcher started, from its environment (1 outside one)."""
    for var in LAUNCHER_VARS:
        try:
            n = int(os.environ.get(var, "1"))
        except ValueError:
            continue
        if n > 1:
            return n
    return 1


def init(abort_on_error=True):
    """Starts MPI (mpi4py's ``COMM_WORLD``) once; returns the communicator.

    abort_on_error: with more than one rank, an uncaught exception prints its traceback and
    ends every rank (``MPI_Abort``) instead of leaving the others waiting in a collective.
    Raises ImportError saying how to install mpi4py when it is missing.
    """
    if _world["comm"] is not None:
        return _world["comm"]
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    _world.update(comm=MPI.COMM_WORLD, MPI=MPI)
    if abort_on_error and MPI.COMM_WORLD.size > 1:
        previous = sys.excepthook

        def abort_hook(kind, value, tb):
            previous(kind, value, tb)
            abort(1)
        sys.excepthook = abort_hook
    return _world["comm"]


def is_initialized():
    return _world["comm"] is not None


def comm():
    """The communicator of ``init()``; RuntimeError before it."""
    if _world["comm"] is None:
        raise RuntimeError("npnet.distributed: call npnet.distributed.init() first")
    return _world["comm"]


def mpi():
    """The ``mpi4py.MPI`` module (after ``init()``)."""
    comm()
    return _world["MPI"]


def rank():
    """This process's rank, 0 before ``init()``."""
    return 0 if _world["comm"] is None else _world["comm"].rank


def world_size():
    """The number of processes, 1 before ``init()``."""
    return 1 if _world["comm"] is None else _world["comm"].size


def local_size():
    """Ranks on this machine (a collective: every rank calls it), 1 before ``init()``."""
    if world_size() == 1:
        return 1
    local = comm().Split_type(mpi().COMM_TYPE_SHARED)
    try:
        return local.size
    finally:
        local.Free()


def handshake():
    """The run's first collective: returns when every rank is ready; raises ``PeerFailed`` (with
    the failed rank's exit code) when another rank reported a failure with ``fail``."""
    if world_size() == 1 or _world["started"]:
        return
    failures = [s for s in comm().allgather(None) if s is not None]
    if failures:
        raise PeerFailed(failures[0][1])
    _world["started"] = True


def fail(code, message, quiet=False):
    """Ends this rank after an error: prints ``message`` and exits with ``code`` so that every
    rank ends. Before ``handshake`` completed, the ranks agree on one message (the lowest failing
    rank's; ``rank R:`` in front unless every rank failed alike); afterwards it aborts the job.
    quiet: print nothing unless this is rank 0 (an error every rank meets alike, e.g. Ctrl-C)."""
    if world_size() == 1:
        print(message, file=sys.stderr, flush=True)
        sys.exit(code)
    if not _world["started"]:
        failures = [(r, s) for r, s in enumerate(comm().allgather((code, message))) if s]
        first, (code, message) = failures[0]
        alike = len(failures) == world_size() and len({s for _, s in failures}) == 1
        if first == rank():
            print(message if alike else _with_rank(message, first), file=sys.stderr, flush=True)
        sys.exit(code)
    if not quiet or rank() == 0:
        print(_with_rank(message, rank()), file=sys.stderr, flush=True)
    abort(code)


def _with_rank(message, r):
    head, sep, tail = message.partition(": ")  # "npnet train: ..." -> "npnet train: rank 1: ..."
    lead = "\n" if head.startswith("\n") else ""
    return f"{lead}{head.strip()}: rank {r}: {tail}" if sep else f"rank {r}: {message}"


def abort(code=1):
    """Ends every rank of the job with exit status ``code``; does not return."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.environ.get(LAUNCHED_BY_NPNET) != "1" and _world["comm"] is not None:
        _world["comm"].Abort(code)  # may return before the launcher kills this process
    os._exit(code)
