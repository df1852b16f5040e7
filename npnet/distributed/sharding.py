"""Sharding a DataLoader over the ranks and summing what each rank counted.

The config's ``train.batch_size`` stays the *global* batch: every rank draws the same permutation
from the seed and takes its own slice of each global batch (``DataLoader.shard``), so a config
means the same experiment on any number of processes, and the loader's saved position (in
global batches) resumes on any number of processes. Evaluation shards the same way (no
shuffling: each rank takes its part of each batch) and sums the counts.
"""
import numpy as np

from .world import comm, mpi, rank, world_size


class ShardError(ValueError):
    """A loader that cannot be shared out: some rank would get no image of a training batch."""


def shard(loader, training=True):
    """Makes the npnet ``DataLoader`` ``loader`` hand out this rank's part of every global batch
    (``loader.shard = (rank, world)``) and returns it. With ``training``, every batch must give
    every rank at least one image (a rank with none could not take part in the step):
    ``ShardError`` otherwise. TypeError for a loader that is not an npnet DataLoader."""
    if not hasattr(loader, "shard") or not hasattr(loader, "batch_size"):
        raise TypeError(f"npnet.distributed.shard: expected an npnet.data.DataLoader, got "
                        f"{type(loader).__name__}; give each rank its own data yourself instead")
    if training:
        check_shards(loader.dataset_size, loader.batch_size, loader.drop_last, world_size())
    loader.shard = (rank(), world_size()) if world_size() > 1 else None
    return loader


def check_shards(n, batch_size, drop_last, world):
    """``ShardError`` unless every training batch of ``n`` images (``batch_size`` each, the last
    one shorter unless ``drop_last``) holds at least ``world`` images."""
    if world == 1:
        return
    if batch_size < world:
        raise ShardError(f"train.batch_size {batch_size} is smaller than the {world} processes: "
                         f"every process needs at least one image of each batch; use a batch "
                         f"of at least {world} or fewer processes")
    last = n % batch_size
    if last and not drop_last and last < world:
        raise ShardError(f"the last batch of each epoch holds {last} image(s) ({n} images in "
                         f"batches of {batch_size}), fewer than the {world} processes; change "
                         "train.batch_size or the number of processes")


def sum_counts(loss_sum, correct, seen, stop=False):
    """``(loss_sum, correct, seen, stop)`` summed over the ranks in one allreduce: the values as
    they are in one process (``correct`` stays None when the targets are not class labels;
    ``stop`` is true if it is on any rank)."""
    if world_size() == 1:
        return loss_sum, correct, seen, bool(stop)
    v = np.array([loss_sum, correct or 0, seen, correct is None, bool(stop)], np.float64)
    comm().Allreduce(mpi().IN_PLACE, v, op=mpi().SUM)
    return float(v[0]), None if v[3] else int(round(v[1])), int(round(v[2])), bool(v[4])


def any_rank(flag):
    """True on every rank if ``flag`` is true on any rank (e.g. a Ctrl-C that reached one)."""
    if world_size() == 1:
        return bool(flag)
    v = np.array([1 if flag else 0], np.int64)
    comm().Allreduce(mpi().IN_PLACE, v, op=mpi().MAX)
    return bool(v[0])
