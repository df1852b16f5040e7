"""Batch-normalisation kernels: per-channel statistics and per-channel affine maps, fused into one or
two passes over the activation. Numba kernels beside their plain NumPy references.

Shapes: the layer views its input as x (N, C, L) (L = H*W for BatchNorm2d, 1 or L for BatchNorm1d);
per-channel vectors are (C,). Why fused: the NumPy layer made ~6 full-size passes forward and ~8
backward, with a full-size temporary each time; here the forward reads x twice (statistics, then
``y = x * scale + shift``) and the backward reads (dout, x) twice (sums, then
``dx = a * dout + b * x + d``). The layer derives scale/shift and a/b/d from the (C,) results.

Sums are accumulated in float64 also for float32 input. The variance is computed around a shift (the
channel's first value), which keeps the one-pass ``sum of squares`` formula accurate when the mean is
large against the spread.

Reductions run one channel per ``prange`` iteration; element-wise maps one (n, c) row per iteration.
"""
import numpy as np
from numba import njit, prange

# fastmath without 'nnan'/'ninf': reductions may be reordered (so they vectorise), but a NaN or inf in
# the input still reaches the output, as in PyTorch.
_FAST = {"reassoc", "contract", "nsz", "arcp"}


# -- forward statistics ---------------------------------------------------------------------------
@njit(parallel=True, cache=True, fastmath=_FAST)
def _channel_stats(x, mean, var):
    # x (N, C, L); mean, var (C,) float64: biased variance
    N, C, L = x.shape
    count = N * L
    for c in prange(C):
        shift = np.float64(x[0, c, 0])
        s = 0.0
        ss = 0.0
        for n in range(N):
            for j in range(L):
                d = x[n, c, j] - shift
                s += d
                ss += d * d
        m = s / count
        mean[c] = shift + m
        var[c] = max(ss / count - m * m, 0.0)


def channel_stats(x):
    """Mean and biased variance per channel of x (N, C, L): two (C,) float64 arrays."""
    C = x.shape[1]
    mean, var = np.empty(C), np.empty(C)
    _channel_stats(x, mean, var)
    return mean, var


def channel_stats_ref(x):
    x = x.astype(np.float64)
    return x.mean(axis=(0, 2)), x.var(axis=(0, 2))


# -- per-channel affine maps ------------------------------------------------------------------------
@njit(parallel=True, cache=True, fastmath=_FAST)
def _channel_affine(x, scale, shift, out):
    # out[n, c, :] = x[n, c, :] * scale[c] + shift[c]
    N, C, L = x.shape
    for r in prange(N * C):
        n, c = r // C, r % C
        a, b = scale[c], shift[c]
        for j in range(L):
            out[n, c, j] = x[n, c, j] * a + b


def channel_affine(x, scale, shift):
    """x (N, C, L) * scale (C,) + shift (C,), in x's dtype (scale and shift are cast to it)."""
    out = np.empty_like(x)
    _channel_affine(x, scale.astype(x.dtype), shift.astype(x.dtype), out)
    return out


def channel_affine_ref(x, scale, shift):
    return x * scale.astype(x.dtype)[:, None] + shift.astype(x.dtype)[:, None]


# -- backward -----------------------------------------------------------------------------------
@njit(parallel=True, cache=True, fastmath=_FAST)
def _channel_grad_sums(dout, x, mean, sum_d, sum_dxc):
    # sum_d[c] = sum dout; sum_dxc[c] = sum dout * (x - mean[c]); both float64
    N, C, L = x.shape
    for c in prange(C):
        m = mean[c]
        s = 0.0
        sx = 0.0
        for n in range(N):
            for j in range(L):
                g = np.float64(dout[n, c, j])
                s += g
                sx += g * (x[n, c, j] - m)
        sum_d[c] = s
        sum_dxc[c] = sx


def channel_grad_sums(dout, x, mean):
    """Per channel of (N, C, L) arrays: sum of dout and sum of dout * (x - mean), float64 (C,)."""
    C = x.shape[1]
    sum_d, sum_dxc = np.empty(C), np.empty(C)
    _channel_grad_sums(dout, x, np.asarray(mean, dtype=np.float64), sum_d, sum_dxc)
    return sum_d, sum_dxc


def channel_grad_sums_ref(dout, x, mean):
    dout, x = dout.astype(np.float64), x.astype(np.float64)
    return dout.sum(axis=(0, 2)), (dout * (x - np.asarray(mean)[:, None])).sum(axis=(0, 2))


@njit(parallel=True, cache=True, fastmath=_FAST)
def _channel_affine2(dout, x, a, b, d, out):
    # out[n, c, :] = a[c] * dout[n, c, :] + b[c] * x[n, c, :] + d[c]
    N, C, L = x.shape
    for r in prange(N * C):
        n, c = r // C, r % C
        ac, bc, dc = a[c], b[c], d[c]
        for j in range(L):
            out[n, c, j] = ac * dout[n, c, j] + bc * x[n, c, j] + dc


def channel_affine2(dout, x, a, b, d):
    """a (C,) * dout + b (C,) * x + d (C,) for (N, C, L) arrays, in x's dtype."""
    t = x.dtype
    out = np.empty_like(x)
    _channel_affine2(dout, x, a.astype(t), b.astype(t), d.astype(t), out)
    return out


def channel_affine2_ref(dout, x, a, b, d):
    t = x.dtype
    return a.astype(t)[:, None] * dout + b.astype(t)[:, None] * x + d.astype(t)[:, None]
