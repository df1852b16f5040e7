"""Data-parallel training over MPI (mpi4py): one run on many processes and machines.

Every process holds a replica of the model and takes its slice of each global batch; the
gradients are summed over the processes (weighted by the slices' sizes), and every replica
takes the same step, as with PyTorch's DistributedDataParallel. Under ``mpiexec -n 2 python
script.py``::

    import npnet.distributed as dist
    dist.init()                                    # MPI: rank(), world_size()
    loader = dist.shard(DataLoader(x, y, 128))     # this rank's part of each global batch of 128
    ddp = dist.DistributedDataParallel(model)      # rank 0's weights everywhere
    for xb, yb in loader:
        train_step(ddp, criterion, optimizer, xb, yb)

``npnet.train.Trainer`` does all of this by itself when ``world_size() > 1``, and
``npnet train CONFIG --nproc N`` starts the N processes. Modules: ``world`` (init, rank, how a
run ends), ``parallel`` (DistributedDataParallel, allreduce_gradients, broadcast_state),
``buckets`` (the gradient buckets and their overlap with the backward), ``sharding``,
``sync_batchnorm``, ``replicas`` (what the Trainer calls). mpi4py is imported by ``init()`` only.
"""
from .parallel import DistributedDataParallel, allreduce_gradients, broadcast_algorithms, broadcast_state
from .replicas import is_writer, replicate, sharded_evaluation
from .sharding import ShardError, any_rank, check_shards, shard, sum_counts
from .sync_batchnorm import SyncBatchNorm1d, SyncBatchNorm2d, convert_sync_batchnorm
from .world import (PeerFailed, abort, init, is_initialized, launched_size, local_size, rank,
                    world_size)

__all__ = ["init", "is_initialized", "rank", "world_size", "local_size", "launched_size",
           "abort", "PeerFailed", "DistributedDataParallel", "allreduce_gradients",
           "broadcast_state", "broadcast_algorithms", "shard", "check_shards", "ShardError", "sum_counts", "any_rank",
           "SyncBatchNorm1d", "SyncBatchNorm2d", "convert_sync_batchnorm", "replicate",
           "sharded_evaluation", "is_writer"]
