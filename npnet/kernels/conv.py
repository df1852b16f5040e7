"""Fused 2-D convolution (im2col + GEMM per image), its plain NumPy reference, and the choice between
it and Winograd (``winograd.py``) for each layer shape.

Shapes: x (N, C, H, W), w (O, C, kh, kw), b (O,) or None, y / dy (N, O, OH, OW); K = C*kh*kw, P = OH*OW.

Design (measured on a 2-core AVX-512 AMD EPYC (Zen 4), float32, Conv2d(64, 128, 3, padding=1), batch 128):
- Workers over the batch, each taking one contiguous chunk of images (a serial kernel per worker, run
  on T threads by ``_threads.run_workers``: as a ``prange`` it compiled ~3x longer). Per image: im2col
  into that worker's (K, P) buffer, then one GEMM straight into ``y[n]`` (no temporary, no transpose).
  A per-image GEMM (128x576 @ 576x1024) already runs near the single-core peak (~90 GFLOP/s here) and
  the column buffer (2.3 MB) stays in cache. Forward, measured: this 115 ms; one big GEMM with NumPy's
  2-thread BLAS on a full-batch (K, N*P) column matrix plus the transpose back to NCHW 233 ms; a
  hand-written Numba GEMM (i-k-j loops, fastmath) in place of ``np.dot`` 340 ms.
- The GEMMs are ``blas.gemm``: SciPy's OpenBLAS, as ``np.dot`` inside ``@njit`` would call it, set to one
  thread around each call (``_threads``) (two BLAS threads per Numba worker doubled the time: the pools
  fight over 2 cores); with its ``beta`` the weight and bias gradients are added in BLAS's own pass.
- Column buffers come from a pool (``_threads.take_buffer``) and are reused across calls and layers.
- Backward: dw^T = sum_n cols[n] @ dy[n]^T is accumulated (by the GEMM, beta = 1) per thread into its own
  (K, O) block and the blocks are summed at the end (no locks, and the sum order is fixed, so results do not depend on
  scheduling); computing dw^T rather than dw = dy[n] @ cols^T made that GEMM 15% faster (1.54 vs 1.80 ms
  per image). dx[n] = col2im(w^T @ dy[n]).
"""
import numpy as np

from ._jit import CACHE, njit
from .reference import reference_enabled
from ._threads import take_buffer, give_buffer, one_blas_thread, run_workers, workers_for
from .blas import gemm
from .im2col import im2col_image, col2im_image, im2col_ref, col2im_ref, out_size, as_float_array, fill
from .winograd import (winograd_forward, winograd_backward, winograd_forward_ref, winograd_backward_ref,
                       residual_array)

ALGORITHMS = ("im2col", "winograd", "winograd4")  # im2col (this file), Winograd F(2x2, 3x3), F(4x4, 3x3)
WINOGRAD_M = {"winograd": 2, "winograd4": 4}   # algorithm -> output tile size m of Winograd F(m x m, 3x3)
WINOGRAD_MIN_CHANNELS = 16


def conv_algorithm(C, O, kh, kw, sh, sw):
    """The kernel :func:`conv2d_forward` / :func:`conv2d_backward` pick for a layer: ``"winograd"``
    (F(2x2, 3x3), ``winograd.py``) for 3x3 stride-1 kernels with at least 16 input and output channels,
    else ``"im2col"`` (this file). Measured (benchmarks/README.md, per-convolution table): Winograd's
    forward + backward was faster on every 3x3 layer timed there except the first ones (3 input
    channels: GEMMs with K = 3); its backward alone lost on some (cnn-small's 32->64: 12.6 vs 11.9 ms)."""
    if (kh, kw, sh, sw) == (3, 3, 1, 1) and min(C, O) >= WINOGRAD_MIN_CHANNELS:
        return "winograd"
    return "im2col"


