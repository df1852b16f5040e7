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

Threads: each kernel is a serial worker (``_threads.run_workers``; as ``prange`` kernels the four
compiled in 0.6-1.0 s each): reductions take a block of channels per worker, element-wise maps a
block of (n, c) rows.
"""
import numpy as np

from ._jit import CACHE, njit
from ._threads import run_workers, workers_for
from .reference import reference_enabled

# fastmath without 'nnan'/'ninf': reductions may be reordered (so they vectorise), but a NaN or inf in
# the input still reaches the output, as in PyTorch.
_FAST = {"reassoc", "contract", "nsz", "arcp"}


# -- forward statistics ---------------------------------------------------------------------------
@njit(nogil=True, cache=CACHE, fastmath=_FAST)
def _channel_stats(t, T, x, mean, var):
    # x (N, C, L); mean, var (C,) float64: biased variance; worker t of T: channels t C / T .. (t + 1) C / T
    N, C, L = x.shape
    count = N * L
    for c in range(t * C // T, (t + 1) * C // T):
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
    if reference_enabled():
        return channel_stats_ref(x)
    C = x.shape[1]
    mean, var = np.empty(C), np.empty(C)
    run_workers(_channel_stats, workers_for(C), x, mean, var)
    return mean, var


def channel_stats_ref(x):
    x = x.astype(np.float64)
    return x.mean(axis=(0, 2)), x.var(axis=(0, 2))


# -- per-channel affine maps ------------------------------------------------------------------------
@njit(nogil=True, cache=CACHE, fastmath=_FAST)
def _channel_affine(t, T, x, scale, shift, relu, out):
    # out[n, c, :] = x[n, c, :] * scale[c] + shift[c], clamped at 0 if relu (NaN stays NaN); worker t of
    # T: rows (n, c) t N C / T .. (t + 1) N C / T
    N, C, L = x.shape
    for r in range(t * N * C // T, (t + 1) * N * C // T):
        n, c = r // C, r % C
        a, b = scale[c], shift[c]
        if relu:
            for j in range(L):
                v = x[n, c, j] * a + b
                out[n, c, j] = 0 if v < 0 else v
        else:
            for j in range(L):
                out[n, c, j] = x[n, c, j] * a + b


def channel_affine(x, scale, shift, relu=False):
    """x (N, C, L) * scale (C,) + shift (C,), in x's dtype (scale and shift are cast to it);
    ``relu=True``: max(., 0) in the same pass (BatchNorm followed by ReLU)."""
    if reference_enabled():
        return channel_affine_ref(x, scale, shift, relu)
    out = np.empty_like(x)
    run_workers(_channel_affine, workers_for(x.shape[0] * x.shape[1]), x, scale.astype(x.dtype),
                shift.astype(x.dtype), bool(relu), out)
    return out


def channel_affine_ref(x, scale, shift, relu=False):
    y = x * scale.astype(x.dtype)[:, None] + shift.astype(x.dtype)[:, None]
    return np.maximum(y, 0) if relu else y


# -- backward -----------------------------------------------------------------------------------
@njit(nogil=True, cache=CACHE, fastmath=_FAST)
def _channel_grad_sums(t, T, dout, x, mean, y, masked, sum_d, sum_dxc):
    # sum_d[c] = sum g; sum_dxc[c] = sum g * (x - mean[c]); both float64; g = dout, or where
    # ``masked`` dout where y > 0 and 0 elsewhere (the gradient through a fused ReLU of output y);
    # worker t of T: channels t C / T .. (t + 1) C / T
    N, C, L = x.shape
    for c in range(t * C // T, (t + 1) * C // T):
        m = mean[c]
        s = 0.0
        sx = 0.0
        for n in range(N):
            for j in range(L):
                g = np.float64(dout[n, c, j])
                if masked:                                 # as ReLU's dout * (y > 0): NaN * 0 stays NaN
                    g = g if y[n, c, j] > 0 else g * 0.0
                s += g
                sx += g * (x[n, c, j] - m)
        sum_d[c] = s
        sum_dxc[c] = sx


def channel_grad_sums(dout, x, mean, mask=None):
    """Per channel of (N, C, L) arrays: sum of dout and sum of dout * (x - mean), float64 (C,).

    ``mask``: None, or the output y (N, C, L) of a ReLU fused after this layer: dout then counts
    only where y > 0 (``dout * (y > 0)`` is the gradient that reaches the layer)."""
    if reference_enabled():
        return channel_grad_sums_ref(dout, x, mean, mask)
    C = x.shape[1]
    sum_d, sum_dxc = np.empty(C), np.empty(C)
    run_workers(_channel_grad_sums, workers_for(C), dout, x, np.asarray(mean, dtype=np.float64),
                x if mask is None else mask, mask is not None, sum_d, sum_dxc)
    return sum_d, sum_dxc


def channel_grad_sums_ref(dout, x, mean, mask=None):
    dout = dout if mask is None else dout * (mask > 0)
    dout, x = dout.astype(np.float64), x.astype(np.float64)
    return dout.sum(axis=(0, 2)), (dout * (x - np.asarray(mean)[:, None])).sum(axis=(0, 2))


@njit(nogil=True, cache=CACHE, fastmath=_FAST)
def _channel_affine2(t, T, dout, x, a, b, d, y, masked, out):
    # out[n, c, :] = a[c] * g + b[c] * x[n, c, :] + d[c], g = dout[n, c, :] (masked: 0 where y <= 0);
    # worker t of T: rows (n, c) t N C / T .. (t + 1) N C / T
    N, C, L = x.shape
    for r in range(t * N * C // T, (t + 1) * N * C // T):
        n, c = r // C, r % C
        ac, bc, dc = a[c], b[c], d[c]
        if masked:
            for j in range(L):
                g = dout[n, c, j] if y[n, c, j] > 0 else dout[n, c, j] * 0
                out[n, c, j] = ac * g + bc * x[n, c, j] + dc
        else:
            for j in range(L):
                out[n, c, j] = ac * dout[n, c, j] + bc * x[n, c, j] + dc


def channel_affine2(dout, x, a, b, d, mask=None):
    """a (C,) * dout + b (C,) * x + d (C,) for (N, C, L) arrays, in x's dtype; ``mask`` as in
    :func:`channel_grad_sums` (dout counts only where mask > 0)."""
    if reference_enabled():
        return channel_affine2_ref(dout, x, a, b, d, mask)
    t = x.dtype
    out = np.empty_like(x)
    run_workers(_channel_affine2, workers_for(x.shape[0] * x.shape[1]), dout, x, a.astype(t), b.astype(t),
                d.astype(t), x if mask is None else mask, mask is not None, out)
    return out


def channel_affine2_ref(dout, x, a, b, d, mask=None):
    t = x.dtype
    dout = dout if mask is None else dout * (mask > 0)
    return a.astype(t)[:, None] * dout + b.astype(t)[:, None] * x + d.astype(t)[:, None]
