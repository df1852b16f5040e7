"""``npnet train`` as one rank of an MPI job (``npnet train --nproc N``, ``mpiexec -n N npnet
train``, ``srun npnet train``): joining the world, and the part of the ranks other than 0.

Rank 0 runs ``runner.run_experiment`` as one process would (its folder, messages, checkpoints,
report); the Trainer makes its training data-parallel. Every other rank builds the same data,
model and Trainer and trains its replica in step with rank 0 (``run_replica``), writing nothing.
"""
import os
import sys

from .experiment import RunError, make_trainer, prepare_data
from .launch import PROGRESS_VAR
from .runner import load_resume
from .threads import THREAD_VARS, available_cores, pin_threads


WORLD = {"world_size": 1, "launcher": None, "mpi": None, "threads": None}  # this run's world


def join_world():
    """Under an MPI launcher with more than one process: starts MPI, checks that MPI sees the
    processes the launcher started (else one message and exit status 2, from the launcher's
    task 0), shares the machine's cores among its ranks (unless the environment sets the threads),
    records the world in ``WORLD`` and returns the rank; None outside one (mpi4py is then not
    imported). RunError when mpi4py is missing."""
    from .. import distributed
    from ..distributed import world
    if distributed.launched_size() == 1:
        return None
    where = world.launcher()
    try:
        distributed.init(abort_on_error=False)  # the CLI ends failed ranks itself (world.fail)
    except ImportError as e:
        raise RunError(str(e)) from None
    mismatch = world.world_mismatch()
    if mismatch is not None:  # every task is a world of one: only the launcher's first speaks
        if world.launched_rank() == 0:
            print(f"npnet train: {mismatch}", file=sys.stderr, flush=True)
        sys.exit(2)
    local = distributed.local_size()  # every rank, before anything can fail
    if not any(var in os.environ for var in THREAD_VARS):
        pin_threads(max(1, available_cores() // local))
    WORLD.update(world_size=distributed.world_size(), launcher=where, mpi=world.library_version(),
                 threads=world.comm().allgather(_threads()))
    return distributed.rank()


def _threads():
    """This process's Numba threads (the pool the kernels run on)."""
    import numba
    return int(numba.get_num_threads())


def world_line():
    """The line rank 0 prints at the start of a run on several processes (None on one)."""
    if WORLD["world_size"] == 1:
        return None
    return (f"world: {WORLD['world_size']} processes, launcher {WORLD['launcher'] or 'unknown'}, "
            f"{WORLD['mpi']}; threads per rank: {', '.join(map(str, WORLD['threads']))}")


def world_record():
    """What metrics.json says of the world (one process: world_size 1, its threads)."""
    return dict(WORLD, threads=WORLD["threads"] or [_threads()])


def rank_progress(progress):
    """The progress setting of rank 0: the bar when the launcher's terminal shows one."""
    if progress is None and os.environ.get(PROGRESS_VAR) == "bar":
        return True
    return progress


def run_replica(config, resume=None):
    """One rank other than 0: the data, model and Trainer of ``config`` (as rank 0 builds them),
    trained in step with rank 0; nothing is written or printed. Returns the exit status rank 0
    will return too: 0, 1 (diverged: every rank stops at the same step) or 130 (Ctrl-C)."""
    from .. import distributed
    from ..train import NonFiniteLossError
    from ..train.progress import signals_raise
    distributed.world.set_timeout(config["distributed"]["timeout"])
    with signals_raise():
        return _replica(config, resume, NonFiniteLossError)


def _replica(config, resume, NonFiniteLossError):
    d = prepare_data(config)
    run = os.path.dirname(os.path.abspath(resume)) if resume else os.devnull  # never written
    quiet = dict(config, log=dict(config["log"], layer_stats=0))  # statistics: rank 0's
    trainer, loaders, _ = make_trainer(quiet, run, (d.x_train, d.y_train, d.x_val, d.y_val), len(d.classes),
                                       progress=False, resuming=resume is not None)
    if resume is not None:
        load_resume(trainer, loaders, resume)  # as rank 0: one read, fit() continues from it
    try:
        trainer.fit(*loaders, epochs=config["train"]["epochs"])
    except NonFiniteLossError:
        return 1
    if getattr(trainer.history, "interrupted", False):
        return 143 if getattr(trainer, "stopped_by", None) == "SIGTERM" else 130
    return 0
