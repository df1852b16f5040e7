"""LayerNorm over the last axis, forward and backward, on npnet's worker threads, each beside its plain
NumPy reference (``layernorm_forward_ref``, ``layernorm_backward_ref``: the readable code).

Shapes: x (R, D), one sample's normalised features a row (the layer flattens its leading dims and
its normalised dims); weight, bias (D,) or None; mean, rstd (R,) in x's dtype. Results are
C-ordered in x's dtype.

Why a kernel: the NumPy layer made ~6 passes forward (mean, centre, square, mean, scale, affine) and
~9 backward, each with an (R, D) temporary, on one thread. Each row here is read and written while it
is in L1, its statistics summed in float64. Measured on a 2-core AMD EPYC (Zen 4), 8 December, machine
~2/3 busy with other work, (8192, 128) float32 (one LayerNorm of the issue-34 Transformer), twin ->
kernel: forward 2.9 -> 0.40 ms, backward 5.8 -> 0.71 ms at 1 thread; at 2 threads 0.44 and 0.80 ms
(no gain on that loaded machine: rows split over the workers from 512 rows; unmeasured idle).

Backward: with xhat = (x - mean) * rstd and g = dout * weight,
``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))`` (the two means take out the directions that
centring and scaling remove), ``dweight = sum_rows(dout * xhat)``, ``dbias = sum_rows(dout)``; each
worker sums its rows into its own float64 row of partial sums, added up at the end.
"""
import numpy as np

from ._jit import CACHE, njit
from ._threads import run_workers, workers_for
from .reference import reference_enabled

_FAST = {"reassoc", "contract", "nsz", "arcp"}   # no 'nnan' / 'ninf': NaN and inf reach the output
# the backward without 'contract': fused into an FMA, g * w - mean(g) is not 0 where it should be (D = 1,
# or a constant row), and rstd (up to 1 / sqrt(eps)) multiplies that rounding by 300
_FAST_GRAD = {"reassoc", "nsz", "arcp"}
_MIN_ROWS = 256                                  # rows per worker below which one thread does it all


@njit(nogil=True, cache=CACHE, fastmath=_FAST)
def _forward_rows(t, T, x, w, b, affine, has_bias, eps, y, mean, rstd):
    # y = (x - mean) * rstd (* w + b) row by row of x (R, D); worker t of T: rows t R / T .. (t + 1) R / T
    R, D = x.shape
    for r in range(t * R // T, (t + 1) * R // T):
        xr, yr = x[r], y[r]
        s = 0.0
        for j in range(D):
            s += xr[j]
        mu = s / D
        ss = 0.0
        for j in range(D):
            d = xr[j] - mu
            ss += d * d
        inv = 1 / np.sqrt(ss / D + eps)
        m, a = xr.dtype.type(mu), xr.dtype.type(inv)
        mean[r], rstd[r] = m, a
        if affine and has_bias:
            for j in range(D):
                yr[j] = (xr[j] - m) * a * w[j] + b[j]
        elif affine:
            for j in range(D):
                yr[j] = (xr[j] - m) * a * w[j]
        else:
            for j in range(D):
                yr[j] = (xr[j] - m) * a


@njit(nogil=True, cache=CACHE, fastmath=_FAST_GRAD)
def _backward_rows(t, T, dout, x, mean, rstd, w, affine, need_dx, dx, dw, db):
    # dx as in the module docstring, row by row; dw[t], db[t] (float64) += this worker's rows' sums
    R, D = x.shape
    dwt, dbt = dw[t], db[t]
    for r in range(t * R // T, (t + 1) * R // T):
        g, xr, m, a = dout[r], x[r], mean[r], rstd[r]
        sg = 0.0
        sgx = 0.0
        for j in range(D):
            xh = (xr[j] - m) * a
            gj = g[j] * w[j] if affine else g[j]
            sg += gj
            sgx += gj * xh
            dwt[j] += g[j] * xh
            dbt[j] += g[j]
        if need_dx:
            mg, mgx = xr.dtype.type(sg / D), xr.dtype.type(sgx / D)
            o = dx[r]
            for j in range(D):
                xh = (xr[j] - m) * a
                gj = g[j] * w[j] if affine else g[j]
                o[j] = a * (gj - mg - xh * mgx)


def _workers(R):
    return workers_for(R // _MIN_ROWS)


def layernorm_forward(x, weight, bias, eps):
    """``(y, mean, rstd)``: y = (x - mean) * rstd * weight + bias over the rows of x (R, D), with
    rstd = 1 / sqrt(var + eps) (biased variance); weight / bias None: left out."""
    if reference_enabled() or x.dtype not in (np.float32, np.float64):   # float16: the twin
        return layernorm_forward_ref(x, weight, bias, eps)
    R, D = x.shape
    dt = x.dtype
    x = np.ascontiguousarray(x)
    y, mean, rstd = np.empty((R, D), dt), np.empty(R, dt), np.empty(R, dt)
    w = np.ones(D, dt) if weight is None else np.ascontiguousarray(weight, dtype=dt).reshape(D)
    b = np.zeros(D, dt) if bias is None else np.ascontiguousarray(bias, dtype=dt).reshape(D)
    run_workers(_forward_rows, _workers(R), x, w, b, weight is not None, bias is not None, float(eps), y, mean, rstd)
    return y, mean, rstd


def layernorm_backward(dout, x, mean, rstd, weight, need_dx=True):
    """``(dx or None, dweight, dbias)`` for the forward's x (R, D), mean, rstd and weight (or None):
    dweight / dbias (D,) in x's dtype (the layer adds them to its gradients, or ignores them)."""
    if reference_enabled() or x.dtype not in (np.float32, np.float64):
        return layernorm_backward_ref(dout, x, mean, rstd, weight, need_dx)
    R, D = x.shape
    dt = x.dtype
    T = _workers(R)
    dx = np.empty((R, D), dt) if need_dx else np.empty((1, 1), dt)
    dw, db = np.zeros((T, D)), np.zeros((T, D))
    w = np.ones(D, dt) if weight is None else np.ascontiguousarray(weight, dtype=dt).reshape(D)
    run_workers(_backward_rows, T, np.ascontiguousarray(dout, dtype=dt), np.ascontiguousarray(x), mean, rstd, w,
                weight is not None, bool(need_dx), dx, dw, db)
    return (dx if need_dx else None), dw.sum(axis=0).astype(dt), db.sum(axis=0).astype(dt)


# ------------------------------------------------------------------------------------ NumPy references

def layernorm_forward_ref(x, weight, bias, eps):
    mean = x.mean(axis=1)
    xc = x - mean[:, None]
    rstd = 1 / np.sqrt((xc * xc).mean(axis=1) + x.dtype.type(eps))
    y = xc * rstd[:, None]  # xhat (R, D)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y, mean, rstd


def layernorm_backward_ref(dout, x, mean, rstd, weight, need_dx=True):
    xhat = (x - mean[:, None]) * rstd[:, None]
    dweight, dbias = (dout * xhat).sum(axis=0), dout.sum(axis=0)
    if not need_dx:
        return None, dweight, dbias
    g = dout * weight if weight is not None else dout  # d loss / d xhat
    dx = rstd[:, None] * (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True))
    return dx, dweight, dbias
