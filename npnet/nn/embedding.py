"""Embedding: a lookup table of vectors indexed by integer token ids, as ``torch.nn.Embedding``."""
import numpy as np

from .. import init
from ..kernels.embedding import embedding_backward
from ._checks import check_grad
from .module import Module, Parameter


class Embedding(Module):
    """``weight[ids]``: row ``i`` of ``weight`` is the vector of token ``i``.

    weight (num_embeddings, embedding_dim), initialised N(0, 1) as PyTorch. ``padding_idx``
    (negative counts from the end, as PyTorch): that row starts at zero and gets no gradient, so
    padding tokens stay the zero vector. Ids outside [0, num_embeddings) are a ValueError.
    Backward adds ``dout`` into the rows that were looked up (``np.add.at``: a token used twice
    gets both contributions) and returns None: integer ids have no gradient.

    Args:
        num_embeddings (int): the number of ids (the vocabulary size).
        embedding_dim (int): the size of each vector.
        padding_idx (int or None): the id whose row stays zero and gets no gradient (default None).
        rng: a ``numpy.random.Generator``, an int seed or None: the generator of the
            initialisation; None uses npnet's default generator (seeded by ``npnet.manual_seed``).
        dtype: the weight's dtype, default ``np.float32``.

    Shape:
        input: integer ids of any shape ``(*)``.
        output: ``(*, embedding_dim)``.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> emb = nn.Embedding(100, 16, padding_idx=0, rng=0)
        >>> out = emb(np.array([[0, 5, 7], [7, 7, 0]]))
        >>> out.shape, float(abs(out[0, 0]).sum())  # id 0 is padding: the zero vector
        ((2, 3, 16), 0.0)
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, rng=None, dtype=np.float32):
        super().__init__()
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        if padding_idx is not None:
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"Embedding: padding_idx must be within num_embeddings "
                                 f"({self.num_embeddings}), got {padding_idx}")
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        self.weight = Parameter(np.zeros((self.num_embeddings, self.embedding_dim), dtype=dtype))
        init.normal_(self.weight, rng=rng)
        if padding_idx is not None:
            self.weight.data[padding_idx] = 0

    def extra_repr(self):
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"

    def _check_ids(self, ids):
        if not isinstance(ids, np.ndarray):
            raise TypeError(f"{self._label()}: expected a numpy.ndarray of token ids, got {type(ids).__name__}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"{self._label()}: expected integer token ids, got dtype {ids.dtype}")
        bad = (ids < 0) | (ids >= self.num_embeddings)
        if bad.any():
            raise ValueError(f"{self._label()}: token ids must be in [0, {self.num_embeddings}), "
                             f"got {ids[bad].flat[0]} ({int(bad.sum())} out of range)")

    def forward(self, ids):
        self._check_ids(ids)
        self.cache = ids
        return self.weight.data[ids]  # (*, D), a copy (fancy indexing)

    def backward(self, dout, input_grad=True):
        ids = self._saved()
        check_grad(self, dout, ids.shape + (self.embedding_dim,), self.weight.dtype)
        self.cache = None
        if self.weight.requires_grad:
            flat_ids, flat_dout = ids.reshape(-1), dout.reshape(-1, self.embedding_dim)
            if self.padding_idx is not None:
                keep = flat_ids != self.padding_idx
                flat_ids, flat_dout = flat_ids[keep], flat_dout[keep]
            embedding_backward(flat_ids, flat_dout, self.weight.grad)  # np.add.at, as a kernel
        return None
