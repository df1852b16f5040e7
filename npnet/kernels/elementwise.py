"""Element-wise passes of ReLU and of a residual block's sum, on npnet's worker threads, each beside
its plain NumPy reference.

Shapes: any; every array of a call has the same shape and dtype (float32 or float64); the results are
C-ordered arrays of that shape.

Why not NumPy: its element-wise functions run on one thread, and ``dout * (out > 0)`` makes a bool
temporary and a second pass. Measured on a 2-core AMD EPYC (Zen 4), 2 threads, 2,000,000 float32
(one (128, 16, 32, 32) activation, in L3): ReLU forward 0.74 ms (``np.maximum``) -> 0.12 ms, backward
0.96 -> 0.24 ms, ``relu(y + s)`` 1.27 -> 0.19 ms, ``a += b`` 0.25 -> 0.09 ms.

Threads: each kernel is a serial worker of (t, T, ...) that ``_threads.run_workers`` runs on T
threads, like every other npnet kernel. Until 7 December these four were Numba ``prange`` loops, the
last ones: a ``prange`` starts Numba's own (OpenMP) thread pool, whose threads keep spinning for a
while after each loop and so took a core from the worker threads of the convolution that ran next
(ResNet-32's train step at 2 threads: 640-720 ms with them, 410-420 ms with ``OMP_WAIT_POLICY=PASSIVE``
or Numba's workqueue layer; see benchmarks/README.md). Worker t slices its share out of the flat
arrays first and loops over the slice from 0: written as ``range(lo, hi)`` over the whole array the
loop was not vectorised (the compiler could not prove the indices non-negative) and ran 2x slower.
Below ``_MIN_SHARE`` elements per worker a call runs on the calling thread alone (handing work to
another thread costs ~20-50 us).

Semantics as before, NumPy's: the forward keeps NaN (``np.maximum``); the backward is
``dout * (out > 0)``, so a NaN or inf gradient stays NaN also where the unit is off (as the BatchNorm
kernels' fused mask does, ``batchnorm.py``), to surface rather than hide it.
"""
import numpy as np

from ._jit import CACHE, njit
from ._threads import run_workers, workers_for
from .reference import reference_enabled

_MIN_SHARE = 1 << 16  # elements: a smaller share is not worth a thread hand-off


@njit(nogil=True, cache=CACHE)
def _share(t, T, n):
    """Worker t's part lo .. hi of n elements (contiguous; the parts of t = 0 .. T-1 cover all)."""
    return t * n // T, (t + 1) * n // T


@njit(nogil=True, cache=CACHE)
def _relu(t, T, x, out):
    lo, hi = _share(t, T, x.size)
    xs, o = x[lo:hi], out[lo:hi]
    for i in range(xs.size):
        v = xs[i]
        o[i] = 0 if v < 0 else v                            # NaN stays NaN, as np.maximum


@njit(nogil=True, cache=CACHE)
def _relu_grad(t, T, dout, out, dx):
    lo, hi = _share(t, T, dout.size)
    gs, o, ds = dout[lo:hi], out[lo:hi], dx[lo:hi]
    for i in range(gs.size):
        g = gs[i]
        ds[i] = g if o[i] > 0 else g * 0                    # NaN * 0 stays NaN, as dout * (out > 0)


@njit(nogil=True, cache=CACHE)
def _add_relu(t, T, y, s, out):
    lo, hi = _share(t, T, y.size)
    ys, ss, o = y[lo:hi], s[lo:hi], out[lo:hi]
    for i in range(ys.size):
        v = ys[i] + ss[i]
        o[i] = 0 if v < 0 else v


@njit(nogil=True, cache=CACHE)
def _add(t, T, a, b):
    lo, hi = _share(t, T, a.size)
    as_, bs = a[lo:hi], b[lo:hi]
    for i in range(as_.size):
        as_[i] += bs[i]


def _workers(n):
    """Workers for n elements: each takes at least ``_MIN_SHARE`` of them."""
    return workers_for(n // _MIN_SHARE)


def _flat(a, dtype):
    """a as a flat C-ordered array (a view where a is C-ordered already)."""
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1)


def relu_forward(x):
    """max(x, 0), a new array of x's shape and dtype."""
    if reference_enabled():
        return relu_forward_ref(x)
    out = np.empty(x.shape, dtype=x.dtype)
    run_workers(_relu, _workers(x.size), _flat(x, x.dtype), out.reshape(-1))
    return out


def relu_backward(dout, out):
    """The gradient through a ReLU whose output was ``out``: ``dout * (out > 0)`` (a new array)."""
    if reference_enabled():
        return relu_backward_ref(dout, out)
    dx = np.empty(dout.shape, dtype=dout.dtype)
    run_workers(_relu_grad, _workers(dout.size), _flat(dout, dout.dtype), _flat(out, dout.dtype), dx.reshape(-1))
    return dx


def add_relu(y, s, out=None):
    """max(y + s, 0) (a residual block's sum and ReLU in one pass), into ``out`` if given (it may be y)."""
    if reference_enabled():
        return add_relu_ref(y, s, out)
    out = np.empty(y.shape, dtype=y.dtype) if out is None else out
    if not out.flags.c_contiguous or out.shape != y.shape or out.dtype != y.dtype:
        raise ValueError(f"add_relu: out must be C-ordered {y.dtype} of shape {y.shape}")
    run_workers(_add_relu, _workers(y.size), _flat(y, y.dtype), _flat(s, y.dtype), out.reshape(-1))
    return out


def add_(a, b):
    """a += b in place (a C-ordered); returns a."""
    if reference_enabled():
        return add_ref(a, b)
    if not a.flags.c_contiguous:
        raise ValueError("add_: the array added into must be C-ordered")
    run_workers(_add, _workers(a.size), a.reshape(-1), _flat(b, a.dtype))
    return a


# ------------------------------------------------------------------------------------ NumPy references

def relu_forward_ref(x):
    return np.maximum(x, 0)


def relu_backward_ref(dout, out):
    return dout * (out > 0)


def add_relu_ref(y, s, out=None):
    return np.maximum(y + s, 0, out=out)


def add_ref(a, b):
    a += b
    return a
