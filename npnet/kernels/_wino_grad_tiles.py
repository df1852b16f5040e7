"""Tile transforms of the backward pass of Winograd F(2x2, 3x3): the adjoints of ``_wino_tiles``'s
output and input transforms, in the same flat-loop layout (see that module's docstring).

``dy_tiles`` turns each 2x2 tile dY of the output gradient into the 4x4 dM = A dY A^T (the adjoint of
Y = A^T M A); ``input_tiles_adjoint`` turns dV into the input gradient: B dV B^T per tile, the overlapping
tiles summed, the padding dropped (the adjoint of V = B^T d B). Each adjoint is written as a gather, so
no two iterations of a loop write the same element and the loops stay vectorisable: e.g. column 2q of a
padded row receives column 0 of tile q and column 2 of tile q - 1.
"""

from ._jit import CACHE, njit
from ._wino_tiles import u, ONE, TWO, THREE, FOUR, plane_sizes, _copy


@njit(cache=CACHE)
def _dy_rows(src, P, n):
    # the rows of A applied down each column pair: planes (even, odd) -> (even, even + odd, even - odd, -odd),
    # the first is src's even plane itself; the other three go to src[2P:5P]
    for q in range(n):
        e, o = src[u(q)], src[P + u(q)]
        src[TWO * P + u(q)] = e + o
        src[THREE * P + u(q)] = e - o
        src[FOUR * P + u(q)] = -o


@njit(cache=CACHE)
def _dy_cols(src, s0, dst, d0, S, n):
    # A along the row: (v0, v1) = src[s0 + 2q], src[s0 + 2q + 1] -> (v0, v0 + v1, v0 - v1, -v1), dst[d0 + j S + q]
    for q in range(n):
        k = s0 + TWO * u(q)
        p0, p1 = src[k], src[k + ONE]
        o = d0 + u(q)
        dst[o] = p0
        dst[o + S] = p0 + p1
        dst[o + TWO * S] = p0 - p1
        dst[o + THREE * S] = -p1


@njit(cache=CACHE)
def dy_tiles(dyf, yn, O, OH, OW, TH, TW, dyp, dM, t0, T):
    """dM[:, :, t0:t0+TH*R] = A dY A^T for every 2x2 tile dY of the gradient ``dyf[yn:]`` (O, OH, OW):
    the adjoint of :func:`output_tiles` (junk and overhanging tiles read zeros). dyp: flat (5, TH, 2R),
    its first two planes (even and odd rows) zero outside the gradient (kept so between calls)."""
    R = TW + 1
    TT = TH * R
    P = u(2 * TT)                                         # one plane: TH rows of 2R
    for o in range(O):
        for h in range(OH):
            _copy(dyf, u(yn + (o * OH + h) * OW), dyp, u((h % 2) * 2 * TT + (h // 2) * 2 * R), OW)
        _dy_rows(dyp, P, 2 * TT)
        for i in range(4):
            src = u(0) if i == 0 else u(i + 1) * P
            _dy_cols(dyp, src, dM, u((4 * i * O + o) * T + t0), u(O * T), TT)


@njit(cache=CACHE)
def _rows_in_adj(V, v0, S, R, TT, dst, de, do):
    # adjoint of _rows_in for one (c, j): V_i = V[v0 + i S + q] -> dst[de + q], dst[do + q], q < TT + R
    for q in range(R):
        dst[de + u(q)] = V[v0 + u(q)]
        dst[do + u(q)] = V[v0 + S + u(q)] - V[v0 + TWO * S + u(q)] + V[v0 + THREE * S + u(q)]
    for q in range(TT - R):
        k, p = v0 + R + u(q), v0 + u(q)          # tile row th (k) and the row above it (p)
        dst[de + R + u(q)] = V[k] - V[p] + V[p + S] + V[p + TWO * S]
        dst[do + R + u(q)] = V[k + S] - V[k + TWO * S] + V[k + THREE * S] - V[p + THREE * S]
    for q in range(R):
        p = v0 + u(TT - R + q)
        dst[de + u(TT + q)] = -V[p] + V[p + S] + V[p + TWO * S]
        dst[do + u(TT + q)] = -V[p + THREE * S]


@njit(cache=CACHE)
def _cols_in_adj(src, s0, Z, dst, d0, n):
    # adjoint of _cols_in: dst[d0 + 2q], dst[d0 + 2q + 1] gather tile q (columns 0, 1) and q - 1 (2, 3)
    dst[d0] = src[s0]
    dst[d0 + ONE] = src[s0 + Z] - src[s0 + TWO * Z] + src[s0 + THREE * Z]
    for q in range(n - 1):
        p = s0 + u(q)
        k = p + ONE
        o = d0 + TWO * u(q + 1)
        dst[o] = src[k] - src[p] + src[p + Z] + src[p + TWO * Z]
        dst[o + ONE] = src[k + Z] - src[k + TWO * Z] + src[k + THREE * Z] - src[p + THREE * Z]


@njit(cache=CACHE)
def input_tiles_adjoint(V, t0, T, C, H, W, ph, pw, TH, TW, z, dpad, dxf, xn):
    """Image ``dxf[xn:]`` (C, H, W) = the adjoint of :func:`input_tiles` applied to V (flat (16, C, T)):
    B dV B^T per tile, overlapping tiles summed, padding dropped. z, dpad: scratch as in input_tiles."""
    R = TW + 1
    half, nz = plane_sizes(C, TH, TW)
    plane = (TH + 1) * 2 * R
    Z = u(nz + 4)
    TT = TH * R
    for c in range(C):
        s = u(c * (TH + 1) * R)
        for j in range(4):
            _rows_in_adj(V, u((j * C + c) * T + t0), u(4 * C * T), u(R), TT, z, u(j) * Z + s, u(4 + j) * Z + s)
    _cols_in_adj(z, u(0), Z, dpad, u(0), nz)
    _cols_in_adj(z, FOUR * Z, Z, dpad, u(half), nz)
    for c in range(C):
        for h in range(H):
            r = h + ph
            _copy(dpad, u((r % 2) * half + c * plane + (r // 2) * 2 * R + pw), dxf, u(xn + (c * H + h) * W), W)
