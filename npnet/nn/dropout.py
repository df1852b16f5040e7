"""Inverted dropout: zero each input with probability p and scale the rest by 1/(1-p) in training,
so that eval mode is the identity and needs no rescaling."""

from .. import init
from ._checks import check_grad, check_input
from .module import Module


class Dropout(Module):
    """Inverted dropout with probability ``p``, as ``torch.nn.Dropout``.

    In training, each input is zeroed with probability ``p`` and the others are scaled by
    ``1 / (1 - p)``; in eval mode the layer is the identity.

    Args:
        p (float): the probability of zeroing an element, in [0, 1) (default 0.5).
        rng: a ``numpy.random.Generator``, an int seed or None: the generator of the masks; None uses
            npnet's default generator (seeded by ``npnet.manual_seed``).

    Shape:
        input: any ``(N, *)``.
        output: same as the input.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> drop = nn.Dropout(0.5, rng=0)
        >>> y = drop(np.ones((2, 4), np.float32))
        >>> sorted(set(y.ravel().tolist())) in ([0.0, 2.0], [0.0], [2.0])
        True
        >>> drop.eval()(np.ones((2, 4), np.float32)).tolist()
        [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    """

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
