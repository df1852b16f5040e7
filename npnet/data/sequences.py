"""Data as sequences: images read row by row (``Rows``, sequential Fashion-MNIST) and a text's
ids cut into (input, next-token target) windows (``token_windows``) for the ``DataLoader``."""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .transforms import Transform, _check_batch


class Rows(Transform):
    """(N, C, H, W) -> (N, H, C*W): each image as a sequence of its H rows, one step per row
    (the channels of a row side by side). Fashion-MNIST gives (N, 28, 28): 28 steps of 28 pixels,
    the sequential-MNIST benchmark. Keeps the dtype: run it after ``Normalize``."""

    @staticmethod
    def output_shape(image_shape):
        """(T, F) = (H, C*W) of one image of shape (C, H, W)."""
        if len(image_shape) != 3:
            raise ValueError(f"Rows: expected an image shape (C, H, W), got {tuple(image_shape)}")
        c, h, w = image_shape
        return (h, c * w)

    def __call__(self, x):
        N, C, H, W = _check_batch(x, "Rows")
        return x.transpose(0, 2, 1, 3).reshape(N, H, C * W)  # (N, H, C*W)


def token_windows(ids, seq_len, stride=None):
    """``(inputs, targets)``, both ``(N, seq_len)`` int64 read-only views of ``ids``: window ``i``
    starts at ``i * stride`` (default ``seq_len``: no overlap), and its targets are the same
    window one token later, the next token of every position. N = (len - seq_len - 1) // stride + 1.

    Give them to ``DataLoader(inputs, targets, batch_size, seed=...)``: batches are then shuffled
    by the seed and resumable from a checkpoint like images."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"token_windows: expected a 1-D array of integer ids, got shape {ids.shape}, "
                         f"dtype {ids.dtype}")
    stride = seq_len if stride is None else stride
    if int(seq_len) != seq_len or seq_len < 1 or int(stride) != stride or stride < 1:
        raise ValueError(f"token_windows: seq_len and stride must be ints >= 1, got {seq_len}, {stride}")
    if len(ids) < seq_len + 1:
        raise ValueError(f"token_windows: {len(ids)} ids make no window of seq_len + 1 = {seq_len + 1} "
                         "(an input and its next-token target); lower seq_len or give more text")
    windows = sliding_window_view(ids.astype(np.int64, copy=False), seq_len + 1)[::stride]  # (N, T+1)
    return windows[:, :-1], windows[:, 1:]
