"""Stateless helpers. ``conv2d_matrix`` writes a convolution as one matrix product, ``y = A x``."""
import numpy as np

from .nn._checks import pair


def conv2d_matrix(weight, input_shape, stride=1, padding=0):
    """The matrix ``A`` with ``conv2d(x, weight).ravel() == A @ x.ravel()`` for one input ``x``.

    weight: (O, C, kh, kw); input_shape: (C, H, W). Returns A of shape (O*OH*OW, C*H*W), rows and
    columns in C order. Zero padding contributes nothing, so padded taps are simply left out:
    entry [(o, oy, ox), (c, r, q)] is w[o, c, r - oy*sh + ph, q - ox*sw + pw] when that tap exists.
    For teaching and as a test oracle; it is dense, so keep the shapes small.
    """
    weight = np.asarray(weight)
    if weight.ndim != 4:
        raise ValueError(f"conv2d_matrix: expected weight of shape (O, C, kh, kw), got {weight.shape}")
    if len(input_shape) != 3 or input_shape[0] != weight.shape[1]:
        raise ValueError(f"conv2d_matrix: expected input_shape ({weight.shape[1]}, H, W), got {tuple(input_shape)}")
    (sh, sw), (ph, pw) = pair(stride, "stride", "conv2d_matrix"), pair(padding, "padding", "conv2d_matrix")
    O, C, kh, kw = weight.shape
    _, H, W = input_shape
    OH, OW = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    o, oy, ox, c, i, j = np.meshgrid(np.arange(O), np.arange(OH), np.arange(OW),
                                     np.arange(C), np.arange(kh), np.arange(kw), indexing="ij")
    r, q = oy * sh - ph + i, ox * sw - pw + j  # input row/column each tap reads
    inside = (r >= 0) & (r < H) & (q >= 0) & (q < W)
    rows = ((o * OH + oy) * OW + ox)[inside]
    cols = ((c * H + r) * W + q)[inside]
    A = np.zeros((O * OH * OW, C * H * W), dtype=weight.dtype)
    A[rows, cols] = weight[o[inside], c[inside], i[inside], j[inside]]
    return A
