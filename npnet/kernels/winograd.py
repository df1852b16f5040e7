"""3x3 stride-1 convolution by Winograd F(2x2, 3x3), forward and backward, and plain NumPy references.

Shapes: x (N, C, H, W), w (O, C, 3, 3), b (O,) or None, y / dy (N, O, OH, OW), OH = H + 2 ph - 2.
Same results as :func:`conv.conv2d_forward` / ``conv2d_backward`` with kernel 3x3 and stride 1, up to
rounding: 16 products per 2x2 output tile instead of 36, so the GEMMs do 2.25x fewer multiplications.

Algorithm (Lavin & Gray 2016; the tile transforms are in ``_wino_tiles`` and ``_wino_grad_tiles``): per
2x2 output tile and input channel, V = B^T d B (4x4, from the 4x4 input tile d); per kernel,
U = G g G^T (4x4). For each of the 16 positions a, M[a] (O x T) = U[a] (O x C) @ V[a] (C x T) over T tiles: one GEMM per position and group
of images. The output tile is A^T M A (2x2), plus the bias. Backward: dM = A dY A^T per tile; then
dU[a] = sum over tiles of dM[a] @ V[a]^T, dw = G^T dU G; dV[a] = U[a]^T @ dM[a] and dx = the adjoint of
the input transform (B dV B^T per tile, overlapping tiles summed). Threads: ``prange`` over groups of
whole images, each worker with its own buffers and its own dU, summed at the end in a fixed order.

Float32 error against the exact (float64) convolution, measured (batch 4, random normal x and dy,
Kaiming-scaled w, C = O = 16 on 16x16 and 32x32, C = O = 64 on 8x8 and 16x16; max abs error and the
same divided by max |exact|): y 1.0-1.9e-6 abs, 1.6-3.1e-7 relative (the direct float32 convolution:
2.1-3.3e-6, 3.7-5.6e-7, it sums 9C products per output where Winograd sums C); dx 1.1-1.8e-6,
1.8-2.6e-7 (direct 0.8-1.3e-6, 1.3-1.8e-7); dw 1.8e-5-1.5e-4 abs, 2.7-7.0e-7 relative (direct
1.3-6.8e-5, 1.9-3.3e-7). ``tests/test_kernels_winograd.py`` asserts relative errors below 1e-6 and at
most 4x the direct convolution's. In float64 both agree with each other to ~1e-15 relative.
"""
import numpy as np
from numba import njit, prange, get_num_threads

from ._jit import CACHE
from ._threads import take_buffer, give_buffer, one_blas_thread
from ._wino_tiles import plane_sizes, input_tiles, output_tiles
from ._wino_grad_tiles import dy_tiles, input_tiles_adjoint
from .im2col import as_float_array
from .matmul import matmul

# transform matrices (exact in binary floating point)
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def tiles(H, W, ph, pw):
    """(OH, OW, TH, TW): output size and 2x2 tiles per column and row (a tile row also holds one junk tile)."""
    OH, OW = H + 2 * ph - 2, W + 2 * pw - 2
    return OH, OW, (OH + 1) // 2, (OW + 1) // 2


GROUP_TILE_CHANNELS = 16384


