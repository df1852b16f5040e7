"""Synchronised BatchNorm: the statistics of the global batch, over every rank's slice.

A BatchNorm layer normalises with the mean and variance of its batch. Under data parallelism each
rank sees only its slice, so by default (as in PyTorch DDP) each rank normalises with its
slice's statistics, and the run is not the one-process run any more. ``SyncBatchNorm`` takes them
over the global batch instead:

* forward: each rank's (count, mean, biased variance) per channel are gathered and combined
  (Chan et al.'s parallel formula ``var = sum_r n_r (var_r + (mean_r - mean)^2) / n``), in rank
  order on every rank, so the running statistics come out bit-identical on every rank;
* backward: ``dx`` needs two per-channel sums over the batch (``sum dout`` and
  ``sum dout * (x - mean)``); they are summed over the ranks. The weight and bias gradients keep
  this rank's sums: the gradient allreduce adds those up like every other parameter's.

In one process (or before ``init()``) it is exactly a BatchNorm. Inference uses the running
statistics and communicates nothing.
"""
import numpy as np

from ..nn import BatchNorm1d, BatchNorm2d
from ..nn.normalization import _BatchNorm
from .world import comm, mpi, world_size


class _Sync:
    """The two overrides that make a ``_BatchNorm`` global (see the module docstring)."""

    def _batch_stats(self, x3):
        mean, var, n = super()._batch_stats(x3)  # this rank's, (C,) float64
        if world_size() == 1:
            return mean, var, n
        mine = np.concatenate([[float(n)], mean, var])  # (2C + 1,)
        every = np.empty((world_size(), mine.size), np.float64)  # (ranks, 2C + 1)
        comm().Allgather(mine, every)
        c = self.num_features
        counts, means, variances = every[:, :1], every[:, 1:c + 1], every[:, c + 1:]
        total = counts.sum()
        mean = (counts * means).sum(axis=0) / total
        var = (counts * (variances + (means - mean) ** 2)).sum(axis=0) / total
        return mean, var, int(round(total))

    def _global_grad_sums(self, sum_d, sum_dxc, m):
        if world_size() == 1:
            return sum_d, sum_dxc, m
        v = np.concatenate([sum_d, sum_dxc, [float(m)]])  # (2C + 1,)
        comm().Allreduce(mpi().IN_PLACE, v, op=mpi().SUM)
        c = self.num_features
        return v[:c], v[c:2 * c], int(round(v[-1]))


class SyncBatchNorm1d(_Sync, BatchNorm1d):
    """``BatchNorm1d`` with the statistics of the global batch. Shape: (N, C) or (N, C, L)."""


class SyncBatchNorm2d(_Sync, BatchNorm2d):
    """``BatchNorm2d`` with the statistics of the global batch. Shape: (N, C, H, W)."""


_SYNCED = {BatchNorm1d: SyncBatchNorm1d, BatchNorm2d: SyncBatchNorm2d}


def convert_sync_batchnorm(model):
    """Turns every ``BatchNorm1d`` / ``BatchNorm2d`` of ``model`` into its synchronised kind, in
    place, and returns the model (PyTorch's ``SyncBatchNorm.convert_sync_batchnorm``).

    The layers keep their identity, parameters, buffers and state-dict names; only their class
    changes, so whatever holds a layer (a hook's closure, a user's reference) keeps holding the
    synchronised one. A subclass of BatchNorm of your own is refused (TypeError): its
    code would be skipped."""
    for m in model.modules():
        if isinstance(m, _Sync) or not isinstance(m, _BatchNorm):
            continue
        if type(m) not in _SYNCED:
            raise TypeError(f"convert_sync_batchnorm: {type(m).__name__} is not BatchNorm1d or "
                            "BatchNorm2d; give it its own synchronised statistics")
        m.__class__ = _SYNCED[type(m)]
    return model
