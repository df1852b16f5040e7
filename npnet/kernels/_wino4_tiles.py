"""Tile transforms of Winograd F(4x4, 3x3) for one image, as long flat loops (used by ``winograd.py``).

The same scheme as ``_wino_tiles`` (F(2x2, 3x3); read its docstring first), with 6x6 input tiles that
step by 4. Matrices (Lavin & Gray 2016, interpolation points 0, 1, -1, 2, -2 and infinity):

    B^T = [[4,  0, -5,  0, 1, 0],      A^T = [[1, 1,  1, 1,  1, 0],
           [0, -4, -4,  1, 1, 0],             [0, 1, -1, 2, -2, 0],
           [0,  4, -4, -1, 1, 0],             [0, 1,  1, 4,  4, 0],
           [0, -2, -1,  2, 1, 0],             [0, 1, -1, 8, -8, 1]]
           [0,  2, -1, -2, 1, 0],
           [0,  4,  0, -5, 0, 1]]

Tiles. Output tile (th, tw) covers output rows 4th..4th+3 and columns 4tw..4tw+3 and reads rows
4th..4th+5, columns 4tw..4tw+5 of the zero-padded input. Each tile row holds R = TW + 1 tiles, the last
one junk, as in F(2x2): the input tile of the junk tile runs 2 columns into the next padded row.

Layout of the padded image: four phase planes, plane k holding the padded rows 4s + k, each
(C, TH + 1, 4R), plus slack. Then the rows 4th..4th+5 of tile row th are rows th of planes 0-3 and rows
th + 1 of planes 0 and 1: one flat loop over all tiles of a channel reads each at a fixed offset.
Transformed tiles: ``V[a, c, t0 + q]`` in a flat (36, C, T) array, a = 6 i + j, q = th R + tw.

The constants are float32 (exact: small integers): a float32 kernel computes in float32 (a Python
int or float would promote to float64), a float64 one in float64.
"""
import numpy as np

from ._jit import CACHE, njit
from ._wino_tiles import u, ONE, TWO, THREE, FOUR, _copy, finish_row

FIVE = u(5)
F2, F4, F5, F8 = np.float32(2), np.float32(4), np.float32(5), np.float32(8)


@njit(cache=CACHE)
def plane_sizes4(C, TH, TW):
    """(plane, nz): floats in one phase plane of the padded image (with slack), and tiles per plane."""
    R = TW + 1
    return C * (TH + 1) * 4 * R + 8, C * (TH + 1) * R


@njit(cache=CACHE, inline="always")
def _bt_store(dst, o, S, d0, d1, d2, d3, d4, d5):
    # dst[o + j S] = (B^T d)_j for the 6 values d of a tile row or column
    a, b = d4 - F4 * d2, d3 - F4 * d1
    c, e = d4 - d2, F2 * (d3 - d1)
    dst[o] = F4 * d0 - F5 * d2 + d4
    dst[o + S] = a + b
    dst[o + TWO * S] = a - b
    dst[o + THREE * S] = c + e
    dst[o + FOUR * S] = c - e
    dst[o + FIVE * S] = F4 * d1 - F5 * d3 + d5


@njit(cache=CACHE)
def _cols_in(src, s0, dst, d0, S, n):
    # B^T along rows: dst[d0 + j S + q] = (B^T src[s0 + 4q : s0 + 4q + 6])_j
    for q in range(n):
        k = s0 + FOUR * u(q)
        _bt_store(dst, d0 + u(q), S, src[k], src[k + ONE], src[k + TWO], src[k + THREE], src[k + FOUR],
                  src[k + FIVE])


@njit(cache=CACHE)
def _rows_in(src, p0, p1, p2, p3, R, dst, d0, S, n):
    # B^T down columns: padded rows 4th..4th+5 are src[p0+q], src[p1+q], src[p2+q], src[p3+q], src[p0+R+q],
    # src[p1+R+q] (the rows th of the four phase planes, then th + 1 of the first two)
    for q in range(n):
        k = u(q)
        _bt_store(dst, d0 + k, S, src[p0 + k], src[p1 + k], src[p2 + k], src[p3 + k], src[p0 + R + k],
                  src[p1 + R + k])


