"""Row softmax over the last axis, forward (scale and an additive mask fused in) and backward, on
npnet's worker threads, each beside its plain NumPy reference (``softmax_forward_ref``,
``softmax_backward_ref``: the readable code).

Shapes: x (..., S), the softmax taken over the last axis; mask broadcastable to x's shape (an
attention mask: (L, S), (N, 1, 1, S), (N, h, L, S), ...); the results are C-ordered arrays of x's
shape and dtype (float32 or float64).

Why a kernel: attention's scores are the largest arrays of a Transformer step ((N * heads, L, S):
4.2 M values a layer in the benchmark of issue 34), and NumPy made 6 passes over them forward
(scale, mask, max, subtract, exp, divide) and 4 backward, a temporary each, on one thread. Here
each row is read once and written once while it is in L1. Measured on a 2-core AMD EPYC (Zen 4),
8 December, other processes keeping the machine ~2/3 busy: (256, 128, 128) float32 with a
(128, 128) causal mask, forward (twin -> kernel) 17.2 -> 4.9 ms at 2 threads, 22.0 -> 6.9 ms at 1;
backward 7.2 -> 2.1 ms at 2 threads, 8.1 -> 2.2 ms at 1.

exp: Numba's ``math.exp`` is a scalar libm call (no SVML here): 2.4 ns a value, 5x NumPy's
vectorised exp (0.5 ns). ``_exp_shifted`` computes exp(z - max) as 2^n e^g (n = round((z - max) /
ln 2), g the rest, |g| <= ln(2) / 2, ln 2 split in two so that n ln 2 is exact) with a degree-13
Taylor polynomial, and builds 2^n from its exponent bits in an integer view of a scratch row, so
that the loop vectorises: ~0.7 ns a value, in the same pass as the sum (a table of 2^-n instead of
the bits: a gather, and the loop did not vectorise, 2.6 ns). Relative error against np.exp ~4e-7
(float32) and ~1e-15 (float64); a value below 2^-126 (float64: 2^-1022) of the row's maximum gives
0 where NumPy gives a denormal.

Semantics as NumPy's ``exp(z - max) / sum`` (``functional.softmax``): a NaN anywhere in a row makes
the row NaN; a row whose every value is -inf (a query whose every key is masked) is NaN, or zeros
with ``zero_empty_rows`` (``F.scaled_dot_product_attention``'s rule); a masked key (-inf) gets
exactly 0.
"""
import math

import numpy as np

from ._jit import CACHE, njit
from ._threads import run_workers, workers_for
from .reference import reference_enabled

_FAST = {"reassoc", "contract", "nsz", "arcp"}   # no 'nnan' / 'ninf': NaN and -inf keep their meaning
_MIN_SHARE = 1 << 15                             # values per worker below which one thread does it all
_LN2_HI, _LN2_LO = 6.93145751953125e-1, 1.42860682030941723212e-6   # ln 2 = hi + lo, n * hi exact

# per dtype: the integer type of its bits, the smallest normal exponent, the exponent bias and shift
_BITS = {np.dtype(np.float32): (np.int32, -126, 127, 23), np.dtype(np.float64): (np.int64, -1022, 1023, 52)}


def _constants(dtype):
    """[1/0!, ..., 1/13!, 1/ln 2, ln2_hi, ln2_lo, 0.5, lowest exponent] in ``dtype``."""
    lowest = _BITS[np.dtype(dtype)][1]
    return np.array([1 / math.factorial(k) for k in range(14)] + [1 / math.log(2), _LN2_HI, _LN2_LO, 0.5, lowest],
                    dtype=dtype)


@njit(nogil=True, cache=CACHE, fastmath=_FAST)
def _exp_shifted(z, m, ib, fb, c, bias, shift):
    """z[j] = exp(z[j] - m) in place for a row z with max m; returns the row's sum. ib / fb: an
    integer scratch row and its float view (2^n is built in its bits). In place on purpose: with an
    output that may be the input, LLVM's overlap check sends every call to the scalar loop (3x slower)."""
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13 = (c[0], c[1], c[2], c[3], c[4], c[5], c[6],
                                                                   c[7], c[8], c[9], c[10], c[11], c[12], c[13])
    l2e, hi, lo, half, lowest = c[14], c[15], c[16], c[17], c[18]   # in locals: the loop may not reload them
    for j in range(z.size):
        d = z[j] - m
        y = d * l2e
        n = np.floor(y + half)
        n = n if n > lowest else lowest                 # NaN -> lowest: a defined integer below
        g = d - n * hi - n * lo                         # |g| <= ln(2) / 2
        p = c13 * g + c12                               # e^g, Horner
        p = p * g + c11
        p = p * g + c10
        p = p * g + c9
        p = p * g + c8
        p = p * g + c7
        p = p * g + c6
        p = p * g + c5
        p = p * g + c4
        p = p * g + c3
        p = p * g + c2
        p = p * g + c1
        p = p * g + c0
        z[j] = 0 if y < lowest else p                   # -inf -> exactly 0; NaN stays NaN
        ib[j] = (np.int64(n) + bias) << shift           # the bits of 2^n
    s = z[0] * 0
    for j in range(z.size):
        v = z[j] * fb[j]
        z[j] = v
        s += v
    return s


