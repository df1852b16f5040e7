"""Gradient buckets: the parameters' gradients packed into a few flat arrays, each summed over the
ranks by one allreduce.

Buckets follow the backward pass (the last layer's parameters first), so that with ``overlap``
a bucket's allreduce can start as soon as the layers that own its gradients have finished their
backward, while the layers in front of them still compute (PyTorch DDP's design). Readiness comes
from backward hooks on the children of the model's top-level ``Sequential``: once child ``i``'s
backward has run, the gradients of children ``i, i+1, ...`` are final (a fused module of
``npnet.fuse`` is one child: its own hooks do not change how it runs). Whatever is not ready before
the end of the backward (the first layers, a model that is not a ``Sequential``) is reduced at the
end.
"""
import time

import numpy as np

from ..nn import Sequential
from .world import wait


class Bucket:
    """Parameters of one dtype whose gradients travel in one flat array; ``ready_at`` is the index
    of the top-level child whose backward hook makes them all final (-1: only at the end)."""

    def __init__(self, params, ready_at):
        self.params, self.ready_at = params, ready_at
        self.flat = np.zeros(sum(p.grad.size for p in params), dtype=params[0].grad.dtype)
        self.request = None

    def pack(self):
        i = 0
        for p in self.params:
            self.flat[i:i + p.grad.size] = p.grad.ravel()
            i += p.grad.size

    def unpack(self):
        i = 0
        for p in self.params:
            p.grad[...] = self.flat[i:i + p.grad.size].reshape(p.grad.shape)
            i += p.grad.size


def hook_points(model):
    """``(points, ready)``: the top-level children that get a backward hook, by index, and for
    every trainable parameter (by id) the index of the hook after which its gradient is final
    (-1: none, the end of the backward)."""
    mods = list(model) if isinstance(model, Sequential) else []
    points = list(range(len(mods)))
    ready = {}
    for j, child in enumerate(mods):
        at = max((i for i in points if i <= j), default=-1)
        for p in child.parameters():
            ready[id(p)] = min(ready.get(id(p), at), at)
    return points, ready


def make_buckets(model, cap_bytes):
    """The trainable parameters in backward order (last layer first), cut into buckets of at most
    ``cap_bytes`` (a larger parameter gets a bucket of its own), one dtype per bucket."""
    points, ready = hook_points(model)
    params = [p for p in model.parameters() if p.requires_grad][::-1]
    buckets, current, size = [], [], 0
    for p in params:
        if current and (size + p.grad.nbytes > cap_bytes or p.grad.dtype != current[0].grad.dtype):
            buckets.append(current)
            current, size = [], 0
        current.append(p)
        size += p.grad.nbytes
    if current:
        buckets.append(current)
    return points, [Bucket(b, min(ready.get(id(p), -1) for p in b)) for b in buckets]


class Reducer:
    """Sums the buckets' gradients over the ranks during (``overlap``) or after the backward.

    ``seconds`` adds up the time spent inside MPI calls (starting, testing, waiting), the
    communication this rank was held up by.
    """

    def __init__(self, comm, mpi, buckets, overlap):
        self.comm, self.mpi, self.buckets, self.overlap = comm, mpi, buckets, overlap
        self.started, self.seconds = 0, 0.0

    def begin(self):
        self.started = 0

    def ready(self, index):
        """The backward hook of top-level child ``index`` has run: start every bucket that is
        final now, and let MPI progress the ones in flight."""
        if not self.overlap:
            return
        t = time.perf_counter()
        while self.started < len(self.buckets) and self.buckets[self.started].ready_at >= index:
            self._start(self.buckets[self.started])
        pending = [b.request for b in self.buckets[:self.started] if b.request is not None]
        if pending:
            self.mpi.Request.Testall(pending)  # MPI moves messages only inside its calls
        self.seconds += time.perf_counter() - t

    def finish(self):
        """After the backward: reduce what is left and wait for everything; grads are sums."""
        t = time.perf_counter()
        if not self.overlap:
            for b in self.buckets:
                b.pack()
                self.comm.Allreduce(self.mpi.IN_PLACE, b.flat, op=self.mpi.SUM)
                b.unpack()
        else:
            while self.started < len(self.buckets):
                self._start(self.buckets[self.started])
            for b in self.buckets:
                wait(b.request, "the gradient allreduce")  # with the run's deadline
                b.request = None
                b.unpack()
        self.seconds += time.perf_counter() - t

    def _start(self, bucket):
        bucket.pack()
        bucket.request = self.comm.Iallreduce(self.mpi.IN_PLACE, bucket.flat, op=self.mpi.SUM)
        self.started += 1
