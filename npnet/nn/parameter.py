"""Parameter: a trainable array and its accumulated gradient."""
import numpy as np


class Parameter:
    """A trainable array and its accumulated gradient (same shape, same dtype).

    ``requires_grad`` (default True): False freezes it (no gradient, no optimizer update).
    """

    def __init__(self, data, requires_grad=True):
        data = np.asarray(data)
        if not np.issubdtype(data.dtype, np.floating):
            raise TypeError(f"Parameter: expected a floating-point array, got dtype {data.dtype}")
        self.data = data
        self.grad = np.zeros_like(data)
        self.requires_grad = bool(requires_grad)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def zero_grad(self):
        self.grad[...] = 0

    def __repr__(self):
        frozen = "" if self.requires_grad else ", requires_grad=False"
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype}{frozen})"
