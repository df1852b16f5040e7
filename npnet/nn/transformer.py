"""TransformerEncoderLayer, TransformerEncoder (PyTorch's names and results) and a sinusoidal
PositionalEncoding."""
import copy
import math

import numpy as np

from .. import init
from ..kernels.elementwise import add_
from ._call import MultiInput
from ._checks import check_grad, check_input
from .activation import GELU, ReLU
from .container import Sequential
from .dropout import Dropout
from .layernorm import LayerNorm
from .linear import Linear
from .module import Module
from .multihead import MultiheadAttention


class TransformerEncoderLayer(MultiInput, Module):
    """Self-attention then a feed-forward block, each with a residual and a LayerNorm, as
    ``torch.nn.TransformerEncoderLayer``::

        norm_first=False (post-norm):  x = norm1(x + sa(x));  x = norm2(x + ff(x))
        norm_first=True  (pre-norm):   x = x + sa(norm1(x));  x = x + ff(norm2(x))
        sa(x) = dropout1(self_attn(x, x, x)),  ff(x) = dropout2(linear2(dropout(act(linear1(x)))))

    Children have PyTorch's names (self_attn, linear1, dropout, linear2, norm1, norm2, dropout1,
    dropout2; ``activation`` is a parameter-free child here, a function in PyTorch), so a PyTorch
    state dict loads as it is. ``forward(src, src_mask=None, src_key_padding_mask=None)``: masks
    as ``MultiheadAttention``'s (``attention.causal_mask(L)`` for a causal one). ``backward(dout)``
    returns d src.

    Args:
        d_model (int): the features of each position.
        nhead (int): attention heads; must divide d_model.
        dim_feedforward (int): the hidden size of the feed-forward block (default 2048).
        dropout (float): dropout probability of every dropout child, in training only (default 0.1).
        activation (str): ``'relu'`` (default) or ``'gelu'``.
        layer_norm_eps (float): the LayerNorms' eps (default 1e-5).
        batch_first (bool): src (N, L, d_model) instead of (L, N, d_model) (default False).
        norm_first (bool): pre-norm instead of post-norm, as above (default False).
        bias (bool): biases in the linear layers, the attention and the LayerNorms (default True).
        rng: a ``numpy.random.Generator``, an int seed or None: the generator of the
            initialisation and the dropout masks; None uses npnet's default generator.
        dtype: the parameters' dtype, default ``np.float32``.

    Shape:
        src: (L, N, d_model), or (N, L, d_model) with ``batch_first``.
        output: same as src.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, batch_first=True, rng=0)
        >>> src = np.zeros((2, 5, 16), np.float32)
        >>> layer(src).shape, layer.backward(np.ones((2, 5, 16), np.float32)).shape
        ((2, 5, 16), (2, 5, 16))
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True, rng=None,
                 dtype=np.float32):
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"TransformerEncoderLayer: activation must be 'relu' or 'gelu', got {activation!r}")
        rng = init.get_rng(rng)
        self.d_model, self.batch_first, self.norm_first = int(d_model), bool(batch_first), bool(norm_first)
        self.self_attn = MultiheadAttention(d_model, nhead, dropout, bias, batch_first, rng, dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias, rng, dtype)
        self.dropout = Dropout(dropout, rng)
        self.linear2 = Linear(dim_feedforward, d_model, bias, rng, dtype)
        self.norm1 = LayerNorm(d_model, layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1, self.dropout2 = Dropout(dropout, rng), Dropout(dropout, rng)
        self.activation = ReLU() if activation == "relu" else GELU()

    def extra_repr(self):
        return f"d_model={self.d_model}, norm_first={self.norm_first}"

    def _sa(self, x, mask, kpm):
        return self.dropout1(self.self_attn(x, x, x, attn_mask=mask, key_padding_mask=kpm, need_weights=False)[0])

    def _sa_backward(self, d):
        dq, dk, dv = self.self_attn.backward(self.dropout1.backward(d))
        dq += dk  # d query + d key + d value, in place: dq is a fresh array (sum() made two more)
        dq += dv
        return dq

    def _ff(self, x):
        flat = x.reshape(-1, self.d_model)  # Linear takes (N, features)
        out = self.linear2(self.dropout(self.activation(self.linear1(flat))))
        return self.dropout2(out.reshape(x.shape))

    def _ff_backward(self, d):
        g = self.dropout2.backward(d)
        g = self.linear2.backward(g.reshape(-1, self.d_model))
        g = self.linear1.backward(self.activation.backward(self.dropout.backward(g)))
        return g.reshape(d.shape)

    def forward(self, src, src_mask=None, src_key_padding_mask=None):
        """The encoded ``src`` (its shape); src_mask (L, L) or (N * nhead, L, L), src_key_padding_mask (N, L)."""
        check_input(self, src, (3,), "(N, L, d_model)" if self.batch_first else "(L, N, d_model)",
                    self.d_model, axis=2)
        x = src
        if self.norm_first:
            x = _residual(self._sa(self.norm1(x), src_mask, src_key_padding_mask), x)
            x = _residual(self._ff(self.norm2(x)), x)
        else:
            x = self.norm1(_residual(self._sa(x, src_mask, src_key_padding_mask), x))
            x = self.norm2(_residual(self._ff(x), x))
        self.cache = (src.shape, src.dtype)
        return x

    def backward(self, dout, input_grad=True):
        shape, dtype = self._saved()
        check_grad(self, dout, shape, dtype)
        self.cache = None
        # each residual: the gradient goes both ways and adds up (dx is needed by the
        # sublayers anyway, so input_grad only decides what is returned)
        if self.norm_first:
            d = _residual(self.norm2.backward(self._ff_backward(dout)), dout)
            d = _residual(self.norm1.backward(self._sa_backward(d)), d)
        else:
            d = self.norm2.backward(dout)
            d = _residual(self._ff_backward(d), d)
            d = self.norm1.backward(d)
            d = _residual(self._sa_backward(d), d)
        return d if input_grad else None


def _residual(fresh, other):
    """fresh + other, added into ``fresh``: an array a sublayer (or its backward) has just made and
    nobody else holds; on the worker threads (``kernels.add_``) where fresh is C-ordered."""
    return add_(fresh, other) if fresh.flags.c_contiguous else np.add(fresh, other, out=fresh)


class TransformerEncoder(MultiInput, Module):
    """``num_layers`` deep copies of ``encoder_layer`` applied in turn, then ``norm`` if given, as
    ``torch.nn.TransformerEncoder``; state-dict keys ``layers.0.self_attn.in_proj_weight``, ...,
    ``norm.weight``. Each copy's dropouts get their own generator (drawn from ``rng``), so the
    layers do not repeat one another's masks. ``forward(src, mask=None, src_key_padding_mask=None)``.

    Args:
        encoder_layer (TransformerEncoderLayer): the layer to copy (it is not used itself).
        num_layers (int): the number of copies.
        norm (Module or None): applied after the last layer, e.g. ``LayerNorm(d_model)``
            (default None).
        rng: a ``numpy.random.Generator``, an int seed or None: where the copies' dropout
            generators are drawn from; None uses npnet's default generator.

    Shape:
        src: (L, N, d_model), or (N, L, d_model) with the layer's ``batch_first``.
        output: same as src.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, rng=0)
        >>> encoder = nn.TransformerEncoder(layer, num_layers=2, norm=nn.LayerNorm(16))
        >>> src = np.zeros((5, 2, 16), np.float32)  # (L, N, d_model)
        >>> encoder(src, mask=nn.causal_mask(5)).shape
        (5, 2, 16)
        >>> sorted(encoder.state_dict())[0]
        'layers.0.linear1.bias'
    """

    def __init__(self, encoder_layer, num_layers, norm=None, rng=None):
        super().__init__()
        if not isinstance(encoder_layer, TransformerEncoderLayer) or int(num_layers) < 1:
            raise ValueError(f"TransformerEncoder: expected a TransformerEncoderLayer and num_layers >= 1, "
                             f"got {type(encoder_layer).__name__} and {num_layers}")
        rng = init.get_rng(rng)
        self.layers = Sequential(*(copy.deepcopy(encoder_layer) for _ in range(int(num_layers))))
        for m in self.layers.modules():
            if isinstance(m, (Dropout, MultiheadAttention)):
                m.rng = np.random.default_rng(rng.integers(2 ** 63))
        self.num_layers = int(num_layers)
        self.norm = norm

    def extra_repr(self):
        return f"num_layers={self.num_layers}"

    def forward(self, src, mask=None, src_key_padding_mask=None):
        """The layers applied in turn with the same masks, then ``norm``; src's shape."""
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask)
        self.cache = True
        return self.norm(x) if self.norm is not None else x

    def backward(self, dout, input_grad=True):
        self._saved()
        self.cache = None
        d = self.norm.backward(dout) if self.norm is not None else dout
        for layer in reversed(list(self.layers)):
            d = layer.backward(d)
        return d if input_grad else None


