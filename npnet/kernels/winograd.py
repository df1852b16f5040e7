"""3x3 stride-1 convolution by Winograd F(2x2, 3x3) and F(4x4, 3x3), forward and backward, and plain
NumPy references.

Shapes: x (N, C, H, W), w (O, C, 3, 3), b (O,) or None, y / dy (N, O, OH, OW), OH = H + 2 ph - 2.
Same results as :func:`conv.conv2d_forward` / ``conv2d_backward`` with kernel 3x3 and stride 1, up to
rounding. F(m x m, 3x3) computes an m x m output tile from an (m + 2) x (m + 2) input tile with
(m + 2)^2 products instead of 9 m^2: m = 2 does 2.25x fewer multiplications than the direct
convolution, m = 4 4x fewer (counting the tile rows' junk tile, see ``_wino_tiles``: 2.1x and 3.6x on
32x32 images, 1.8x and 2.4x on 8x8), for larger transforms and larger rounding errors (below).

Algorithm (Lavin & Gray 2016; the tile transforms are in ``_wino_tiles`` / ``_wino_grad_tiles`` for
m = 2 and ``_wino4_tiles`` / ``_wino4_grad_tiles`` for m = 4): per output tile and input channel,
V = B^T d B (from the input tile d); per kernel, U = G g G^T. For each of the P = (m + 2)^2 positions a,
M[a] (O x T) = U[a] (O x C) @ V[a] (C x T) over T tiles: one GEMM per position and group of images. The
output tile is A^T M A, plus the bias. Backward: dM = A dY A^T per tile; then dU[a] = sum over tiles of
dM[a] @ V[a]^T, dw = G^T dU G; dV[a] = U[a]^T @ dM[a] and dx = the adjoint of the input transform
(B dV B^T per tile, overlapping tiles summed). Threads: each worker takes a block of whole images, in
groups, with its own buffers and its own dU, summed at the end in a fixed order; the workers are serial
kernels run by ``_threads.run_workers`` (one Python thread each), one kernel per m and direction.

Float32 error against the exact (float64) convolution, measured (batch 4, random normal x and dy,
Kaiming-scaled w, C = O = 16 on 16x16 and 32x32, C = O = 64 on 8x8 and 16x16; max abs error and the
same divided by max |exact|). F(2x2): y 1.0-1.9e-6 abs, 1.6-3.1e-7 relative (the direct float32
convolution: 2.1-3.3e-6, 3.7-5.6e-7, it sums 9C products per output where Winograd sums C); dx 1.1-1.8e-6,
1.8-2.6e-7 (direct 0.8-1.3e-6, 1.3-1.8e-7); dw 1.8e-5-1.5e-4 abs, 2.7-7.0e-7 relative (direct
1.3-6.8e-5, 1.9-3.3e-7). F(4x4) (its transforms have coefficients up to 8 and G has 1/6, 1/12, 1/24): y
3.4-7.8e-6 relative, dx 1.7-3.9e-6, dw 2.0-2.7e-6, i.e. 10-25x the direct convolution's.
``tests/test_kernels_winograd.py`` asserts relative errors below 1e-6 and at most 4x the direct
convolution's for F(2x2), below 1.5e-5 and at most 40x for F(4x4). In float64 F(2x2) agrees with the
direct convolution to ~1e-15 relative, F(4x4) to ~1e-13.
"""
import numpy as np

from ._jit import CACHE, njit
from ._threads import take_buffer, give_buffer, one_blas_thread, run_workers, workers_for
from ._wino_tiles import plane_sizes, input_tiles, output_tiles
from ._wino_grad_tiles import dy_tiles, input_tiles_adjoint
from ._wino4_tiles import plane_sizes4, input_tiles4, output_tiles4
from ._wino4_grad_tiles import dy_tiles4, input_tiles4_adjoint
from .im2col import as_float_array, fill
from .blas import gemm

# transform matrices of F(2x2, 3x3) and F(4x4, 3x3) (_wino4_tiles), by output tile size m; B^T and A^T are
# exact in binary floating point, G of F(4x4) is not (1/6, 1/12, 1/24): U is computed in float64
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)
BT4 = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=np.float64)
G4 = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
               [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=np.float64)
