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
import time

import numpy as np

INSTALL_HINT = ("mpi4py is not installed; install the MPI extra: pip install -e \".[mpi]\" "
                "(or pip install mpi4py mpich)")
# environment variables by which MPI launchers tell a process how many they started:
# MPICH / Intel MPI (hydra, also Slurm's PMI2), Open MPI, Slurm's srun
LAUNCHER_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")
RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID")  # the same launchers' rank
LAUNCHED_BY_NPNET = "NPNET_LAUNCHER"  # set by ``npnet train --nproc`` for its ranks
DEFAULT_TIMEOUT = 300.0  # seconds; see set_timeout
SILENT_EXIT = 1  # the exit status of a rank that stops because another went silent
_ALIVE_TAG = 7331  # the point-to-point messages by which the survivors of a dead rank meet

_world = {"comm": None, "MPI": None, "started": False, "timeout": DEFAULT_TIMEOUT}


class PeerFailed(SystemExit):
    """Another rank failed before training started and printed the message; this rank exits
    with the same code, silently (a ``SystemExit`` whose ``code`` is the exit status)."""


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


def launched_rank():
    """This process's rank as the launcher's environment says (0 outside one)."""
    for var in RANK_VARS:
        try:
            return int(os.environ[var])
        except (KeyError, ValueError):
            continue
    return 0


def launcher():
    """Which launcher started this process, from its environment: ``npnet train --nproc``,
    ``srun``, ``mpirun (Open MPI)``, ``mpiexec (hydra)``, or None (no launcher)."""
    if os.environ.get(LAUNCHED_BY_NPNET) == "1":
        return "npnet train --nproc"
    if "SLURM_STEP_ID" in os.environ and os.environ.get("SLURM_STEP_NUM_TASKS", "1") != "1":
        return "srun"
    if "OMPI_COMM_WORLD_SIZE" in os.environ:
        return "mpirun (Open MPI)"
    if "PMI_SIZE" in os.environ:
        return "mpiexec (hydra)"
    return None


def world_mismatch():
    """The message when the launcher started several processes but MPI sees a world of one
    (each would train alone: an mpi4py built for another MPI, or ``srun`` without the PMI its
    MPI speaks); None when the two agree. Call after ``init()``."""
    started = launched_size()
    if started == 1 or world_size() > 1:
        return None
    via = next(f"{v}={os.environ[v]}" for v in LAUNCHER_VARS if os.environ.get(v, "1") != "1")
    return (f"the launcher started {started} processes ({via}) but MPI sees a world of 1 in "
            f"each, so each would train alone; nothing was run. Under Slurm, start the ranks "
            f"with the PMI of the MPI that mpi4py uses ({library_version()}): srun --mpi=pmi2 "
            f"(MPICH, the mpich wheel) or srun --mpi=pmix (Open MPI); srun --mpi=list shows "
            f"what this Slurm offers. Under mpiexec / mpirun, use the launcher of that same MPI")


def library_version():
    """The first line of the MPI library's version string (after ``init()``), e.g.
    ``Open MPI v4.1.4, ...`` or ``MPICH Version: 4.2.0``."""
    if _world["MPI"] is None:
        return "MPI not started"
    first = _world["MPI"].Get_library_version().strip().splitlines()[0]
    return " ".join(first.split(", package:")[0].split()).rstrip(",")


def set_timeout(seconds):
    """The deadline of every collective once training started (``handshake`` done): a rank that
    waits longer than ``seconds`` for the others stops with a message naming the rank(s) that
    went silent (``wait``); None waits for ever."""
    _world["timeout"] = None if seconds is None else float(seconds)


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
    """The communicator of ``init()`` whose blocking collectives keep the deadline of
    ``set_timeout`` (``TimedComm``); RuntimeError before it."""
    if _world["comm"] is None:
        raise RuntimeError("npnet.distributed: call npnet.distributed.init() first")
    return TimedComm(_world["comm"])


class TimedComm:
    """``COMM_WORLD`` with ``Allreduce``, ``Allgather`` and ``Bcast`` made from their non-blocking
    forms and ``wait``: once training started, a collective that a rank never joins (killed,
    hung) ends the others after the deadline instead of leaving them waiting for ever. Every
    other attribute is the communicator's own."""

    def __init__(self, raw):
        self._raw = raw

    def __getattr__(self, name):
        return getattr(self._raw, name)

    def Allreduce(self, sendbuf, recvbuf, op=None):
        op = _world["MPI"].SUM if op is None else op
        if not _timed():
            return self._raw.Allreduce(sendbuf, recvbuf, op=op)
        wait(self._raw.Iallreduce(sendbuf, recvbuf, op=op), "an allreduce")

    def Allgather(self, sendbuf, recvbuf):
        if not _timed():
            return self._raw.Allgather(sendbuf, recvbuf)
        wait(self._raw.Iallgather(sendbuf, recvbuf), "an allgather")

    def Bcast(self, buf, root=0):
        if not _timed():
            return self._raw.Bcast(buf, root=root)
        wait(self._raw.Ibcast(buf, root=root), "a broadcast")


def _timed():
    return _world["started"] and _world["timeout"] is not None and world_size() > 1


def wait(request, what="a collective"):
    """Waits for the non-blocking MPI ``request`` (polled: MPI has no wait with a deadline). Once
    training started and past the deadline of ``set_timeout``, this rank finds out which ranks
    went silent and stops (``stop_silent``); it does not return then."""
    if not _timed():
        return request.Wait()
    end, pause = time.monotonic() + _world["timeout"], 0.0
    while not request.Test():
        if time.monotonic() > end:
            stop_silent(what)
        time.sleep(pause)  # short: a step waits here for every collective
        pause = min(1e-3, pause + 2e-5)


def silent_ranks(grace):
    """The ranks that do not answer within ``grace`` seconds. Every live rank is stuck in the
    same collective by now and asks the same: each sends every other rank a token and waits for
    theirs; the ranks whose token never comes are the dead or hung ones."""
    raw, me = _world["comm"], rank()
    others = [r for r in range(world_size()) if r != me]
    token = np.array([me], np.int64)
    sends = [raw.Isend(token, dest=r, tag=_ALIVE_TAG) for r in others]
    inbox = {r: np.zeros(1, np.int64) for r in others}
    recvs = {r: raw.Irecv(inbox[r], source=r, tag=_ALIVE_TAG) for r in others}
    end = time.monotonic() + grace
    while time.monotonic() < end and not all(req.Test() for req in recvs.values()):
        time.sleep(0.01)
    del sends  # never waited for: the process ends next
    return [r for r, req in recvs.items() if not req.Test()]


def stop_silent(what):
    """Ends this rank after a collective passed its deadline: one message naming the rank(s) that
    went silent, exit status ``SILENT_EXIT``, whatever the launcher does with the others."""
    timeout = _world["timeout"]
    silent = silent_ranks(grace=min(10.0, max(1.0, timeout / 4)))
    who = ("rank " + ", ".join(map(str, silent)) if len(silent) == 1 else
           "ranks " + ", ".join(map(str, silent))) if silent else "another rank"
    print(f"npnet train: rank {rank()}: {who} went silent: no answer in {what} for "
          f"{timeout:g} s (distributed.timeout); it died or hangs, so this rank stops. "
          f"Checkpoints already written are intact: resume from the run's last.npz",
          file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(SILENT_EXIT)  # not MPI_Abort: with a peer gone it may hang; each survivor ends itself


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
        raise PeerFailed(failures[0][0])  # (code, message): the message is the failed rank's
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