class PositionalEncoding(Module):
    """Adds the sinusoidal encoding of Vaswani et al. 2017, then dropout (the PyTorch tutorial's
    module): ``pe[t, 2i] = sin(t / 10000^(2i/d))``, ``pe[t, 2i+1] = cos(t / 10000^(2i/d))``.

    The table is computed, not learnt, and not in the state dict (it is a function of d_model and
    max_len); it is kept in float64 and rounded to the input's dtype, so float32 stays float32.

    Args:
        d_model (int): the features of each position (even or odd).
        dropout (float): dropout probability after the sum, in training only (default 0.1).
        max_len (int): the longest sequence the table covers (default 5000).
        batch_first (bool): input (N, L, d_model) instead of (L, N, d_model) (default False).
        rng: a ``numpy.random.Generator``, an int seed or None: the generator of the dropout
            masks; None uses npnet's default generator.

    Shape:
        input: (L, N, d_model), or (N, L, d_model) with ``batch_first``; L <= max_len.
        output: same as the input.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> pe = nn.PositionalEncoding(16, dropout=0.0).eval()
        >>> y = pe(np.zeros((10, 2, 16), np.float32))  # (L, N, d_model)
        >>> y.shape, float(y[0, 0, 1])  # cos(0) at position 0
        ((10, 2, 16), 1.0)
    """

    def __init__(self, d_model, dropout=0.1, max_len=5000, batch_first=False, rng=None):
        super().__init__()
        self.d_model, self.max_len, self.batch_first = int(d_model), int(max_len), bool(batch_first)
        pos = np.arange(self.max_len)[:, None]
        div = np.exp(np.arange(0, self.d_model, 2) * (-math.log(10000.0) / self.d_model))
        pe = np.zeros((self.max_len, self.d_model))
        pe[:, 0::2] = np.sin(pos * div)
        pe[:, 1::2] = np.cos(pos * div[:self.d_model // 2])  # an odd d_model has one cos column fewer
        self.pe = pe  # (max_len, d_model) float64, rounded to the input's dtype at each forward
        self.dropout = Dropout(dropout, rng)

    def extra_repr(self):
        return f"d_model={self.d_model}, max_len={self.max_len}"

    def forward(self, x):
        check_input(self, x, (3,), "(N, L, d_model)" if self.batch_first else "(L, N, d_model)", self.d_model, axis=2)
        L = x.shape[1] if self.batch_first else x.shape[0]
        if L > self.max_len:
            raise ValueError(f"{self._label()}: sequence length {L} exceeds max_len {self.max_len}")
        pe = self.pe[:L].astype(x.dtype, copy=False)
        self.cache = True
        return self.dropout(x + (pe[None] if self.batch_first else pe[:, None]))

    def backward(self, dout, input_grad=True):
        self._saved()
        self.cache = None
        return self.dropout.backward(dout)