@njit(nogil=True, cache=CACHE, fastmath=_FAST)
def _row_max(z, acc):
    """The largest value of z, NaN skipped (it makes the row's sum NaN later); acc: a scratch row.
    In 16 independent lanes: a max-reduction in one lane does not vectorise without 'nnan'."""
    m = z[0]
    n16 = z.size // 16 * 16
    if n16:
        for k in range(16):
            acc[k] = z[k]
        for j in range(16, n16, 16):
            for k in range(16):
                v = z[j + k]
                acc[k] = v if v > acc[k] else acc[k]
        for k in range(16):
            m = acc[k] if acc[k] > m else m
    for j in range(n16, z.size):
        m = z[j] if z[j] > m else m
    return m


@njit(nogil=True, cache=CACHE, fastmath=_FAST)
def _softmax_row(z, zero_empty, ib, fb, c, bias, shift):
    """z = softmax(z) in place, for one row already scaled and masked."""
    m = _row_max(z, fb)
    if m == -np.inf:                                     # every value -inf (or -inf and NaN)
        empty = True
        for j in range(z.size):
            empty = empty and z[j] == -np.inf
        fill = 0 if empty and zero_empty else np.nan
        for j in range(z.size):
            z[j] = fill
        return
    inv = 1 / _exp_shifted(z, m, ib, fb, c, bias, shift)
    for j in range(z.size):
        z[j] *= inv


