"""Element-wise passes of ReLU and of a residual block's sum, on Numba's thread pool, each beside its
plain NumPy reference.

Shapes: any; every array of a call has the same shape and dtype (float32 or float64); the results are
C-ordered arrays of that shape.

Why not NumPy: its element-wise functions run on one thread, and ``dout * (out > 0)`` makes a bool
temporary and a second pass. Measured on a 2-core AMD EPYC (Zen 4), 2 threads, 2,000,000 float32
(one (128, 16, 32, 32) activation, in L3): ReLU forward 0.74 ms (``np.maximum``) -> 0.12 ms, backward
0.96 -> 0.24 ms, ``relu(y + s)`` 1.27 -> 0.19 ms, ``a += b`` 0.25 -> 0.09 ms. Each loop is a
``prange`` over the flat array: the earlier attempt that gave each thread a block of indices computed
at run time (``range(lo, hi)``) was not vectorised (the compiler could not prove the indices
non-negative) and ran 2x slower than NumPy, which is why ReLU had stayed in NumPy until 6 December.

Semantics as before, NumPy's: the forward keeps NaN (``np.maximum``); the backward is
``dout * (out > 0)``, so a NaN or inf gradient stays NaN also where the unit is off (as the BatchNorm
kernels' fused mask does, ``batchnorm.py``), to surface rather than hide it.
"""
import numpy as np
from numba import prange

from ._jit import CACHE, njit
from .reference import reference_enabled


@njit(parallel=True, cache=CACHE)
def _relu(x, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = 0 if v < 0 else v                          # NaN stays NaN, as np.maximum


@njit(parallel=True, cache=CACHE)
def _relu_grad(dout, out, dx):
    for i in prange(dout.size):
        g = dout[i]
        dx[i] = g if out[i] > 0 else g * 0                  # NaN * 0 stays NaN, as dout * (out > 0)


@njit(parallel=True, cache=CACHE)
def _add_relu(y, s, out):
    for i in prange(y.size):
        v = y[i] + s[i]
        out[i] = 0 if v < 0 else v


@njit(parallel=True, cache=CACHE)
def _add(a, b):
    for i in prange(a.size):
        a[i] += b[i]


def _flat(a, dtype):
    """a as a flat C-ordered array (a view where a is C-ordered already)."""
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1)


def relu_forward(x):
    """max(x, 0), a new array of x's shape and dtype."""
    if reference_enabled():
        return relu_forward_ref(x)
    out = np.empty(x.shape, dtype=x.dtype)
    _relu(_flat(x, x.dtype), out.reshape(-1))
    return out


def relu_backward(dout, out):
    """The gradient through a ReLU whose output was ``out``: ``dout * (out > 0)`` (a new array)."""
    if reference_enabled():
        return relu_backward_ref(dout, out)
    dx = np.empty(dout.shape, dtype=dout.dtype)
    _relu_grad(_flat(dout, dout.dtype), _flat(out, dout.dtype), dx.reshape(-1))
    return dx


def add_relu(y, s, out=None):
    """max(y + s, 0) (a residual block's sum and ReLU in one pass), into ``out`` if given (it may be y)."""
    if reference_enabled():
        return add_relu_ref(y, s, out)
    out = np.empty(y.shape, dtype=y.dtype) if out is None else out
    if not out.flags.c_contiguous or out.shape != y.shape or out.dtype != y.dtype:
        raise ValueError(f"add_relu: out must be C-ordered {y.dtype} of shape {y.shape}")
    _add_relu(_flat(y, y.dtype), _flat(s, y.dtype), out.reshape(-1))
    return out


def add_(a, b):
    """a += b in place (a C-ordered); returns a."""
    if reference_enabled():
        return add_ref(a, b)
    if not a.flags.c_contiguous:
        raise ValueError("add_: the array added into must be C-ordered")
    _add(a.reshape(-1), _flat(b, a.dtype))
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