def _groups(N, TT, C, O):
    """(threads, ``per_group`` images per group; ``G`` is the kernel transform): a group holds about
    GROUP_TILE_CHANNELS / (C + O) tiles (its V and M,
    16 (C + O) floats per tile, fill ~1 MB in float32), and the groups split evenly over the threads.
    Measured on one core, batch 128, against 8192: 5-15% faster on 8x8 images (more images per GEMM)
    and in the backward of 16x16 ones, the same elsewhere; 32768 was 3-8% slower on 32x32 images."""
    T = max(1, min(get_num_threads(), N))
    per_group = max(1, (GROUP_TILE_CHANNELS // (C + O)) // TT)
    per_thread = -(-N // T)
    groups_per_thread = -(-per_thread // per_group)
    return T, -(-per_thread // groups_per_thread)


GG = np.kron(G, G)     # (16, 9): GG[4i + j, 3k + l] = G[i, k] G[j, l], so vec(G g G^T) = GG @ vec(g)
GG_T = np.ascontiguousarray(GG.T)


def weight_tiles(w):
    """U (16, O, C) = G g G^T for every 3x3 kernel g of w (O, C, 3, 3), in w's dtype (computed in float64).

    One (16 x 9) @ (9 x OC) product on Numba's pool (``matmul``): einsum spent ~0.2 ms a call choosing
    its path; NumPy's ``@`` would wake NumPy's own BLAS threads, which then spin next to the kernels.
    """
    O, C = w.shape[:2]
    U = matmul(GG, w.reshape(O * C, 9).T.astype(np.float64))
    return np.ascontiguousarray(U.reshape(16, O, C), dtype=w.dtype)


def _carve(buf, sizes):
    """Consecutive 1-D pieces of ``buf`` with the given sizes."""
    ends = np.cumsum(sizes)
    return [buf[e - n:e] for n, e in zip(sizes, ends)]


def _fwd_sizes(C, O, TH, TW, GT):
    """Per-thread buffer pieces of the forward: pad, z, s, yp, V, M."""
    half, nz = plane_sizes(C, TH, TW)
    R = TW + 1
    return [2 * half, 8 * (nz + 4), 8 * TH * R, 4 * TH * R, 16 * C * GT, 16 * O * GT]


@njit(parallel=True, cache=CACHE)
def _forward(x, U, b, relu, y, work, sizes, per_group, ph, pw, TH, TW):
    # x (N, C, H, W), U (16, O, C), b (O,), y (N, O, OH, OW); work (T, sum(sizes)): one buffer per thread
    N, C, H, W = x.shape
    O, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    T = work.shape[0]
    TT = TH * (TW + 1)
    xf, yf = x.reshape(-1), y.reshape(-1)
    for t in prange(T):
        e = np.cumsum(sizes)
        buf = work[t]
        pad, z, s, yp = buf[:e[0]], buf[e[0]:e[1]], buf[e[1]:e[2]], buf[e[2]:e[3]]
        pad[:] = 0                                         # the padding stays zero: only the image is copied in
        n_lo, n_hi = t * N // T, (t + 1) * N // T
        for n0 in range(n_lo, n_hi, per_group):
            n1 = min(n_hi, n0 + per_group)
            cnt = (n1 - n0) * TT
            V = buf[e[3]:e[3] + 16 * C * cnt]
            M = buf[e[4]:e[4] + 16 * O * cnt]
            for n in range(n0, n1):
                input_tiles(xf, n * C * H * W, C, H, W, ph, pw, TH, TW, pad, z, V, (n - n0) * TT, cnt)
            V3, M3 = V.reshape((16, C, cnt)), M.reshape((16, O, cnt))
            for a in range(16):
                np.dot(U[a], V3[a], M3[a])
            for n in range(n0, n1):
                output_tiles(M, (n - n0) * TT, cnt, O, OH, OW, TH, TW, b, yf, n * O * OH * OW, s, yp, relu)


@one_blas_thread
def winograd_forward(x, w, b, ph, pw, relu=False):
    """Convolution with a 3x3 kernel, stride 1, zero padding (ph, pw), by Winograd F(2x2, 3x3);
    ``relu=True`` clamps the output at 0 in the output transform (fused inference).

    Shape: x (N, C, H, W), w (O, C, 3, 3), b (O,) or None -> y (N, O, H + 2ph - 2, W + 2pw - 2), dtype of x.
    """
    x = as_float_array(x)
    w = np.ascontiguousarray(w, dtype=x.dtype)
    N, C, H, W = x.shape
    O = w.shape[0]
    OH, OW, TH, TW = tiles(H, W, ph, pw)
    TT = TH * (TW + 1)
    T, per_group = _groups(N, TT, C, O)
    b = np.zeros(O, dtype=x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    y = np.empty((N, O, OH, OW), dtype=x.dtype)
    sizes = np.array(_fwd_sizes(C, O, TH, TW, per_group * TT), dtype=np.int64)
    total = int(sizes.sum())
    buf = take_buffer(T * total, x.dtype)
    try:
        _forward(x, weight_tiles(w), b, bool(relu), y, buf[:T * total].reshape(T, total), sizes, per_group, ph, pw,
                 TH, TW)
    finally:
        give_buffer(buf)
    return y


def _bwd_sizes(C, O, TH, TW, GT, P):
    """Per-thread buffer pieces of the backward: pad, dpad, z, dyp, V (also dV), dM, tmp dU, ones."""
    half, nz = plane_sizes(C, TH, TW)
    R = TW + 1
    return [2 * half, 2 * half, 8 * (nz + 4), 10 * TH * R, 16 * C * GT, 16 * O * GT, 16 * O * C, P]


@njit(parallel=True, cache=CACHE)
def _backward(x, U, UT, dy, dx, need_dx, need_dw, dU_parts, db_parts, work, sizes, per_group, ph, pw,
              TH, TW):
    # x (N, C, H, W), U (16, O, C), UT (16, C, O), dy (N, O, OH, OW), dx (N, C, H, W) or dummy;
    # per thread t: dU_parts[t] (16, O, C), db_parts[t] (O,), work[t] (sum(sizes),)
    N, C, H, W = x.shape
    O, OH, OW = dy.shape[1], dy.shape[2], dy.shape[3]
    T = work.shape[0]
    TT = TH * (TW + 1)
    xf, dyf, dxf = x.reshape(-1), dy.reshape(-1), dx.reshape(-1)
    for t in prange(T):
        e = np.cumsum(sizes)
        buf = work[t]
        pad, dpad, z, dyp = buf[:e[0]], buf[e[0]:e[1]], buf[e[1]:e[2]], buf[e[2]:e[3]]
        tmp = buf[e[5]:e[6]].reshape((16, O, C))
        ones = buf[e[6]:e[7]]
        pad[:] = 0
        dyp[:] = 0
        ones[:] = 1
        dU, db = dU_parts[t], db_parts[t]
        dU[:] = 0
        db[:] = 0
        n_lo, n_hi = t * N // T, (t + 1) * N // T
        for n0 in range(n_lo, n_hi, per_group):
            n1 = min(n_hi, n0 + per_group)
            cnt = (n1 - n0) * TT
            V = buf[e[3]:e[3] + 16 * C * cnt]
            dM = buf[e[4]:e[4] + 16 * O * cnt]
            for n in range(n0, n1):
                dy_tiles(dyf, n * O * OH * OW, O, OH, OW, TH, TW, dyp, dM, (n - n0) * TT, cnt)
                db += np.dot(dy[n].reshape((O, OH * OW)), ones)
            V3, dM3 = V.reshape((16, C, cnt)), dM.reshape((16, O, cnt))
            if need_dw:     # a frozen weight skips the input transform and these products
                for n in range(n0, n1):
                    input_tiles(xf, n * C * H * W, C, H, W, ph, pw, TH, TW, pad, z, V, (n - n0) * TT, cnt)
                for a in range(16):
                    np.dot(dM3[a], V3[a].T, tmp[a])
                dU += tmp
            if need_dx:     # V's buffer now holds dV
                for a in range(16):
                    np.dot(UT[a], dM3[a], V3[a])
                for n in range(n0, n1):
                    input_tiles_adjoint(V, (n - n0) * TT, cnt, C, H, W, ph, pw, TH, TW, z, dpad, dxf, n * C * H * W)


@one_blas_thread
def winograd_backward(x, w, dy, ph, pw, need_dx=True, need_dw=True):
    """Gradients of :func:`winograd_forward`.

    Shape: x (N, C, H, W), w (O, C, 3, 3), dy (N, O, OH, OW) -> dx (N, C, H, W) or None if not
    ``need_dx``, dw (O, C, 3, 3) or None if not ``need_dw``, db (O,); dtype of x.
    """
    x = as_float_array(x)
    w = np.ascontiguousarray(w, dtype=x.dtype)
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    N, C, H, W = x.shape
    O = w.shape[0]
    OH, OW, TH, TW = tiles(H, W, ph, pw)
    TT = TH * (TW + 1)
    T, per_group = _groups(N, TT, C, O)
    U = weight_tiles(w)
    dx = np.empty((N, C, H, W) if need_dx else (1, 1, 1, 1), dtype=x.dtype)
    sizes = np.array(_bwd_sizes(C, O, TH, TW, per_group * TT, OH * OW), dtype=np.int64)
    total = int(sizes.sum())
    buf = take_buffer(T * (total + 16 * O * C + O), x.dtype)
    work, dU_parts, db_parts = _carve(buf, [T * total, T * 16 * O * C, T * O])
    try:
        _backward(x, U, np.ascontiguousarray(U.transpose(0, 2, 1)), dy, dx, need_dx, need_dw,
                  dU_parts.reshape(T, 16, O, C), db_parts.reshape(T, O), work.reshape(T, total), sizes, per_group,
                  ph, pw, TH, TW)
        db = db_parts.reshape(T, O).sum(axis=0)
        dw = None
        if need_dw:
            dU = dU_parts.reshape(T, 16, O * C).sum(axis=0).astype(np.float64)
            dw = np.ascontiguousarray(matmul(GG_T, dU).T.reshape(O, C, 3, 3), dtype=x.dtype)  # G^T dU G
    finally:
        give_buffer(buf)
    return (dx if need_dx else None), dw, db


# ------------------------------------------------------------------------------------ NumPy references

def _input_tiles_ref(x, ph, pw, TH, TW):
    """(N, C, TH, TW, 4, 4): the 4x4 input tile of every output tile, from the zero-padded x."""
    N, C, H, W = x.shape
    xp = np.zeros((N, C, 2 * TH + 2, 2 * TW + 2), dtype=x.dtype)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    d = np.empty((N, C, TH, TW, 4, 4), dtype=x.dtype)
    for i in range(4):
        for j in range(4):
            d[..., i, j] = xp[:, :, i:i + 2 * TH:2, j:j + 2 * TW:2]
    return d


def winograd_forward_ref(x, w, b, ph, pw, relu=False):
    """Plain NumPy :func:`winograd_forward` (same transforms, einsum for every step)."""
    N, C, H, W = x.shape
    O = w.shape[0]
    OH, OW, TH, TW = tiles(H, W, ph, pw)
    bt, g, at = (m.astype(x.dtype) for m in (BT, G, AT))
    V = np.einsum("ik,nchwkl,jl->nchwij", bt, _input_tiles_ref(x, ph, pw, TH, TW), bt)
    U = np.einsum("ik,ockl,jl->ocij", g, w, g)
    M = np.einsum("ocij,nchwij->nohwij", U, V)
    y = np.einsum("ki,nohwij,lj->nohkwl", at, M, at).reshape(N, O, 2 * TH, 2 * TW)[:, :, :OH, :OW]
    y = y + b[:, None, None] if b is not None else y
    return (np.maximum(y, 0) if relu else y).astype(x.dtype)


def winograd_backward_ref(x, w, dy, ph, pw, need_dx=True, need_dw=True):
    """Plain NumPy :func:`winograd_backward`: each step is the adjoint of a step of the forward."""
    N, C, H, W = x.shape
    O = w.shape[0]
    OH, OW, TH, TW = tiles(H, W, ph, pw)
    bt, g, at = (m.astype(x.dtype) for m in (BT, G, AT))
    dyp = np.zeros((N, O, 2 * TH, 2 * TW), dtype=x.dtype)
    dyp[:, :, :OH, :OW] = dy
    dY = dyp.reshape(N, O, TH, 2, TW, 2).transpose(0, 1, 2, 4, 3, 5)          # (N, O, TH, TW, 2, 2)
    dM = np.einsum("ki,nohwkl,lj->nohwij", at, dY, at)                           # A dY A^T
    dx = dw = None
    if need_dw:
        V = np.einsum("ik,nchwkl,jl->nchwij", bt, _input_tiles_ref(x, ph, pw, TH, TW), bt)
        dU = np.einsum("nohwij,nchwij->ocij", dM, V)
        dw = np.einsum("ki,ockl,lj->ocij", g, dU, g)                              # G^T dU G
    if need_dx:
        dV = np.einsum("ocij,nohwij->nchwij", np.einsum("ik,ockl,jl->ocij", g, w, g), dM)
        dd = np.einsum("ki,nchwkl,lj->nchwij", bt, dV, bt)                        # B dV B^T
        dxp = np.zeros((N, C, 2 * TH + 2, 2 * TW + 2), dtype=x.dtype)
        for i in range(4):
            for j in range(4):
                dxp[:, :, i:i + 2 * TH:2, j:j + 2 * TW:2] += dd[..., i, j]
        dx = dxp[:, :, ph:ph + H, pw:pw + W].copy()
    return dx, dw, dy.sum(axis=(0, 2, 3))