@njit(cache=CACHE)
def input_tiles4(xf, xn, C, H, W, ph, pw, TH, TW, pad, z, V, t0, T):
    """V[:, :, t0:t0+TH*R] = B^T d B for every 6x6 tile of image ``xf[xn:]`` (C, H, W).

    pad: flat, 4 * plane_sizes4()[0], zero outside the image (kept so between calls); z: flat scratch
    of 24 * (nz + 4); V: flat (36, C, T).
    """
    R = TW + 1
    half, nz = plane_sizes4(C, TH, TW)
    plane = (TH + 1) * 4 * R
    for c in range(C):
        for h in range(H):
            r = h + ph
            _copy(xf, u(xn + (c * H + h) * W), pad, u((r % 4) * half + c * plane + (r // 4) * 4 * R + pw), W)
    Z = u(nz + 4)
    for k in range(4):                                    # phase plane k -> z[6k : 6k + 6]
        _cols_in(pad, u(k * half), z, u(6 * k) * Z, Z, nz)
    for c in range(C):
        s = u(c * (TH + 1) * R)
        for j in range(6):
            _rows_in(z, u(j) * Z + s, u(6 + j) * Z + s, u(12 + j) * Z + s, u(18 + j) * Z + s, u(R), V,
                     u((j * C + c) * T + t0), u(6 * C * T), TH * R)


@njit(cache=CACHE)
def _rows_out(M, m0, S, dst, d0, D, n):
    # A^T down columns for one column index j: m_i = M[m0 + i S + q] -> dst[d0 + r D + q]
    for q in range(n):
        k = m0 + u(q)
        m1, m2, m3, m4 = M[k + S], M[k + TWO * S], M[k + THREE * S], M[k + FOUR * S]
        a, b, c, e = m1 + m2, m1 - m2, m3 + m4, m3 - m4
        o = d0 + u(q)
        dst[o] = M[k] + a + c
        dst[o + D] = b + F2 * e
        dst[o + TWO * D] = a + F4 * c
        dst[o + THREE * D] = b + F8 * e + M[k + FIVE * S]


@njit(cache=CACHE)
def _cols_out(src, s0, D, dst, d0, bias, n, relu):
    # A^T along rows, plus the bias, then max(., 0) if relu: dst[d0 + 4q + r] from s_j = src[s0 + j D + q]
    for q in range(n):
        k = s0 + u(q)
        m1, m2, m3, m4 = src[k + D], src[k + TWO * D], src[k + THREE * D], src[k + FOUR * D]
        a, b, c, e = m1 + m2, m1 - m2, m3 + m4, m3 - m4
        v0 = src[k] + a + c + bias
        v1 = b + F2 * e + bias
        v2 = a + F4 * c + bias
        v3 = b + F8 * e + src[k + FIVE * D] + bias
        if relu:
            v0 = 0 if v0 < 0 else v0
            v1 = 0 if v1 < 0 else v1
            v2 = 0 if v2 < 0 else v2
            v3 = 0 if v3 < 0 else v3
        o = d0 + FOUR * u(q)
        dst[o] = v0
        dst[o + ONE] = v1
        dst[o + TWO] = v2
        dst[o + THREE] = v3


@njit(cache=CACHE)
def output_tiles4(M, t0, T, O, OH, OW, TH, TW, b, yf, yn, s, yp, relu, res):
    """Image ``yf[yn:]`` (O, OH, OW) = A^T m A + b (+ the residual) of the products M (flat (36, O, T),
    tiles from t0), clamped at 0 if ``relu``.

    b: (O,) bias (zeros for none); s: flat scratch (4, 6, TH*R); yp: flat (4, TH, 4R), the output rows
    of each phase (row 4th + r in plane r); res: as in ``output_tiles``.
    """
    clamp = relu and res.size == 0
    R = TW + 1
    TT = TH * R
    D = u(6 * TT)
    P = TH * 4 * R
    for o in range(O):
        bias = b[o]
        for j in range(6):
            _rows_out(M, u((j * O + o) * T + t0), u(6 * O * T), s, u(j * TT), D, TT)
        for r in range(4):
            _cols_out(s, u(r) * D, u(TT), yp, u(r * P), bias, TT, clamp)
        for th in range(TH):
            for r in range(min(4, OH - 4 * th)):
                if res.size == 0:
                    _copy(yp, u(r * P + th * 4 * R), yf, u(yn + (o * OH + 4 * th + r) * OW), OW)
                else:
                    finish_row(yp, u(r * P + th * 4 * R), yf, u(yn + (o * OH + 4 * th + r) * OW), OW, res, relu)