AT4 = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
               dtype=np.float64)
MATRICES = {2: (BT, G, AT), 4: (BT4, G4, AT4)}
TILE_SIZES = tuple(MATRICES)


def _check_m(m):
    if m not in MATRICES:
        raise ValueError(f"winograd: output tile size m must be one of {TILE_SIZES}, got {m!r}")
    return m


def tiles(H, W, ph, pw, m=2):
    """(OH, OW, TH, TW): output size and m x m tiles per column and row (a tile row also holds one junk tile)."""
    OH, OW = H + 2 * ph - 2, W + 2 * pw - 2
    return OH, OW, -(-OH // m), -(-OW // m)


GROUP_FLOATS = 16 * 16384


def _groups(N, TT, C, O, P):
    """(threads, ``per_group`` images per group) for P = (m + 2)^2 transform positions: a group holds
    about GROUP_FLOATS / (P (C + O)) tiles (its V and M, P (C + O) floats per tile, fill ~1 MB in
    float32), and the groups split evenly over the threads. Measured for F(2x2) on one core, batch 128,
    against half this size: 5-15% faster on 8x8 images (more images per GEMM) and in the backward of
    16x16 ones, the same elsewhere; twice the size was 3-8% slower on 32x32 images."""
    T = workers_for(N)
    per_group = max(1, (GROUP_FLOATS // (P * (C + O))) // TT)
    per_thread = max(1, -(-N // T))  # an empty batch (N = 0) still gets one (empty) group
    groups_per_thread = -(-per_thread // per_group)
    return T, -(-per_thread // groups_per_thread)


# kron(G, G) (P, 9): row (r i + j), column (3k + l) is G[i, k] G[j, l], so vec(G g G^T) = GG @ vec(g)
GG = {m: np.kron(g, g) for m, (_, g, _) in MATRICES.items()}
GG_T = {m: np.ascontiguousarray(gg.T) for m, gg in GG.items()}


@njit(nogil=True, cache=CACHE)
def _transform(A, B, out):
    # out (r, n) = A (r, k) @ B (k, n) for float64 A, summed in float64 and written in out's dtype: the
    # weight transforms, k and r 9 and P (or P and 9), n = O C long; one vectorised pass per entry of A
    r, k = A.shape
    n = B.shape[1]
    acc = np.empty(n)
    for i in range(r):
        for j in range(n):
            acc[j] = 0.0
        for q in range(k):
            a = A[i, q]
            if a != 0:                                     # kron(G, G) is a third zeros
                for j in range(n):
                    acc[j] += a * B[q, j]
        for j in range(n):
            out[i, j] = acc[j]


def weight_tiles(w, m=2):
    """U (P, O, C) = G g G^T for every 3x3 kernel g of w (O, C, 3, 3), P = (m + 2)^2, in w's dtype
    (computed in float64).

    One (P x 9) @ (9 x OC) product, by a serial Numba loop (``_transform``) that reads w's dtype and
    sums in float64: through ``matmul`` in float64 it compiled float64 kernels into every float32 run
    (0.6 s of a cold start); einsum spent ~0.2 ms a call choosing its path; NumPy's ``@`` would wake
    NumPy's own BLAS threads, which then spin next to the kernels.
    """
    O, C = w.shape[:2]
    U = np.empty((GG[m].shape[0], O * C), dtype=w.dtype)
    _transform(GG[m], np.ascontiguousarray(w.reshape(O * C, 9).T), U)
    return U.reshape(-1, O, C)


def residual_array(residual, y):
    """The residual as the kernels take it: C-ordered in y's shape and dtype, or an empty array for none."""
    if residual is None:
        return np.empty((0, 0, 0, 0), dtype=y.dtype)
    if residual.shape != y.shape:
        raise ValueError(f"conv2d: the residual must have the output's shape {y.shape}, got {residual.shape}")
    return np.ascontiguousarray(residual, dtype=y.dtype)


def _carve(buf, sizes):
    """Consecutive 1-D pieces of ``buf`` with the given sizes."""
    ends = np.cumsum(sizes)
    return [buf[e - n:e] for n, e in zip(sizes, ends)]


def _scratch_sizes(C, TH, TW, m):
    """(pad, z, s, yp, dyp): per-thread scratch of the tile transforms (see ``_wino_tiles`` and
    ``_wino4_tiles``): the padded image, the column-pass tiles, the output pass, the gradient's tiles."""
    RT = TH * (TW + 1)
    if m == 2:
        half, nz = plane_sizes(C, TH, TW)
        return 2 * half, 8 * (nz + 4), 8 * RT, 4 * RT, 10 * RT
    plane, nz = plane_sizes4(C, TH, TW)
    return 4 * plane, 24 * (nz + 4), 24 * RT, 16 * RT, 40 * RT


def _fwd_sizes(C, O, TH, TW, GT, m):
    """Per-thread buffer pieces of the forward: pad, z, s, yp, V, M."""
    pad, z, s, yp, _ = _scratch_sizes(C, TH, TW, m)
    P = (m + 2) ** 2
    return [pad, z, s, yp, P * C * GT, P * O * GT]


# The workers' kernels, one per tile size m and direction: ``_forward2`` / ``_backward2`` call only
# F(2x2)'s tile functions, ``_forward4`` / ``_backward4`` only F(4x4)'s, so a model that runs F(2x2)
# compiles nothing of F(4x4) (one kernel with a branch on m compiled both: 4.5 s of cnn-small's cold
# start went to F(4x4) code it never ran). The two kernels of a direction are the same loop; only the
# tile functions named in it differ (Numba's cache cannot key a kernel made by a factory or given its
# tile functions as arguments, so each is written out; each helper function costs ~0.15-0.2 s of
# compiling of its own, so the products stay written in the loops). Each is serial: worker t of T takes images
# t N / T .. (t + 1) N / T, in groups of ``per_group`` (``_threads.run_workers`` runs the T workers).

@njit(nogil=True, cache=CACHE)
def _forward2(t, T, x, U, b, relu, res, y, work, e, per_group, ph, pw, TH, TW):
    # x (N, C, H, W), U (16, O, C), b (O,), res (N, O, OH, OW) or empty, y (N, O, OH, OW);
    # work (T, e[-1]): one buffer per worker, pieces ending at the offsets e (_fwd_sizes)
    N, C, H, W = x.shape
    O, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    P, TT = U.shape[0], TH * (TW + 1)
    xf, yf, rf, Uf = x.reshape(-1), y.reshape(-1), res.reshape(-1), U.reshape(-1)
    buf = work[t]
    pad, z, s, yp = buf[:e[0]], buf[e[0]:e[1]], buf[e[1]:e[2]], buf[e[2]:e[3]]
    fill(pad, 0)                                          # the padding stays zero: only the image is copied in
    n_lo, n_hi = t * N // T, (t + 1) * N // T
    for n0 in range(n_lo, n_hi, per_group):
        n1 = min(n_hi, n0 + per_group)
        cnt = (n1 - n0) * TT
        V, M = buf[e[3]:e[3] + P * C * cnt], buf[e[4]:e[4] + P * O * cnt]
        for n in range(n0, n1):
            input_tiles(xf, n * C * H * W, C, H, W, ph, pw, TH, TW, pad, z, V, (n - n0) * TT, cnt)
        for a in range(P):                                 # M[a] (O, cnt) = U[a] (O, C) @ V[a] (C, cnt)
            gemm(False, False, O, cnt, C, Uf[a * O * C:], C, V[a * C * cnt:], cnt, 0.0, M[a * O * cnt:], cnt)
        for n in range(n0, n1):
            output_tiles(M, (n - n0) * TT, cnt, O, OH, OW, TH, TW, b, yf, n * O * OH * OW, s, yp, relu, rf)


@njit(nogil=True, cache=CACHE)
def _forward4(t, T, x, U, b, relu, res, y, work, e, per_group, ph, pw, TH, TW):
    # _forward2 with F(4x4)'s tile functions; U (36, O, C)
    N, C, H, W = x.shape
    O, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    P, TT = U.shape[0], TH * (TW + 1)
    xf, yf, rf, Uf = x.reshape(-1), y.reshape(-1), res.reshape(-1), U.reshape(-1)
    buf = work[t]
    pad, z, s, yp = buf[:e[0]], buf[e[0]:e[1]], buf[e[1]:e[2]], buf[e[2]:e[3]]
    fill(pad, 0)
    n_lo, n_hi = t * N // T, (t + 1) * N // T
    for n0 in range(n_lo, n_hi, per_group):
        n1 = min(n_hi, n0 + per_group)
        cnt = (n1 - n0) * TT
        V, M = buf[e[3]:e[3] + P * C * cnt], buf[e[4]:e[4] + P * O * cnt]
        for n in range(n0, n1):
            input_tiles4(xf, n * C * H * W, C, H, W, ph, pw, TH, TW, pad, z, V, (n - n0) * TT, cnt)
        for a in range(P):                                 # M[a] (O, cnt) = U[a] (O, C) @ V[a] (C, cnt)
            gemm(False, False, O, cnt, C, Uf[a * O * C:], C, V[a * C * cnt:], cnt, 0.0, M[a * O * cnt:], cnt)
        for n in range(n0, n1):
            output_tiles4(M, (n - n0) * TT, cnt, O, OH, OW, TH, TW, b, yf, n * O * OH * OW, s, yp, relu, rf)


FORWARD_KERNELS = {2: _forward2, 4: _forward4}


def winograd_forward(x, w, b, ph, pw, relu=False, m=2, residual=None):
    """Convolution with a 3x3 kernel, stride 1, zero padding (ph, pw), by Winograd F(m x m, 3x3), m = 2
    or 4; ``residual`` (y's shape) is added and ``relu=True`` clamps at 0, both in the output
    transform (fused inference).

    Shape: x (N, C, H, W), w (O, C, 3, 3), b (O,) or None -> y (N, O, H + 2ph - 2, W + 2pw - 2), dtype of x.
    """
    _check_m(m)
    x = as_float_array(x)
    w = np.ascontiguousarray(w, dtype=x.dtype)
    N, C, H, W = x.shape
    O = w.shape[0]
    OH, OW, TH, TW = tiles(H, W, ph, pw, m)
    TT = TH * (TW + 1)
    T, per_group = _groups(N, TT, C, O, (m + 2) ** 2)
    b = np.zeros(O, dtype=x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    y = np.empty((N, O, OH, OW), dtype=x.dtype)
    res = residual_array(residual, y)
    e = np.cumsum(_fwd_sizes(C, O, TH, TW, per_group * TT, m))
    total = int(e[-1])
    buf = take_buffer(T * total, x.dtype)
    U = weight_tiles(w, m)
    try:
        with one_blas_thread():  # each worker's GEMMs on one BLAS thread
            run_workers(FORWARD_KERNELS[m], T, x, U, b, bool(relu), res, y, buf[:T * total].reshape(T, total), e,
                        per_group, ph, pw, TH, TW)
    finally:
        give_buffer(buf)
    return y


def _bwd_sizes(C, O, TH, TW, GT, PIX, m):
    """Per-thread buffer pieces of the backward: pad, dpad, z, dyp, V (also dV), dM, ones."""
    pad, z, _, _, dyp = _scratch_sizes(C, TH, TW, m)
    P = (m + 2) ** 2
    return [pad, pad, z, dyp, P * C * GT, P * O * GT, PIX]


@njit(nogil=True, cache=CACHE)
def _backward2(t, T, x, U, dy, dx, need_dx, need_dw, dUT_parts, db_parts, work, e, per_group, ph, pw, TH, TW):
    # x (N, C, H, W), U (16, O, C), dy (N, O, OH, OW), dx (N, C, H, W) or dummy; worker t's own
    # dUT_parts[t] (16, C, O): dU transposed, db_parts[t] (O,), work[t]: pieces ending at e (_bwd_sizes)
    N, C, H, W = x.shape
    O, OH, OW = dy.shape[1], dy.shape[2], dy.shape[3]
    P, TT, PIX = U.shape[0], TH * (TW + 1), OH * OW
    xf, dyf, dxf, Uf = x.reshape(-1), dy.reshape(-1), dx.reshape(-1), U.reshape(-1)
    buf, dUT, db = work[t], dUT_parts[t].reshape(-1), db_parts[t]
    pad, dpad, z, dyp, ones = buf[:e[0]], buf[e[0]:e[1]], buf[e[1]:e[2]], buf[e[2]:e[3]], buf[e[5]:e[6]]
    fill(pad, 0)
    fill(dyp, 0)
    fill(ones, 1)
    fill(dUT, 0)
    fill(db, 0)
    n_lo, n_hi = t * N // T, (t + 1) * N // T
    for n0 in range(n_lo, n_hi, per_group):
        n1 = min(n_hi, n0 + per_group)
        cnt = (n1 - n0) * TT
        V, dM = buf[e[3]:e[3] + P * C * cnt], buf[e[4]:e[4] + P * O * cnt]
        for n in range(n0, n1):
            dy_tiles(dyf, n * O * PIX, O, OH, OW, TH, TW, dyp, dM, (n - n0) * TT, cnt)
            gemm(False, False, O, 1, PIX, dyf[n * O * PIX:], PIX, ones, 1, 1.0, db, 1)  # db += dy[n] @ 1
        if need_dw:     # a frozen weight skips the input transform and these products
            for n in range(n0, n1):
                input_tiles(xf, n * C * H * W, C, H, W, ph, pw, TH, TW, pad, z, V, (n - n0) * TT, cnt)
            for a in range(P):  # dU[a]^T += V[a] dM[a]^T, added by BLAS (measured faster than dU[a] += ...)
                gemm(False, True, C, O, cnt, V[a * C * cnt:], cnt, dM[a * O * cnt:], cnt, 1.0, dUT[a * C * O:], O)
        if need_dx:     # V's buffer now holds dV
            for a in range(P):  # dV[a] (C, cnt) = U[a]^T (C, O) @ dM[a] (O, cnt)
                gemm(True, False, C, cnt, O, Uf[a * O * C:], C, dM[a * O * cnt:], cnt, 0.0, V[a * C * cnt:], cnt)
            for n in range(n0, n1):
                input_tiles_adjoint(V, (n - n0) * TT, cnt, C, H, W, ph, pw, TH, TW, z, dpad, dxf, n * C * H * W)


@njit(nogil=True, cache=CACHE)
def _backward4(t, T, x, U, dy, dx, need_dx, need_dw, dUT_parts, db_parts, work, e, per_group, ph, pw, TH, TW):
    # _backward2 with F(4x4)'s tile functions; U (36, O, C), dUT_parts[t] (36, C, O)
    N, C, H, W = x.shape
    O, OH, OW = dy.shape[1], dy.shape[2], dy.shape[3]
    P, TT, PIX = U.shape[0], TH * (TW + 1), OH * OW
    xf, dyf, dxf, Uf = x.reshape(-1), dy.reshape(-1), dx.reshape(-1), U.reshape(-1)
    buf, dUT, db = work[t], dUT_parts[t].reshape(-1), db_parts[t]
    pad, dpad, z, dyp, ones = buf[:e[0]], buf[e[0]:e[1]], buf[e[1]:e[2]], buf[e[2]:e[3]], buf[e[5]:e[6]]
    fill(pad, 0)
    fill(dyp, 0)
    fill(ones, 1)
    fill(dUT, 0)
    fill(db, 0)
    n_lo, n_hi = t * N // T, (t + 1) * N // T
    for n0 in range(n_lo, n_hi, per_group):
        n1 = min(n_hi, n0 + per_group)
        cnt = (n1 - n0) * TT
        V, dM = buf[e[3]:e[3] + P * C * cnt], buf[e[4]:e[4] + P * O * cnt]
        for n in range(n0, n1):
            dy_tiles4(dyf, n * O * PIX, O, OH, OW, TH, TW, dyp, dM, (n - n0) * TT, cnt)
            gemm(False, False, O, 1, PIX, dyf[n * O * PIX:], PIX, ones, 1, 1.0, db, 1)  # db += dy[n] @ 1
        if need_dw:
            for n in range(n0, n1):
                input_tiles4(xf, n * C * H * W, C, H, W, ph, pw, TH, TW, pad, z, V, (n - n0) * TT, cnt)
            for a in range(P):  # dU[a]^T += V[a] dM[a]^T, added by BLAS (measured faster than dU[a] += ...)
                gemm(False, True, C, O, cnt, V[a * C * cnt:], cnt, dM[a * O * cnt:], cnt, 1.0, dUT[a * C * O:], O)
        if need_dx:
            for a in range(P):  # dV[a] (C, cnt) = U[a]^T (C, O) @ dM[a] (O, cnt)
                gemm(True, False, C, cnt, O, Uf[a * O * C:], C, dM[a * O * cnt:], cnt, 0.0, V[a * C * cnt:], cnt)
            for n in range(n0, n1):
                input_tiles4_adjoint(V, (n - n0) * TT, cnt, C, H, W, ph, pw, TH, TW, z, dpad, dxf, n * C * H * W)


BACKWARD_KERNELS = {2: _backward2, 4: _backward4}


def winograd_backward(x, w, dy, ph, pw, need_dx=True, need_dw=True, m=2):
    """Gradients of :func:`winograd_forward` (the same m).

    Shape: x (N, C, H, W), w (O, C, 3, 3), dy (N, O, OH, OW) -> dx (N, C, H, W) or None if not
    ``need_dx``, dw (O, C, 3, 3) or None if not ``need_dw``, db (O,); dtype of x.
    """
    _check_m(m)
    x = as_float_array(x)
    w = np.ascontiguousarray(w, dtype=x.dtype)
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    N, C, H, W = x.shape
    O = w.shape[0]
    OH, OW, TH, TW = tiles(H, W, ph, pw, m)
    TT = TH * (TW + 1)
    P = (m + 2) ** 2
    T, per_group = _groups(N, TT, C, O, P)
    U = weight_tiles(w, m)
    dx = np.empty((N, C, H, W) if need_dx else (1, 1, 1, 1), dtype=x.dtype)
    e = np.cumsum(_bwd_sizes(C, O, TH, TW, per_group * TT, OH * OW, m))
    total = int(e[-1])
    buf = take_buffer(T * (total + P * O * C + O), x.dtype)
    work, dUT_parts, db_parts = _carve(buf, [T * total, T * P * O * C, T * O])
    try:
        with one_blas_thread():  # each worker's GEMMs on one BLAS thread
            run_workers(BACKWARD_KERNELS[m], T, x, U, dy, dx, bool(need_dx), bool(need_dw),
                        dUT_parts.reshape(T, P, C, O), db_parts.reshape(T, O), work.reshape(T, total), e, per_group,
                        ph, pw, TH, TW)
        db = db_parts.reshape(T, O).sum(axis=0)
        dw = None
        if need_dw:
            dU = np.ascontiguousarray(dUT_parts.reshape(T, P, C, O).sum(axis=0).transpose(0, 2, 1)).reshape(P, O * C)
            dwt = np.empty((9, O * C), dtype=x.dtype)
            _transform(GG_T[m], dU, dwt)                  # G^T dU G, summed in float64
            dw = np.ascontiguousarray(dwt.T).reshape(O, C, 3, 3)
    finally:
        give_buffer(buf)
    return (dx if need_dx else None), dw, db


# ------------------------------------------------------------------------------------ NumPy references

def _input_tiles_ref(x, ph, pw, TH, TW, m):
    """(N, C, TH, TW, m + 2, m + 2): the input tile of every m x m output tile, from the zero-padded x."""
    N, C, H, W = x.shape
    r = m + 2
    xp = np.zeros((N, C, m * TH + 2, m * TW + 2), dtype=x.dtype)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    d = np.empty((N, C, TH, TW, r, r), dtype=x.dtype)
    for i in range(r):
        for j in range(r):
            d[..., i, j] = xp[:, :, i:i + m * TH:m, j:j + m * TW:m]
    return d


def winograd_forward_ref(x, w, b, ph, pw, relu=False, m=2, residual=None):
    """Plain NumPy :func:`winograd_forward`: the same 3x3 convolution (cross-correlation) as
    ``conv.conv2d_forward_ref``, computed another way. The output is cut into m x m tiles; each
    needs the (m + 2) x (m + 2) input tile d around it. In the transformed space a convolution is a
    product of entries: V = B^T d B (every input tile), U = G g G^T (every 3x3 kernel g), then
    M = sum over input channels of U * V entry by entry, and the output tile is A^T M A. For m = 2
    that is 16 multiplications per tile and channel instead of 36. Each step is one einsum below;
    reading ``conv2d_forward_ref`` (im2col) first makes this one easier."""
    N, C, H, W = x.shape
    O = w.shape[0]
    OH, OW, TH, TW = tiles(H, W, ph, pw, _check_m(m))
    bt, at = (a.astype(x.dtype) for a in MATRICES[m][::2])
    V = np.einsum("ik,nchwkl,jl->nchwij", bt, _input_tiles_ref(x, ph, pw, TH, TW, m), bt)
    U = weight_tiles_ref(w, m)
    M = np.einsum("ocij,nchwij->nohwij", U, V)
    y = np.einsum("ki,nohwij,lj->nohkwl", at, M, at).reshape(N, O, m * TH, m * TW)[:, :, :OH, :OW]
    y = y + b[:, None, None] if b is not None else y
    y = y + residual if residual is not None else y
    return (np.maximum(y, 0) if relu else y).astype(x.dtype)


def weight_tiles_ref(w, m=2):
    """Plain NumPy :func:`weight_tiles`, as (O, C, m + 2, m + 2): G g G^T, computed in float64."""
    g = MATRICES[m][1]
    return np.einsum("ik,ockl,jl->ocij", g, w.astype(np.float64), g).astype(w.dtype)


def winograd_backward_ref(x, w, dy, ph, pw, need_dx=True, need_dw=True, m=2):
    """Plain NumPy :func:`winograd_backward`: each step is the adjoint of a step of the forward."""
    N, C, H, W = x.shape
    O = w.shape[0]
    OH, OW, TH, TW = tiles(H, W, ph, pw, _check_m(m))
    bt, g, at = MATRICES[m]
    bt, at = bt.astype(x.dtype), at.astype(x.dtype)
    dyp = np.zeros((N, O, m * TH, m * TW), dtype=x.dtype)
    dyp[:, :, :OH, :OW] = dy
    dY = dyp.reshape(N, O, TH, m, TW, m).transpose(0, 1, 2, 4, 3, 5)          # (N, O, TH, TW, m, m)
    dM = np.einsum("ki,nohwkl,lj->nohwij", at, dY, at)                           # A dY A^T
    dx = dw = None
    if need_dw:
        V = np.einsum("ik,nchwkl,jl->nchwij", bt, _input_tiles_ref(x, ph, pw, TH, TW, m), bt)
        dU = np.einsum("nohwij,nchwij->ocij", dM, V)
        dw = np.einsum("ki,ockl,lj->ocij", g, dU.astype(np.float64), g).astype(x.dtype)  # G^T dU G
    if need_dx:
        dV = np.einsum("ocij,nohwij->nchwij", weight_tiles_ref(w, m), dM)
        dd = np.einsum("ki,nchwkl,lj->nchwij", bt, dV, bt)                        # B dV B^T
        dxp = np.zeros((N, C, m * TH + 2, m * TW + 2), dtype=x.dtype)
        for i in range(m + 2):
            for j in range(m + 2):
                dxp[:, :, i:i + m * TH:m, j:j + m * TW:m] += dd[..., i, j]
        dx = dxp[:, :, ph:ph + H, pw:pw + W].copy()
    return dx, dw, dy.sum(axis=(0, 2, 3))