def _pick(algorithm, w, sh, sw):
    O, C, kh, kw = w.shape
    if algorithm is None:
        return conv_algorithm(C, O, kh, kw, sh, sw)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"conv2d: algorithm must be one of {ALGORITHMS} or None, got {algorithm!r}")
    if algorithm in WINOGRAD_M and (kh, kw, sh, sw) != (3, 3, 1, 1):
        raise ValueError(f"conv2d: {algorithm} needs a 3x3 kernel and stride 1, got kernel {(kh, kw)}, "
                         f"stride {(sh, sw)}")
    return algorithm


@njit(nogil=True, cache=CACHE)
def _conv_forward(t, T, x, w2, b, has_bias, relu, res, y, work, kh, kw, sh, sw, ph, pw, OH, OW):
    # worker t of T (``_threads.run_workers``), images t N / T .. (t + 1) N / T: x (N, C, H, W),
    # w2 (O, K), res (N, O, P) or (0, O, P), y (N, O, P), work (T, K, P): one column buffer per worker
    N = x.shape[0]
    O, K = w2.shape
    P = OH * OW
    yf, w2f = y.reshape(-1), w2.reshape(-1)
    cols = work[t]                                         # (K, P)
    for n in range(t * N // T, (t + 1) * N // T):
        im2col_image(x[n], cols, kh, kw, sh, sw, ph, pw, OH, OW)
        gemm(False, False, O, P, K, w2f, K, cols.reshape(-1), P, 0.0, yf[n * O * P:], P)  # y[n] = w2 @ cols
        yn = y[n]                                          # (O, P)
        if res.size:                                       # y[n] is still in cache: bias, residual, clamp now
            for o in range(O):
                yo, ro, bo = yn[o], res[n, o], b[o]
                for p in range(P):
                    v = yo[p] + bo + ro[p]
                    yo[p] = (0 if v < 0 else v) if relu else v
        elif relu:
            for o in range(O):
                yo, bo = yn[o], b[o]
                for p in range(P):
                    v = yo[p] + bo
                    yo[p] = 0 if v < 0 else v                  # NaN stays NaN, as np.maximum
        elif has_bias:                                     # loops, not yn[o] += b[o]: an array expression
            for o in range(O):                             # compiles Numba's broadcasting and its error
                yo, bo = yn[o], b[o]                       # messages (~2 s of string functions)
                for p in range(P):
                    yo[p] += bo


@njit(nogil=True, cache=CACHE)
def _conv_backward(t, T, x, w2, dy, dx, need_dx, need_dw, dwt_parts, db_parts, cols_work, dcols_work, ones,
                   kh, kw, sh, sw, ph, pw, OH, OW):
    # worker t of T, images t N / T .. (t + 1) N / T: x (N, C, H, W), w2 (O, K), dy (N, O, P),
    # dx (N, C, H, W); the worker's own dwt_parts[t] (K, O), db_parts[t] (O,), cols_work[t] /
    # dcols_work[t] (K, P); ones (P,)
    N = x.shape[0]
    O, K = w2.shape
    P = OH * OW
    dyf, w2f = dy.reshape(-1), w2.reshape(-1)
    cols, dwt, dbt = cols_work[t], dwt_parts[t].reshape(-1), db_parts[t]
    fill(dwt, 0)
    fill(dbt, 0)
    for n in range(t * N // T, (t + 1) * N // T):
        dyn = dyf[n * O * P:]                              # dy[n] (O, P) from here
        if need_dw:  # a frozen weight (requires_grad False) skips the im2col and this GEMM
            im2col_image(x[n], cols, kh, kw, sh, sw, ph, pw, OH, OW)
            # dw^T (K, O) += cols @ dy[n]^T: measured 15% faster than dw = dy[n] @ cols^T (O, K)
            gemm(False, True, K, O, P, cols.reshape(-1), P, dyn, P, 1.0, dwt, O)
        gemm(False, False, O, 1, P, dyn, P, ones, 1, 1.0, dbt, 1)  # db += dy[n] @ 1
        if need_dx:
            dcols = dcols_work[t]                          # (K, P) = w2^T @ dy[n]
            gemm(True, False, K, P, O, w2f, K, dyn, P, 0.0, dcols.reshape(-1), P)
            dxn = dx[n]
            fill(dxn, 0)
            col2im_image(dcols, dxn, kh, kw, sh, sw, ph, pw, OH, OW)


def conv2d_forward(x, w, b, sh, sw, ph, pw, algorithm=None, relu=False, residual=None):
    """Convolution (cross-correlation, like PyTorch) with zero padding; ``residual`` (the output's
    shape) is added and ``relu=True`` returns ``max(y, 0)`` instead, both in the same pass that adds
    the bias (the fused modules of ``nn/fused.py``: a convolution followed by a ReLU, a ResNet
    block's ending).

    Shape: x (N, C, H, W), w (O, C, kh, kw), b (O,) or None -> y (N, O, OH, OW), dtype of x.
    ``algorithm``: ``"im2col"`` (this file), ``"winograd"`` (F(2x2, 3x3)), ``"winograd4"``
    (F(4x4, 3x3)), or None for :func:`conv_algorithm`'s fixed rule.
    """
    if reference_enabled():
        return conv2d_forward_ref(x, w, b, sh, sw, ph, pw, algorithm, relu, residual)
    name = _pick(algorithm, w, sh, sw)
    x = as_float_array(x)
    w = np.ascontiguousarray(w, dtype=x.dtype)
    with one_blas_thread():
        if name in WINOGRAD_M:
            return winograd_forward(x, w, b, ph, pw, relu, m=WINOGRAD_M[name], residual=residual)
        return _im2col_forward(x, w, b, sh, sw, ph, pw, relu, residual)


def _im2col_forward(x, w, b, sh, sw, ph, pw, relu, residual=None):
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    OH, OW = out_size(H, kh, sh, ph), out_size(W, kw, sw, pw)
    K, P, T = C * kh * kw, OH * OW, workers_for(N)
    has_bias = b is not None
    b = np.ascontiguousarray(b, dtype=x.dtype) if has_bias else np.zeros(O, dtype=x.dtype)
    y = np.empty((N, O, P), dtype=x.dtype)
    res = residual_array(residual, y.reshape(N, O, OH, OW)).reshape(-1, O, P) if residual is not None else \
        np.empty((0, O, P), dtype=x.dtype)
    buf = take_buffer(T * K * P, x.dtype)
    try:
        run_workers(_conv_forward, T, x, w.reshape(O, K), b, has_bias, bool(relu), res, y,
                    buf[:T * K * P].reshape(T, K, P), kh, kw, sh, sw, ph, pw, OH, OW)
    finally:
        give_buffer(buf)
    return y.reshape(N, O, OH, OW)


def conv2d_backward(x, w, dy, sh, sw, ph, pw, need_dx=True, need_dw=True, algorithm=None):
    """Gradients of :func:`conv2d_forward`; ``algorithm`` as there.

    Shape: x (N, C, H, W), w (O, C, kh, kw), dy (N, O, OH, OW)
    -> dx (N, C, H, W) or None if not ``need_dx``, dw (O, C, kh, kw) or None if not ``need_dw``,
    db (O,); dtype of x.
    """
    if reference_enabled():
        return conv2d_backward_ref(x, w, dy, sh, sw, ph, pw, need_dx, need_dw, algorithm)
    name = _pick(algorithm, w, sh, sw)
    x = as_float_array(x)
    w = np.ascontiguousarray(w, dtype=x.dtype)
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    with one_blas_thread():
        if name in WINOGRAD_M and (need_dx or need_dw):
            return winograd_backward(x, w, dy, ph, pw, need_dx, need_dw, m=WINOGRAD_M[name])
        return _im2col_backward(x, w, dy, sh, sw, ph, pw, need_dx, need_dw)


def _im2col_backward(x, w, dy, sh, sw, ph, pw, need_dx, need_dw):
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    OH, OW = dy.shape[2], dy.shape[3]
    K, P, T = C * kh * kw, OH * OW, workers_for(N)
    dx = np.empty((N, C, H, W) if need_dx else (1, 1, 1, 1), dtype=x.dtype)
    # one pooled buffer carved into per-thread blocks: cols, dcols (T, K, P); dw^T parts (T, K, O);
    # db parts (T, O)
    shapes = [(T, K, P), (T, K, P) if need_dx else (T, 0, 0), (T, K, O), (T, O)]
    sizes = [int(np.prod(s)) for s in shapes]
    buf = take_buffer(sum(sizes), x.dtype)
    ends = np.cumsum(sizes)
    cols, dcols, dwt_parts, db_parts = (buf[e - n:e].reshape(s) for s, n, e in zip(shapes, sizes, ends))
    try:
        run_workers(_conv_backward, T, x, w.reshape(O, K), dy.reshape(N, O, P), dx, bool(need_dx), bool(need_dw),
                    dwt_parts, db_parts, cols, dcols if need_dx else cols, np.ones(P, dtype=x.dtype), kh, kw, sh,
                    sw, ph, pw, OH, OW)
        dw = np.ascontiguousarray(dwt_parts.sum(axis=0).T).reshape(w.shape) if need_dw else None
        db = db_parts.sum(axis=0)
    finally:
        give_buffer(buf)
    return (dx if need_dx else None), dw, db


def conv2d_forward_ref(x, w, b, sh, sw, ph, pw, algorithm=None, relu=False, residual=None):
    """Plain NumPy :func:`conv2d_forward`, the one to read first: im2col lays every receptive field
    of every image out as a column (``im2col_ref``: (N, K, P), K = C kh kw, P = OH OW), and the
    convolution is then one matrix product per image, w (O, K) @ cols (K, P). Where ``algorithm``
    is Winograd, its NumPy reference instead (``winograd.winograd_forward_ref``)."""
    name = _pick(algorithm, w, sh, sw)
    if name in WINOGRAD_M:
        return winograd_forward_ref(x, w, b, ph, pw, relu, m=WINOGRAD_M[name], residual=residual)
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    OH, OW = out_size(H, kh, sh, ph), out_size(W, kw, sw, pw)
    cols = im2col_ref(x, kh, kw, sh, sw, ph, pw)                  # (N, K, P)
    y = np.matmul(w.reshape(O, -1), cols)                         # (N, O, P)
    if b is not None:
        y += b[:, None]
    if residual is not None:
        y += residual.reshape(N, O, -1)
    if relu:
        y = np.maximum(y, 0)
    return y.reshape(N, O, OH, OW)


def conv2d_backward_ref(x, w, dy, sh, sw, ph, pw, need_dx=True, need_dw=True, algorithm=None):
    """Plain NumPy :func:`conv2d_backward` (Winograd's NumPy reference where ``algorithm`` picks it)."""
    name = _pick(algorithm, w, sh, sw)
    if name in WINOGRAD_M:
        return winograd_backward_ref(x, w, dy, ph, pw, need_dx, need_dw, m=WINOGRAD_M[name])
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    dy = dy.reshape(N, O, -1)                                     # (N, O, P)
    dw = None
    if need_dw:
        cols = im2col_ref(x, kh, kw, sh, sw, ph, pw)              # (N, K, P)
        dw = np.tensordot(dy, cols, axes=([0, 2], [0, 2])).reshape(w.shape)  # sum over images, positions
    db = dy.sum(axis=(0, 2))
    dx = None
    if need_dx:
        dcols = np.matmul(w.reshape(O, -1).T, dy)                 # (N, K, P)
        dx = col2im_ref(dcols, C, H, W, kh, kw, sh, sw, ph, pw)
    return dx, dw, db
