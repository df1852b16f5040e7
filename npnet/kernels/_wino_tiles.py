"""Tile transforms of Winograd F(2x2, 3x3) for one image, written as long flat loops (used by ``winograd.py``).

Matrices (Lavin & Gray 2016): a 4x4 input tile d becomes ``B^T d B``, a 3x3 kernel g becomes ``G g G^T``,
and a 4x4 product m becomes the 2x2 output ``A^T m A``, with

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]      A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

Tiles. Output tile (th, tw) covers output rows 2th, 2th+1 and columns 2tw, 2tw+1 and reads rows
2th..2th+3, columns 2tw..2tw+3 of the zero-padded input. There are TH = ceil(OH/2) tile rows of
R = TW + 1 tiles: the last tile of each row (tw = TW) is junk. It is computed and carried through the
products (its output is never written), because with it every step below is ONE loop over all tiles of
a channel or of an image, instead of a short loop per tile row; a tile row is 4-16 tiles long in
ResNet-32, and short loops cost more in loop set-up than in work. Junk tiles read only finite padding
or neighbouring data, and in the backward pass their gradient is exactly zero.

Buffers are flat 1-D arrays addressed with uint64 offsets (``u(...)``): Numba wraps negative indices
of signed integers with a test per access, which kept these loops scalar; views (``a[i]``) inside the
loops cost a reference-count update each. Measured on one core (float32, 128 images): the input
transform of a 16x32x32 layer went from 7.1 ms (per-tile-row loops with views) to 0.9 ms.

Layout of the padded image: two planes, even rows then odd rows of the padded image, each
(C, TH + 1, 2R) with row length 2R = 2 (TW + 1) >= W + 2 pw, plus 4 floats of slack.
Transformed tiles: ``V[a, c, t0 + q]`` in a flat (16, C, T) array, a = 4 i + j, q = th R + tw.
"""
import numpy as np

from ._jit import CACHE, njit

u = np.uint64
ONE, TWO, THREE, FOUR = u(1), u(2), u(3), u(4)


@njit(cache=CACHE)
def plane_sizes(C, TH, TW):
    """(half, nz): floats in one parity plane of the padded image (with slack), and tiles per plane."""
    R = TW + 1
    return C * (TH + 1) * 2 * R + 4, C * (TH + 1) * R


@njit(cache=CACHE)
def _copy(src, s0, dst, d0, n):
    for q in range(n):
        dst[d0 + u(q)] = src[s0 + u(q)]


@njit(cache=CACHE, inline="always")
def _bt_store(dst, o, S, d0, d1, d2, d3):
    # dst[o + j S] = (B^T d)_j for the 4 values d of a tile row or column
    dst[o] = d0 - d2
    dst[o + S] = d1 + d2
    dst[o + TWO * S] = d2 - d1
    dst[o + THREE * S] = d1 - d3


@njit(cache=CACHE)
def _cols_in(src, s0, dst, d0, S, n):
    # B^T along rows: dst[d0 + j S + q] = (B^T [src[s0+2q], .., src[s0+2q+3]])_j
    for q in range(n):
        k = s0 + TWO * u(q)
        _bt_store(dst, d0 + u(q), S, src[k], src[k + ONE], src[k + TWO], src[k + THREE])


@njit(cache=CACHE)
def _rows_in(src, e0, o0, R, dst, d0, S, n):
    # B^T down columns: padded rows 2th..2th+3 are src[e0+q], src[o0+q], src[e0+R+q], src[o0+R+q]
    for q in range(n):
        _bt_store(dst, d0 + u(q), S, src[e0 + u(q)], src[o0 + u(q)], src[e0 + R + u(q)], src[o0 + R + u(q)])


