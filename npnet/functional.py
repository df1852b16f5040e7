"""Stateless math, as ``torch.nn.functional``: softmax / log_softmax, output sizes, ``pair``, and
``conv2d_matrix`` (a convolution written as one matrix product, ``y = A x``).

Imports nothing from the layers: ``npnet.nn``, the losses and the models build on it.
"""
import numpy as np


def softmax(x, axis=1):
    """exp(x) / sum(exp(x)) along ``axis``, shifted by the max so that large logits stay finite.
    Keeps ``x``'s dtype."""
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=1):
    """log(softmax(x)) along ``axis`` without overflow (values <= 0). Keeps ``x``'s dtype."""
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def conv_output_size(size, kernel, stride=1, padding=0):
    """Output length along one axis of a convolution or pooling window:
    ``(size + 2 padding - kernel) // stride + 1``; a stride that does not tile the input drops
    the rest, as in PyTorch."""
    return (size + 2 * padding - kernel) // stride + 1


def pair(value, name="value", label="pair"):
    """(a, b) from an int or a pair of ints (kernel_size, stride, padding); ``label`` names the
    caller in the error."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, (int, np.integer)) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f"{label}: {name} must be an int or a pair of ints, got {value!r}")


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
    OH, OW = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    o, oy, ox, c, i, j = np.meshgrid(np.arange(O), np.arange(OH), np.arange(OW),
                                     np.arange(C), np.arange(kh), np.arange(kw), indexing="ij")
    r, q = oy * sh - ph + i, ox * sw - pw + j  # input row/column each tap reads
    inside = (r >= 0) & (r < H) & (q >= 0) & (q < W)
    rows = ((o * OH + oy) * OW + ox)[inside]
    cols = ((c * H + r) * W + q)[inside]
    A = np.zeros((O * OH * OW, C * H * W), dtype=weight.dtype)
    A[rows, cols] = weight[o[inside], c[inside], i[inside], j[inside]]
    return A
