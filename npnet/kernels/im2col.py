"""im2col / col2im: Numba kernels and their plain NumPy references.

Layout (NCHW). For one image the column matrix is ``(C*kh*kw, OH*OW)`` and its row ``c*kh*kw + i*kw + j``
holds, for every output position ``(oh, ow)``, the input pixel ``x[c, oh*sh + i - ph, ow*sw + j - pw]``
(zero where that falls in the padding). With this layout a convolution is one matrix product per image:
``w.reshape(O, C*kh*kw) @ cols[n] == y[n].reshape(O, OH*OW)``.

Output size: ``OH = (H + 2*ph - kh) // sh + 1`` (a stride that does not tile the input drops the rest,
like PyTorch). ``col2im`` is the adjoint of ``im2col``: it scatters each column entry back to its pixel
and sums the entries that overlap.
"""
import numpy as np

from ._jit import CACHE, njit
from ._threads import run_workers, workers_for


def as_float_array(a):
    """``a`` as a C-contiguous float32/float64 array (no copy if it already is one).

    Numba compiles one version per dtype and ``np.dot`` in nopython mode only knows float32/float64,
    so anything else gets a clear TypeError here instead of a Numba typing error.
    """
    a = np.ascontiguousarray(a)
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"npnet kernels work on float32 or float64 arrays, got {a.dtype}")
    return a


def out_size(size, k, stride, pad):
    """Output length of a window of length ``k`` sliding with ``stride`` over ``size + 2*pad``."""
    return (size + 2 * pad - k) // stride + 1


@njit(cache=CACHE, inline="always")
def fill(a, value):
    """a[...] = value for a C-ordered array, as a plain loop: an array expression (``a[:] = 0``)
    compiles a loop per shape and literal (and, inside the ``prange`` kernels npnet had until 7
    December, a nested parallel loop of its own). Inlined, it passes the array flat and the value as a float64 (not the literal
    0 or 1 of the call): one compiled loop per dtype for every shape and value."""
    _fill(a.reshape(-1), np.float64(value))


@njit(cache=CACHE)
def _fill(f, value):
    for i in range(f.size):
        f[i] = value


@njit(cache=CACHE)
def im2col_image(x, cols, kh, kw, sh, sw, ph, pw, OH, OW):
    """Fill ``cols`` (C*kh*kw, OH*OW) from one image ``x`` (C, H, W). Serial: callers parallelise over images.

    The bounds test stays inside the innermost loop on purpose: one full-length loop per row measured
    1.4-7x faster than precomputing the valid range of ``ow`` and running three shorter loops (zeros,
    copy, zeros), presumably because their short remainders run scalar; slice assignments were slower still.
    """
    C, H, W = x.shape
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                r = (c * kh + i) * kw + j
                for oh in range(OH):
                    h = oh * sh + i - ph
                    base = oh * OW
                    if h < 0 or h >= H:                   # the whole row is padding
                        for ow in range(OW):
                            cols[r, base + ow] = 0
                    else:
                        for ow in range(OW):
                            v = ow * sw + j - pw
                            if v >= 0 and v < W:
                                cols[r, base + ow] = x[c, h, v]
                            else:
                                cols[r, base + ow] = 0


@njit(cache=CACHE)
def col2im_image(cols, dx, kh, kw, sh, sw, ph, pw, OH, OW):
    """Add ``cols`` (C*kh*kw, OH*OW) into one image ``dx`` (C, H, W) (``dx`` is not zeroed here)."""
    C, H, W = dx.shape
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                r = (c * kh + i) * kw + j
                for oh in range(OH):
                    h = oh * sh + i - ph
                    if h < 0 or h >= H:                   # entries that read padding get no gradient
                        continue
                    base = oh * OW
                    for ow in range(OW):
                        v = ow * sw + j - pw
                        if v >= 0 and v < W:
                            dx[c, h, v] += cols[r, base + ow]


@njit(nogil=True, cache=CACHE)
def _im2col_batch(t, T, x, cols, kh, kw, sh, sw, ph, pw, OH, OW):
    # worker t of T (``_threads.run_workers``) takes the images t N / T .. (t + 1) N / T
    N = x.shape[0]
    for n in range(t * N // T, (t + 1) * N // T):
        im2col_image(x[n], cols[n], kh, kw, sh, sw, ph, pw, OH, OW)


@njit(nogil=True, cache=CACHE)
def _col2im_batch(t, T, cols, dx, kh, kw, sh, sw, ph, pw, OH, OW):
    # worker t of T takes a block of images: images never overlap, so the scatter-add needs no atomics
    N = dx.shape[0]
    for n in range(t * N // T, (t + 1) * N // T):
        dx[n] = 0
        col2im_image(cols[n], dx[n], kh, kw, sh, sw, ph, pw, OH, OW)


def im2col(x, kh, kw, sh, sw, ph, pw):
    """Unfold sliding windows into columns.

    Shape: x (N, C, H, W) -> cols (N, C*kh*kw, OH*OW), same dtype.
    """
    x = as_float_array(x)
    N, C, H, W = x.shape
    OH, OW = out_size(H, kh, sh, ph), out_size(W, kw, sw, pw)
    cols = np.empty((N, C * kh * kw, OH * OW), dtype=x.dtype)
    run_workers(_im2col_batch, workers_for(N), x, cols, kh, kw, sh, sw, ph, pw, OH, OW)
    return cols


def col2im(cols, C, H, W, kh, kw, sh, sw, ph, pw):
    """Fold columns back into images, summing overlapping windows (adjoint of :func:`im2col`).

    Shape: cols (N, C*kh*kw, OH*OW) -> x (N, C, H, W), same dtype.
    """
    cols = as_float_array(cols)
    OH, OW = out_size(H, kh, sh, ph), out_size(W, kw, sw, pw)
    dx = np.empty((cols.shape[0], C, H, W), dtype=cols.dtype)
    run_workers(_col2im_batch, workers_for(dx.shape[0]), cols, dx, kh, kw, sh, sw, ph, pw, OH, OW)
    return dx


def im2col_ref(x, kh, kw, sh, sw, ph, pw):
    """Plain NumPy :func:`im2col`: one strided slice of the padded input per kernel offset ``(i, j)``."""
    N, C, H, W = x.shape
    OH, OW = out_size(H, kh, sh, ph), out_size(W, kw, sw, pw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))            # (N, C, H+2ph, W+2pw)
    cols = np.empty((N, C, kh, kw, OH, OW), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i:i + sh * OH:sh, j:j + sw * OW:sw]  # (N, C, OH, OW)
    return cols.reshape(N, C * kh * kw, OH * OW)


def col2im_ref(cols, C, H, W, kh, kw, sh, sw, ph, pw):
    """Plain NumPy :func:`col2im`: add each kernel offset's slab into a padded image, then crop."""
    N = cols.shape[0]
    OH, OW = out_size(H, kh, sh, ph), out_size(W, kw, sw, pw)
    cols = cols.reshape(N, C, kh, kw, OH, OW)
    xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[:, :, i:i + sh * OH:sh, j:j + sw * OW:sw] += cols[:, :, i, j]
    return xp[:, :, ph:ph + H, pw:pw + W].copy()
