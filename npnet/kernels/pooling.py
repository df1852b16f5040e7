"""Max and average pooling: Numba kernels and their plain NumPy references.

Shapes: x (N, C, H, W) -> y (N, C, OH, OW), ``OH = (H + 2*ph - kh) // sh + 1``. Windows are clipped to
the input, which is the same as padding with -inf (max) or with zeros that still count in the divisor
(average, PyTorch's default ``count_include_pad=True``). The caller guarantees ``ph <= kh // 2`` and
``pw <= kw // 2`` (PyTorch's rule), so no window lies entirely in the padding.

Max pooling follows PyTorch's CPU kernel exactly: the winner is the first maximum in row-major window
order, and a NaN wins over any number (the last NaN, as PyTorch's ``val > max || isnan(val)`` does).
``argmax`` holds the flat index ``h*W + w`` of the winner in its (H, W) plane, as int64.

Every Numba kernel is a serial worker of (t, T, ...) that ``_threads.run_workers`` runs on T threads:
worker t takes the (n, c) planes t NC / T .. (t + 1) NC / T. Planes are independent, so the backward
scatter-adds need no atomics. (No ``prange``: Numba's OpenMP pool would spin beside npnet's worker
threads; see ``elementwise.py``.)
"""
import numpy as np

from ._jit import CACHE, njit
from .reference import reference_enabled
from .im2col import out_size, as_float_array
from ._threads import run_workers, workers_for


