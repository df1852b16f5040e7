"""What ``npnet.train.Trainer`` does differently on several ranks, in one place.

``replicate(model, train_loader)`` returns None in one process (the Trainer then runs
exactly as before) and otherwise a ``Replicas``: the model wrapped in ``DistributedDataParallel``
(parameters from rank 0, gradients summed), the loaders sharded, and the numbers of each step
summed over the ranks, so that the History, the progress bar and the checkpoints are those of the
one-process run. Rank 0 alone writes (checkpoints, progress, messages).
"""
from .parallel import DistributedDataParallel, broadcast_state
from .sharding import any_rank, shard, sum_counts
from .world import rank, world_size


def is_writer():
    """True on the rank that writes files and messages (rank 0; the only one in one process)."""
    return rank() == 0


def replicate(model, train_loader, overlap=False):
    """None when ``world_size() == 1``; else a ``Replicas`` (see the module docstring)."""
    if world_size() == 1:
        return None
    return Replicas(model, train_loader, overlap)


class Replicas:
    """The wrapped model (``model``, for ``train_step``) and the per-step reductions."""

    def __init__(self, model, train_loader, overlap=False):
        self.loaders = [shard(train_loader, training=True)]
        self.model = DistributedDataParallel(model, overlap=overlap)

    def step(self, loss, correct, n, stop):
        """``(loss, correct, n, stop)`` of the global batch from this rank's slice: the mean
        loss, right answers and images over every rank; ``stop`` if Ctrl-C reached any rank."""
        loss_sum, correct, n, stop = sum_counts(loss * n, correct, n, stop)
        return loss_sum / n, correct, n, stop

    @staticmethod
    def any(flag):
        return any_rank(flag)

    def close(self):
        """Leaves the model and the loaders as they were given (no hooks, not sharded)."""
        self.model.remove_hooks()
        for loader in self.loaders:
            loader.shard = None


def sharded_evaluation(model, loader):
    """None in one process or for a loader that is not an npnet DataLoader (every rank then
    evaluates all of it); else a ``ShardedEvaluation`` of ``model`` over ``loader``."""
    if world_size() == 1 or not hasattr(loader, "shard"):
        return None
    return ShardedEvaluation(model, loader)


class ShardedEvaluation:
    """An evaluation shared out over the ranks: every rank's buffers (BatchNorm's running
    statistics, which differ between ranks without sync_bn) become rank 0's, the ones its
    checkpoints hold; the loader is sharded until ``close()``; ``total`` sums the counts."""

    def __init__(self, model, loader):
        self.loader, self.previous = loader, loader.shard
        broadcast_state(model, buffers_only=True)
        shard(loader, training=False)

    @staticmethod
    def total(loss_sum, correct, seen):
        return sum_counts(loss_sum, correct, seen)[:3]

    def close(self):
        self.loader.shard = self.previous
