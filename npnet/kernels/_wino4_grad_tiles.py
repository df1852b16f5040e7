"""Tile transforms of the backward pass of Winograd F(4x4, 3x3): the adjoints of ``_wino4_tiles``'s
output and input transforms, in the same flat-loop layout (see that module's docstring).

``dy_tiles4`` turns each 4x4 tile dY of the output gradient into the 6x6 dM = A dY A^T (the adjoint of
Y = A^T M A); ``input_tiles4_adjoint`` turns dV into the input gradient: B dV B^T per tile, the
overlapping tiles summed, the padding dropped (the adjoint of V = B^T d B). As in F(2x2), each adjoint is
a gather: padded row 4s + k receives row k of tile row s and, for k < 2, row k + 4 of tile row s - 1.
"""

from ._jit import CACHE, njit
from ._wino_tiles import u, ONE, TWO, THREE, FOUR, _copy
from ._wino4_tiles import FIVE, F2, F4, F5, F8, plane_sizes4


@njit(cache=CACHE, inline="always")
def _a_store(dst, o, S, y0, y1, y2, y3):
    # dst[o + i S] = (A y)_i for the 4 values y of a tile row or column (A = (A^T)^T, 6x4)
    p, q = y0 + y2, y1 + y3
    p2, q2 = y0 + F4 * y2, F2 * y1 + F8 * y3
    dst[o] = y0
    dst[o + S] = p + q
    dst[o + TWO * S] = p - q
    dst[o + THREE * S] = p2 + q2
    dst[o + FOUR * S] = p2 - q2
    dst[o + FIVE * S] = y3


@njit(cache=CACHE)
def _dy_cols(src, s0, dst, d0, S, n):
    # A along the row: the 4 values src[s0 + 4q : s0 + 4q + 4] -> dst[d0 + j S + q], j < 6
    for q in range(n):
        k = s0 + FOUR * u(q)
        _a_store(dst, d0 + u(q), S, src[k], src[k + ONE], src[k + TWO], src[k + THREE])


@njit(cache=CACHE)
def _dy_rows(src, s0, D, dst, d0, S, n):
    # A down the columns: y_r = src[s0 + r D + q] -> dst[d0 + i S + q], i < 6
    for q in range(n):
        k = s0 + u(q)
        _a_store(dst, d0 + u(q), S, src[k], src[k + D], src[k + TWO * D], src[k + THREE * D])


