"""Data parallelism: every rank holds a replica of the model, computes the gradient of its part of
the global batch, and the gradients are summed over the ranks, so that every replica takes the
same optimizer step (PyTorch's DistributedDataParallel, Horovod).

The weighting that makes N processes follow one: the loss of a batch is the *mean* over its
images, so the global batch's gradient is ``sum_r (n_r / n) g_r``, with ``g_r`` the gradient of
rank r's mean loss over its ``n_r`` images and ``n`` the global batch. ``DistributedDataParallel``
multiplies the loss gradient by ``n_r / n`` before the backward (d global loss / d outputs) and
then only has to sum; uneven slices (batch 128 on 3 ranks, a short last batch) stay exact.
"""
import numpy as np

from ..nn import Module, is_grad_enabled
from ..nn.tuning import algorithms, set_algorithms
from .buckets import Reducer, make_buckets
from .world import comm, handshake, init, mpi, rank, world_size


def broadcast_state(model, root=0, buffers_only=False):
    """Copies rank ``root``'s parameters (unless ``buffers_only``) and buffers (BatchNorm's
    running statistics) to every rank, in place."""
    if world_size() == 1:
        return
    for p in () if buffers_only else model.parameters():
        comm().Bcast(p.data, root=root)
    for m in model.modules():
        for name in m._buffers:
            buf = getattr(m, name)
            if isinstance(buf, np.ndarray) and buf.ndim and buf.flags.writeable:
                comm().Bcast(buf, root=root)
            else:  # a counter kept as a NumPy scalar (num_batches_tracked): replaced
                m._set_buffer(name, np.asarray(comm().bcast(buf, root=root)).copy())


def broadcast_algorithms(model, root=0):
    """Every rank's Conv2d algorithms become rank ``root``'s (``npnet.tune`` runs on rank root
    alone), so that every replica computes the same function as one process with those choices."""
    if world_size() == 1:
        return
    choices = comm().bcast(algorithms(model) if rank() == root else None, root=root)
    set_algorithms(model, choices)


def allreduce_gradients(model, weight=None):
    """Blocking: every trainable parameter's ``grad`` becomes ``sum over ranks of weight * grad``
    (weight default ``1 / world_size()``: the mean of equal slices; give ``n_r / n`` for slices
    of different sizes, see the module docstring). Returns the model."""
    w = 1.0 / world_size() if weight is None else float(weight)
    params = [p for p in model.parameters() if p.requires_grad]
    if w != 1.0:
        for p in params:
            p.grad *= p.grad.dtype.type(w)
    if world_size() > 1:
        _, buckets = make_buckets(model, cap_bytes=float("inf"))
        Reducer(comm(), mpi(), buckets, overlap=False).finish()
    return model


class DistributedDataParallel(Module):
    """Wraps ``module`` so that ``train_step(ddp, ...)`` trains it on every rank as one process
    would on the global batch: ``forward`` runs the replica on this rank's slice, ``backward``
    weights the loss gradient by the slice's share and sums the gradients over the ranks.

    At construction every rank's parameters, buffers and convolution algorithms become rank 0's. ``overlap=True`` starts
    each bucket's non-blocking allreduce from backward hooks as soon as its gradients are final
    (``buckets.py``); False (default) reduces all of them after the backward with blocking
    allreduces. Measured on 2 ranks x 1 thread of a 2-core machine (benchmarks/README.md):
    ``overlap`` did not win, because MPI moves a message only inside its own calls and no core
    is free to do it meanwhile. bucket_cap_mb: the size of one bucket.

    In training (gradients enabled) ``forward`` also sums the slice sizes over the ranks (one
    tiny allreduce) and, when any rank's outputs hold NaN or inf, returns NaN on every rank: the
    step's finiteness check then stops every rank at the same step. State-dict keys start with
    ``module.`` (as PyTorch's); save ``ddp.module`` to keep the plain names.
    Attributes: ``comm_seconds`` (time spent in the gradient allreduces, summed), ``weight``
    (this rank's share of the last global batch).
    """

    def __init__(self, module, overlap=False, bucket_cap_mb=1.0):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected a Module, got {type(module).__name__}")
        init()
        self.module, self.overlap, self.weight = module, bool(overlap), 1.0
        handshake()
        broadcast_state(module)
        broadcast_algorithms(module)
        cap = bucket_cap_mb * 2 ** 20 if overlap else float("inf")
        points, buckets = make_buckets(module, cap)
        self._reducer = Reducer(comm(), mpi(), buckets, self.overlap)
        self._points, self._handles = points, []
        self.install_hooks()

    def install_hooks(self):
        """Puts the backward hooks that start the buckets' allreduces on the model (with
        ``overlap`` and more than one rank; done at construction)."""
        if self.overlap and world_size() > 1 and not self._handles:
            self._handles = [self.module[i].register_full_backward_hook(self._hook(i))
                             for i in self._points]

    def _hook(self, index):
        def ready(module, grad_input, grad_output):
            self._reducer.ready(index)
        return ready

    @property
    def comm_seconds(self):
        return self._reducer.seconds

    def forward(self, x):
        out = self.module(x)
        if is_grad_enabled() and world_size() > 1:
            local = np.array([len(x), 0 if np.isfinite(out).all() else 1], np.int64)
            comm().Allreduce(mpi().IN_PLACE, local, op=mpi().SUM)
            self.weight = len(x) / int(local[0])
            if local[1]:  # another rank's outputs are not finite: stop here too
                out = np.full_like(out, np.nan)
        return out

    def backward(self, dout, input_grad=True):
        if world_size() > 1 and self.weight != 1.0:
            dout = dout * dout.dtype.type(self.weight)  # d global mean loss / d local outputs
        self._reducer.begin()
        dx = self.module.backward(dout, input_grad)
        if world_size() > 1:
            self._reducer.finish()
        return dx

    def remove_hooks(self):
        """Takes the backward hooks off the wrapped model (the model is then as before)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def extra_repr(self):
        return f"world_size={world_size()}, overlap={self.overlap}"