@njit(nogil=True, cache=CACHE)
def _maxpool_forward(t, T, x, y, arg, kh, kw, sh, sw, ph, pw):
    # x (NC, H, W), y / arg (NC, OH, OW)
    NC, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    for p in range(t * NC // T, (t + 1) * NC // T):
        xp = x[p]
        for oh in range(OH):
            h0 = oh * sh - ph
            hs, he = max(h0, 0), min(h0 + kh, H)
            for ow in range(OW):
                w0 = ow * sw - pw
                ws, we = max(w0, 0), min(w0 + kw, W)
                best = xp[hs, ws]
                bi = hs * W + ws
                for h in range(hs, he):
                    for w in range(ws, we):
                        v = xp[h, w]
                        if v > best or np.isnan(v):
                            best = v
                            bi = h * W + w
                y[p, oh, ow] = best
                arg[p, oh, ow] = bi


@njit(nogil=True, cache=CACHE)
def _maxpool2x2_forward(t, T, x, y, arg):
    # _maxpool_forward for 2x2 windows, stride 2, no padding (the usual pooling layer): four loads
    # and three compare-selects per output, written without branches (a branch on random data is
    # mispredicted half the time: 9.5 ms with the general kernel, 3.2 ms so on (128, 64, 32, 32)).
    # Worker t of T (``_threads.run_workers``: as a prange kernel it compiled in 0.8 s, serial in less
    # than half) takes the planes t NC / T .. (t + 1) NC / T.
    NC, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    xf, yf, af = x.reshape(NC, H * W), y.reshape(NC, OH * OW), arg.reshape(NC, OH * OW)
    for p in range(t * NC // T, (t + 1) * NC // T):
        xp, yp, ap = xf[p], yf[p], af[p]
        for oh in range(OH):
            r0 = 2 * oh * W
            for ow in range(OW):
                c = r0 + 2 * ow
                a0, a1, a2, a3 = xp[c], xp[c + 1], xp[c + W], xp[c + W + 1]
                win = (a1 > a0) | (a1 != a1)               # a1 != a1: NaN wins, the last one (PyTorch)
                best = a1 if win else a0
                i = np.int64(1) if win else np.int64(0)
                win = (a2 > best) | (a2 != a2)
                best = a2 if win else best
                i = W if win else i
                win = (a3 > best) | (a3 != a3)
                best = a3 if win else best
                i = W + 1 if win else i
                yp[oh * OW + ow] = best
                ap[oh * OW + ow] = c + i


@njit(nogil=True, cache=CACHE)
def _maxpool_backward(t, T, dy, arg, dx):
    # dy / arg (NC, OH*OW), dx (NC, H*W): every output sends its gradient to its winner; worker t of T
    # takes the planes t NC / T .. (t + 1) NC / T
    NC = dy.shape[0]
    for p in range(t * NC // T, (t + 1) * NC // T):
        dxp, dyp, ap = dx[p], dy[p], arg[p]
        for i in range(dxp.size):
            dxp[i] = 0
        for k in range(dyp.size):
            dxp[ap[k]] += dyp[k]


@njit(nogil=True, cache=CACHE)
def _avgpool_forward(t, T, x, y, kh, kw, sh, sw, ph, pw):
    # x (NC, H, W), y (NC, OH, OW); padding counts in the divisor, so it is always kh*kw
    NC, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    inv = 1.0 / (kh * kw)
    for p in range(t * NC // T, (t + 1) * NC // T):
        xp = x[p]
        for oh in range(OH):
            h0 = oh * sh - ph
            for ow in range(OW):
                w0 = ow * sw - pw
                s = 0.0                                     # float64 accumulator, also for float32
                for h in range(max(h0, 0), min(h0 + kh, H)):
                    for w in range(max(w0, 0), min(w0 + kw, W)):
                        s += xp[h, w]
                y[p, oh, ow] = s * inv


@njit(nogil=True, cache=CACHE)
def _avgpool_backward(t, T, dy, dx, kh, kw, sh, sw, ph, pw):
    # dy (NC, OH, OW), dx (NC, H, W)
    NC, H, W = dx.shape
    OH, OW = dy.shape[1], dy.shape[2]
    inv = 1.0 / (kh * kw)
    for p in range(t * NC // T, (t + 1) * NC // T):
        dxp = dx[p]
        dxp[:] = 0
        for oh in range(OH):
            h0 = oh * sh - ph
            for ow in range(OW):
                w0 = ow * sw - pw
                g = dy[p, oh, ow] * inv
                for h in range(max(h0, 0), min(h0 + kh, H)):
                    for w in range(max(w0, 0), min(w0 + kw, W)):
                        dxp[h, w] += g


def maxpool2d_forward(x, kh, kw, sh, sw, ph, pw):
    """Max pooling. Shape: x (N, C, H, W) -> y (N, C, OH, OW) (dtype of x), argmax (N, C, OH, OW) int64."""
    if reference_enabled():
        return maxpool2d_forward_ref(x, kh, kw, sh, sw, ph, pw)
    x = as_float_array(x)
    N, C, H, W = x.shape
    OH, OW = out_size(H, kh, sh, ph), out_size(W, kw, sw, pw)
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    arg = np.empty((N, C, OH, OW), dtype=np.int64)
    if (kh, kw, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0):
        run_workers(_maxpool2x2_forward, workers_for(N * C), x.reshape(N * C, H, W), y.reshape(N * C, OH, OW),
                    arg.reshape(N * C, OH, OW))
    else:
        run_workers(_maxpool_forward, workers_for(N * C), x.reshape(N * C, H, W), y.reshape(N * C, OH, OW),
                    arg.reshape(N * C, OH, OW), kh, kw, sh, sw, ph, pw)
    return y, arg


def maxpool2d_backward(dy, argmax, H, W):
    """Gradient of max pooling. Shape: dy, argmax (N, C, OH, OW) -> dx (N, C, H, W) (dtype of dy)."""
    if reference_enabled():
        return maxpool2d_backward_ref(dy, argmax, H, W)
    dy = as_float_array(dy)
    argmax = np.ascontiguousarray(argmax, dtype=np.int64)
    N, C = dy.shape[:2]
    dx = np.empty((N, C, H, W), dtype=dy.dtype)
    run_workers(_maxpool_backward, workers_for(N * C), dy.reshape(N * C, -1), argmax.reshape(N * C, -1),
                dx.reshape(N * C, H * W))
    return dx


def avgpool2d_forward(x, kh, kw, sh, sw, ph, pw):
    """Average pooling (count_include_pad=True). Shape: x (N, C, H, W) -> y (N, C, OH, OW)."""
    if reference_enabled():
        return avgpool2d_forward_ref(x, kh, kw, sh, sw, ph, pw)
    x = as_float_array(x)
    N, C, H, W = x.shape
    OH, OW = out_size(H, kh, sh, ph), out_size(W, kw, sw, pw)
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    run_workers(_avgpool_forward, workers_for(N * C), x.reshape(N * C, H, W), y.reshape(N * C, OH, OW),
                kh, kw, sh, sw, ph, pw)
    return y


def avgpool2d_backward(dy, H, W, kh, kw, sh, sw, ph, pw):
    """Gradient of average pooling. Shape: dy (N, C, OH, OW) -> dx (N, C, H, W) (dtype of dy)."""
    if reference_enabled():
        return avgpool2d_backward_ref(dy, H, W, kh, kw, sh, sw, ph, pw)
    dy = as_float_array(dy)
    N, C, OH, OW = dy.shape
    dx = np.empty((N, C, H, W), dtype=dy.dtype)
    run_workers(_avgpool_backward, workers_for(N * C), dy.reshape(N * C, OH, OW), dx.reshape(N * C, H, W),
                kh, kw, sh, sw, ph, pw)
    return dx


def _windows(H, W, kh, kw, sh, sw, ph, pw):
    """Yield ``(i, j, rows, cols)``: kernel offset, and the padded-array slices it reads for every output."""
    OH, OW = out_size(H, kh, sh, ph), out_size(W, kw, sw, pw)
    for i in range(kh):
        for j in range(kw):
            yield i, j, slice(i, i + sh * OH, sh), slice(j, j + sw * OW, sw)


def maxpool2d_forward_ref(x, kh, kw, sh, sw, ph, pw):
    """Plain NumPy :func:`maxpool2d_forward`: a running max over the kh*kw strided slices of a -inf padded x."""
    N, C, H, W = x.shape
    OH, OW = out_size(H, kh, sh, ph), out_size(W, kw, sw, pw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    oh, ow = np.arange(OH)[:, None], np.arange(OW)[None, :]
    # start from the first in-bounds pixel of each window (PyTorch's initial argmax)
    hs, ws = np.maximum(oh * sh - ph, 0), np.maximum(ow * sw - pw, 0)
    y = np.broadcast_to(x[:, :, hs, ws], (N, C, OH, OW)).copy()
    arg = np.broadcast_to(hs * W + ws, (N, C, OH, OW)).astype(np.int64)
    for i, j, rows, cols in _windows(H, W, kh, kw, sh, sw, ph, pw):
        v = xp[:, :, rows, cols]                                     # (N, C, OH, OW)
        win = (v > y) | np.isnan(v)                                  # strict: ties keep the earlier one
        y = np.where(win, v, y)
        arg = np.where(win, (oh * sh + i - ph) * W + (ow * sw + j - pw), arg)
    return y, arg


def maxpool2d_backward_ref(dy, argmax, H, W):
    """Plain NumPy :func:`maxpool2d_backward`: ``np.add.at`` scatter into each flattened plane."""
    N, C = dy.shape[:2]
    dx = np.zeros((N * C, H * W), dtype=dy.dtype)
    planes = np.arange(N * C)[:, None]                               # (NC, 1) broadcasts over outputs
    np.add.at(dx, (planes, argmax.reshape(N * C, -1)), dy.reshape(N * C, -1))
    return dx.reshape(N, C, H, W)


def avgpool2d_forward_ref(x, kh, kw, sh, sw, ph, pw):
    """Plain NumPy :func:`avgpool2d_forward`: sum of the strided slices of a zero-padded x, over kh*kw."""
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    s = sum(xp[:, :, rows, cols] for _, _, rows, cols in _windows(*x.shape[2:], kh, kw, sh, sw, ph, pw))
    return (s / (kh * kw)).astype(x.dtype, copy=False)


def avgpool2d_backward_ref(dy, H, W, kh, kw, sh, sw, ph, pw):
    """Plain NumPy :func:`avgpool2d_backward`: spread dy / (kh*kw) over each window of a padded dx, crop."""
    N, C = dy.shape[:2]
    dxp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=dy.dtype)
    g = dy / dy.dtype.type(kh * kw)
    for _, _, rows, cols in _windows(H, W, kh, kw, sh, sw, ph, pw):
        dxp[:, :, rows, cols] += g
    return dxp[:, :, ph:ph + H, pw:pw + W].copy()
