"""``npnet train`` as one rank of an MPI job (``npnet train --nproc N``, ``mpiexec -n N npnet
train``, ``srun npnet train``): joining the world, and the part of the ranks other than 0.

Rank 0 runs ``runner.run_experiment`` as one process would (its folder, messages, checkpoints,
report); the Trainer makes its training data-parallel. Every other rank builds the same data,
model and Trainer and trains its replica in step with rank 0 (``run_replica``), writing nothing.
"""
import os

from .experiment import RunError, make_trainer, prepare_data
from .launch import PROGRESS_VAR
from .runner import load_resume
from .threads import THREAD_VARS, available_cores, pin_threads


def join_world():
    """Under an MPI launcher with more than one process: starts MPI, shares the machine's cores
    among its ranks (unless the environment sets the threads) and returns the rank; None outside
    one (mpi4py is then not imported). RunError when mpi4py is missing."""
    from .. import distributed
    if distributed.launched_size() == 1:
        return None
    try:
        distributed.init(abort_on_error=False)  # the CLI ends failed ranks itself (world.fail)
    except ImportError as e:
        raise RunError(str(e)) from None
    local = distributed.local_size()  # every rank, before anything can fail
    if not any(var in os.environ for var in THREAD_VARS):
        pin_threads(max(1, available_cores() // local))
    return distributed.rank()


def rank_progress(progress):
    """The progress setting of rank 0: the bar when the launcher's terminal shows one."""
    if progress is None and os.environ.get(PROGRESS_VAR) == "bar":
        return True
    return progress


def run_replica(config, resume=None):
    """One rank other than 0: the data, model and Trainer of ``config`` (as rank 0 builds them),
    trained in step with rank 0; nothing is written or printed. Returns the exit status rank 0
    will return too: 0, 1 (diverged: every rank stops at the same step) or 130 (Ctrl-C)."""
    from ..train import NonFiniteLossError
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
    return 130 if getattr(trainer.history, "interrupted", False) else 0