@njit(cache=CACHE)
def dy_tiles4(dyf, yn, O, OH, OW, TH, TW, dyp, dM, t0, T):
    """dM[:, :, t0:t0+TH*R] = A dY A^T for every 4x4 tile dY of the gradient ``dyf[yn:]`` (O, OH, OW):
    the adjoint of :func:`output_tiles4` (junk and overhanging tiles read zeros). dyp: flat, 40 TH R:
    four phase planes (TH, 4R) of the gradient's rows, zero outside it (kept so between calls), then
    scratch (4, 6, TH R)."""
    R = TW + 1
    TT = TH * R
    P = 4 * TT                                            # one phase plane: TH rows of 4R
    for o in range(O):
        for h in range(OH):
            _copy(dyf, u(yn + (o * OH + h) * OW), dyp, u((h % 4) * P + (h // 4) * 4 * R), OW)
        for r in range(4):
            _dy_cols(dyp, u(r * P), dyp, u(4 * P + 6 * r * TT), u(TT), TT)
        for j in range(6):
            _dy_rows(dyp, u(4 * P + j * TT), u(6 * TT), dM, u((j * O + o) * T + t0), u(6 * O * T), TT)


@njit(cache=CACHE, inline="always")
def _b_first(V, k, S):
    # rows 0-3 of B v for the tile at V[k + i S]: what the tile gives to its own tile row
    v0, v1, v2, v3, v4, v5 = V[k], V[k + S], V[k + TWO * S], V[k + THREE * S], V[k + FOUR * S], V[k + FIVE * S]
    e0 = F4 * v0
    e1 = F4 * (v2 - v1 + v5) + F2 * (v4 - v3)
    e2 = -(F5 * v0 + F4 * (v1 + v2) + v3 + v4)
    e3 = (v1 - v2) + F2 * (v3 - v4) - F5 * v5
    return e0, e1, e2, e3


@njit(cache=CACHE, inline="always")
def _b_last(V, k, S):
    # rows 4-5 of B v: what the tile gives to the first two rows of the next tile row
    return V[k] + V[k + S] + V[k + TWO * S] + V[k + THREE * S] + V[k + FOUR * S], V[k + FIVE * S]


@njit(cache=CACHE)
def _rows_in_adj(V, v0, S, R, TT, dst, z0, z1, z2, z3):
    # adjoint of _rows_in for one (c, j): tile rows of V[v0 + i S + q] -> the phase planes dst[zk + q],
    # q < TT + R; plane row s gets tile row s (rows 0-3) and, in planes 0 and 1, tile row s - 1 (rows 4, 5)
    for q in range(R):
        e0, e1, e2, e3 = _b_first(V, v0 + u(q), S)
        dst[z0 + u(q)], dst[z1 + u(q)], dst[z2 + u(q)], dst[z3 + u(q)] = e0, e1, e2, e3
    for q in range(R, TT):
        e0, e1, e2, e3 = _b_first(V, v0 + u(q), S)
        f4, f5 = _b_last(V, v0 + u(q - R), S)
        dst[z0 + u(q)], dst[z1 + u(q)], dst[z2 + u(q)], dst[z3 + u(q)] = e0 + f4, e1 + f5, e2, e3
    for q in range(TT, TT + R):
        f4, f5 = _b_last(V, v0 + u(q - R), S)
        dst[z0 + u(q)], dst[z1 + u(q)] = f4, f5
        dst[z2 + u(q)] = dst[z3 + u(q)] = 0


@njit(cache=CACHE)
def _cols_in_adj(src, s0, Z, dst, d0, n):
    # adjoint of _cols_in: dst[d0 + 4q + l] gathers column l of tile q and, for l < 2, column l + 4 of tile q - 1
    e0, e1, e2, e3 = _b_first(src, s0, Z)
    dst[d0], dst[d0 + ONE], dst[d0 + TWO], dst[d0 + THREE] = e0, e1, e2, e3
    for q in range(1, n):
        e0, e1, e2, e3 = _b_first(src, s0 + u(q), Z)
        f4, f5 = _b_last(src, s0 + u(q - 1), Z)
        o = d0 + FOUR * u(q)
        dst[o], dst[o + ONE], dst[o + TWO], dst[o + THREE] = e0 + f4, e1 + f5, e2, e3


@njit(cache=CACHE)
def input_tiles4_adjoint(V, t0, T, C, H, W, ph, pw, TH, TW, z, dpad, dxf, xn):
    """Image ``dxf[xn:]`` (C, H, W) = the adjoint of :func:`input_tiles4` applied to V (flat (36, C, T)):
    B dV B^T per tile, overlapping tiles summed, padding dropped. z, dpad: scratch as in input_tiles4."""
    R = TW + 1
    half, nz = plane_sizes4(C, TH, TW)
    plane = (TH + 1) * 4 * R
    Z = u(nz + 4)
    TT = TH * R
    for c in range(C):
        s = u(c * (TH + 1) * R)
        for j in range(6):
            _rows_in_adj(V, u((j * C + c) * T + t0), u(6 * C * T), R, TT, z, u(j) * Z + s, u(6 + j) * Z + s,
                         u(12 + j) * Z + s, u(18 + j) * Z + s)
    for k in range(4):
        _cols_in_adj(z, u(6 * k) * Z, Z, dpad, u(k * half), nz)
    for c in range(C):
        for h in range(H):
            r = h + ph
            _copy(dpad, u((r % 4) * half + c * plane + (r // 4) * 4 * R + pw), dxf, u(xn + (c * H + h) * W), W)