@njit(nogil=True, cache=CACHE, fastmath=_FAST)
def _softmax_rows(t, T, x, scale, mask, mitem, masked, inplace, zero_empty, ib, fb, c, bias, shift, out):
    # x, out (B, L, S) (``inplace``: out is x); mask (Bm, Lm, S), row i of batch item b uses
    # mask[mitem[b], i or 0]; worker t of T: rows t B L / T .. (t + 1) B L / T. The in-place loops
    # read and write one array: written as out = f(x) with out being x they would not vectorise.
    B, L, S = x.shape
    Lm = mask.shape[1]
    it, ft = ib[t], fb[t]
    for r in range(t * B * L // T, (t + 1) * B * L // T):
        b, i = r // L, r % L
        xr, o = x[b, i], out[b, i]
        mr = mask[mitem[b], i if Lm > 1 else 0]
        if inplace and masked:
            for j in range(S):
                o[j] = o[j] * scale + mr[j]
        elif inplace:
            for j in range(S):
                o[j] *= scale
        elif masked:
            for j in range(S):
                o[j] = xr[j] * scale + mr[j]
        else:
            for j in range(S):
                o[j] = xr[j] * scale
        _softmax_row(o, zero_empty, it, ft, c, bias, shift)


@njit(nogil=True, cache=CACHE, fastmath=_FAST)
def _softmax_grad_rows(t, T, dy, y, scale, inplace, dx):
    # dx = y * (dy - sum(dy * y)) * scale, row by row of (R, S) arrays (``inplace``: dx is dy, and the
    # loop reads and writes dx alone, so that it vectorises); worker t of T: rows t R / T .. (t + 1) R / T
    R, S = y.shape
    for r in range(t * R // T, (t + 1) * R // T):
        g, p, o = dy[r], y[r], dx[r]
        s = g[0] * 0
        for j in range(S):
            s += g[j] * p[j]
        if inplace:
            for j in range(S):
                o[j] = p[j] * (o[j] - s) * scale
        else:
            for j in range(S):
                o[j] = p[j] * (g[j] - s) * scale


def _rows3(a):
    """a (..., S) as a C-ordered (B, L, S) array (L = a.shape[-2], 1 for a 1-D a): a view if possible."""
    a = np.ascontiguousarray(a)
    L = a.shape[-2] if a.ndim > 1 else 1
    return a.reshape(-1, L, a.shape[-1])


def _mask_rows(mask, shape, dtype):
    """The mask as (Bm, Lm, S) C-ordered in ``dtype`` and, per batch item of x (B,), its item in it."""
    mask = np.asarray(mask)
    try:
        ok = np.broadcast_shapes(mask.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"softmax: mask of shape {mask.shape} does not broadcast to the input's {tuple(shape)}")
    mask = mask.reshape((1,) * (len(shape) - mask.ndim) + mask.shape)
    if mask.shape[-1] != shape[-1]:
        mask = np.broadcast_to(mask, mask.shape[:-1] + shape[-1:])
    mask = np.ascontiguousarray(mask, dtype=dtype)
    batch, mbatch = tuple(shape[:-2]), mask.shape[:-2]
    items = np.arange(int(np.prod(mbatch)), dtype=np.int64).reshape(mbatch)
    mitem = np.ascontiguousarray(np.broadcast_to(items, batch)).reshape(-1)
    return mask.reshape(-1, mask.shape[-2] if mask.ndim > 1 else 1, mask.shape[-1]), mitem


def _scratch(T, S, dtype):
    """Integer scratch rows (T, S) and their float view, one row per worker (see ``_exp_shifted``)."""
    ib = np.empty((T, S), dtype=_BITS[np.dtype(dtype)][0])
    return ib, ib.view(dtype)


def softmax_forward(x, scale=1.0, mask=None, zero_empty_rows=False, out=None):
    """softmax(x * scale + mask) over the last axis of x (..., S); a new C-ordered array, or ``out``
    (x's shape and dtype, C-ordered; it may be x itself).

    mask: None, or an additive mask broadcastable to x's shape (0 where allowed, -inf where not).
    zero_empty_rows: a row whose every value is -inf gives zeros instead of NaN.
    float32 and float64 run the kernel; another float dtype runs the twin.
    """
    dtype = x.dtype
    if reference_enabled() or dtype not in _BITS:          # other dtypes (float16): the twin
        return softmax_forward_ref(x, scale, mask, zero_empty_rows, out)
    if out is None:
        out = np.empty(x.shape, dtype=dtype)
    elif out.shape != x.shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"softmax_forward: out must be C-ordered {dtype} of shape {x.shape}")
    if x.size == 0:
        return out
    if mask is None:
        m3, mitem = np.zeros((1, 1, x.shape[-1]), dtype), np.zeros(1, np.int64)
    else:
        m3, mitem = _mask_rows(mask, x.shape, dtype)
    x3 = _rows3(x)
    o3 = out.reshape(x3.shape)
    T = workers_for(x.size // _MIN_SHARE)
    _, _, bias, shift = _BITS[dtype]
    ib, fb = _scratch(T, x.shape[-1], dtype)
    inplace = np.shares_memory(x3, o3)
    if inplace and not (x3.ctypes.data == o3.ctypes.data and x3.strides == o3.strides):
        x3 = x3.copy()                                   # a partial overlap: read from a copy
        inplace = False
    run_workers(_softmax_rows, T, x3, dtype.type(scale), m3, mitem, mask is not None, inplace, bool(zero_empty_rows),
                ib, fb, _constants(dtype), bias, shift, o3)
    return out


def softmax_backward(dy, y, scale=1.0, out=None):
    """The gradient through ``y = softmax(x * scale + mask)`` over the last axis:
    ``y * (dy - sum(dy * y)) * scale`` (a masked value has y = 0 and gets 0). A new array, or ``out``
    (C-ordered, y's shape; it may be dy)."""
    dtype = y.dtype
    if reference_enabled() or dtype not in _BITS:
        return softmax_backward_ref(dy, y, scale, out)
    if out is None:
        out = np.empty(y.shape, dtype=dtype)
    elif out.shape != y.shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"softmax_backward: out must be C-ordered {dtype} of shape {y.shape}")
    if y.size == 0:
        return out
    S = y.shape[-1]
    g, o = np.ascontiguousarray(dy, dtype=dtype).reshape(-1, S), out.reshape(-1, S)
    inplace = np.shares_memory(g, o)
    if inplace and not (g.ctypes.data == o.ctypes.data and g.strides == o.strides):
        g, inplace = g.copy(), False                     # a partial overlap: read from a copy
    run_workers(_softmax_grad_rows, workers_for(y.size // _MIN_SHARE), g, np.ascontiguousarray(y).reshape(-1, S),
                dtype.type(scale), inplace, o)
    return out


# ------------------------------------------------------------------------------------ NumPy references

def softmax_forward_ref(x, scale=1.0, mask=None, zero_empty_rows=False, out=None):
    z = x * x.dtype.type(scale)
    if mask is not None:
        z = z + np.asarray(mask, dtype=x.dtype)
    if z.shape != x.shape:
        raise ValueError(f"softmax: mask of shape {np.shape(mask)} does not broadcast to the input's {x.shape}")
    with np.errstate(invalid="ignore"):                  # a row of -inf: (-inf) - (-inf) is NaN, as before
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        y = e / e.sum(axis=-1, keepdims=True)
    if zero_empty_rows:
        y = np.where(np.isneginf(z).all(axis=-1, keepdims=True), x.dtype.type(0), y)
    if out is None:
        return y
    out[...] = y
    return out


def softmax_backward_ref(dy, y, scale=1.0, out=None):
    dx = y * (dy - (dy * y).sum(axis=-1, keepdims=True)) * y.dtype.type(scale)
    if out is None:
        return dx
    out[...] = dx
    return out