@njit(cache=CACHE)
def input_tiles(xf, xn, C, H, W, ph, pw, TH, TW, pad, z, V, t0, T):
    """V[:, :, t0:t0+TH*R] = B^T d B for every tile of image ``xf[xn:]`` (C, H, W).

    pad: flat, 2 * plane_sizes()[0], zero outside the image (kept so between calls); z: flat scratch of
    8 * (nz + 4); V: flat (16, C, T).
    """
    R = TW + 1
    half, nz = plane_sizes(C, TH, TW)
    plane = (TH + 1) * 2 * R
    # (the same copy for F(4x4) is in _wino4_tiles with 4 for 2: a shared helper taking the phase count
    # at run time was measured 4-8% slower per forward, so each keeps its constant)
    for c in range(C):
        for h in range(H):
            r = h + ph
            _copy(xf, u(xn + (c * H + h) * W), pad, u((r % 2) * half + c * plane + (r // 2) * 2 * R + pw), W)
    Z = u(nz + 4)
    _cols_in(pad, u(0), z, u(0), Z, nz)                       # even rows -> z[0:4]
    _cols_in(pad, u(half), z, FOUR * Z, Z, nz)                # odd rows  -> z[4:8]
    for c in range(C):
        s = u(c * (TH + 1) * R)
        for j in range(4):
            _rows_in(z, u(j) * Z + s, u(4 + j) * Z + s, u(R), V, u((j * C + c) * T + t0), u(4 * C * T), TH * R)


@njit(cache=CACHE)
def _rows_out(M, m0, S, dst, d0, D, n):
    # A^T down columns for one column index j: m_i = M[m0 + 4 i S + q] -> dst[d0 + r D + q]
    for q in range(n):
        k = m0 + u(q)
        a, b, c, d = M[k], M[k + FOUR * S], M[k + u(8) * S], M[k + u(12) * S]
        dst[d0 + u(q)] = a + b + c
        dst[d0 + D + u(q)] = b - c - d


@njit(cache=CACHE)
def _cols_out(src, s0, D, dst, d0, bias, n, relu):
    # A^T along rows, plus the bias, then max(., 0) if relu (NaN stays NaN; the fused ReLU of
    # inference): dst[d0 + 2q + s] from s_j = src[s0 + j D + q]. ``relu`` is the same for the whole
    # loop, so the compiler moves the test out of it.
    for q in range(n):
        k = s0 + u(q)
        a, b, c, d = src[k], src[k + D], src[k + TWO * D], src[k + THREE * D]
        o = d0 + TWO * u(q)
        v0, v1 = a + b + c + bias, b - c - d + bias
        if relu:
            v0 = 0 if v0 < 0 else v0
            v1 = 0 if v1 < 0 else v1
        dst[o] = v0
        dst[o + ONE] = v1


@njit(cache=CACHE)
def finish_row(src, s0, dst, d0, n, res, relu):
    """dst[d0:d0+n] = src[s0:s0+n] + res[d0:d0+n], clamped at 0 if ``relu``: an output row with a
    residual added (a ResNet block's shortcut, fused inference) before the clamp."""
    for q in range(n):
        v = src[s0 + u(q)] + res[d0 + u(q)]
        dst[d0 + u(q)] = (0 if v < 0 else v) if relu else v


@njit(cache=CACHE)
def output_tiles(M, t0, T, O, OH, OW, TH, TW, b, yf, yn, s, yp, relu, res):
    """Image ``yf[yn:]`` (O, OH, OW) = A^T m A + b (+ the residual) of the products M (flat (16, O, T),
    tiles from t0), clamped at 0 if ``relu``.

    b: (O,) bias (zeros for none: a typed zero keeps the arithmetic in the array's dtype);
    s: flat scratch (2, 4, TH*R); yp: flat (2, TH, 2R), the even and odd output rows; res: flat, the
    residual in y's layout (added before the clamp), or empty for none.
    """
    clamp = relu and res.size == 0
    R = TW + 1
    TT = TH * R
    D = u(4 * TT)
    for o in range(O):
        bias = b[o]
        for j in range(4):
            _rows_out(M, u((j * O + o) * T + t0), u(O * T), s, u(j * TT), D, TT)
        _cols_out(s, u(0), u(TT), yp, u(0), bias, TT, clamp)
        _cols_out(s, D, u(TT), yp, u(TT * 2), bias, TT, clamp)
        if res.size == 0:   # a plain copy of the rows: one call per row with the residual's branch in it
            for th in range(TH):    # measured 3-6% slower per forward
                _copy(yp, u(th * 2 * R), yf, u(yn + (o * OH + 2 * th) * OW), OW)
                if 2 * th + 1 < OH:
                    _copy(yp, u((TH + th) * 2 * R), yf, u(yn + (o * OH + 2 * th + 1) * OW), OW)
        else:
            for th in range(TH):
                finish_row(yp, u(th * 2 * R), yf, u(yn + (o * OH + 2 * th) * OW), OW, res, relu)
                if 2 * th + 1 < OH:
                    finish_row(yp, u((TH + th) * 2 * R), yf, u(yn + (o * OH + 2 * th + 1) * OW), OW, res, relu)
