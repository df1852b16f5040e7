"""Inverted dropout: zero each input with probability p and scale the rest by 1/(1-p) in training,
so that eval mode is the identity and needs no rescaling."""

from .. import init
from ._checks import check_grad, check_input
from .module import Module


class Dropout(Module):
    """Inverted dropout with probability ``p``, as ``torch.nn.Dropout``.

    Shape: any ``(N, *)`` -> same. ``rng``: a Generator or int seed for reproducible masks."""

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = init.get_rng(rng)

    def extra_repr(self):
        return f"p={self.p}"

    def forward(self, x):
        check_input(self, x, range(1, 33), "(N, *) floating")
        if not self.training or self.p == 0:
            self.cache = (None, x.shape, x.dtype)
            return x
        keep = self.rng.random(x.shape, dtype=x.dtype) >= self.p
        mask = keep * x.dtype.type(1 / (1 - self.p))  # (N, *) scaled mask, x's dtype
        self.cache = (mask, x.shape, x.dtype)
        return x * mask

    def backward(self, dout, input_grad=True):
        mask, shape, dtype = self._saved()
        check_grad(self, dout, shape, dtype)
        self.cache = None
        return dout if mask is None else dout * mask
