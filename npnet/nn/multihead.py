"""MultiheadAttention, as ``torch.nn.MultiheadAttention`` (same parameters, masks and results)."""
import numpy as np

from .. import init
from ..kernels.matmul import matmul
from ._call import MultiInput
from ._checks import check_grad, check_input
from .attention import attention_backward, attention_forward
from .linear import Linear
from .module import Module, Parameter


class MultiheadAttention(MultiInput, Module):
    """``out_proj(concat_h softmax(q_h k_h^T / sqrt(d) + mask) v_h)`` with d = embed_dim / num_heads.

    Parameters (PyTorch's names): ``in_proj_weight`` (3E, E) and ``in_proj_bias`` (3E,), the q,
    k, v projections stacked in that order; ``out_proj.weight`` (E, E), ``out_proj.bias`` (E,).
    Init as PyTorch: ``xavier_uniform_`` on in_proj_weight, zero biases. Not supported: kdim / vdim
    other than embed_dim, add_bias_kv, add_zero_attn.

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True)`` returns ``(attn_output, attn_weights)``; attn_weights is None
    without need_weights, (N, L, S) averaged over heads, or (N, num_heads, L, S). Masks as PyTorch:
    a boolean mask is True where attention is **not** allowed; a float mask is added to the scores.
    attn_mask (L, S) or (N * num_heads, L, S); key_padding_mask (N, S) (True = padding key).
    ``dropout`` applies to the attention weights in training.

    ``backward(dout)``: dout is d attn_output, or ``(d attn_output, d attn_weights)``. Returns the
    tuple ``(d_query, d_key, d_value)`` (self-attention callers add the three), or None without
    ``input_grad``.

    Args:
        embed_dim (int): E, the features of query, key and value.
        num_heads (int): heads; must divide embed_dim.
        dropout (float): dropout probability on the attention weights, in training only (default 0).
        bias (bool): learn ``in_proj_bias`` and ``out_proj.bias`` (default True).
        batch_first (bool): inputs and output (N, L, E) instead of (L, N, E) (default False).
        rng: a ``numpy.random.Generator``, an int seed or None: the generator of the
            initialisation and of the dropout masks; None uses npnet's default generator.
        dtype: the parameters' dtype, default ``np.float32``.

    Shape:
        query: (L, N, E), or (N, L, E) with ``batch_first``.
        key, value: (S, N, E), or (N, S, E) with ``batch_first``.
        attn_output: the query's shape.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> mha = nn.MultiheadAttention(16, 4, batch_first=True, rng=0)
        >>> x = np.random.default_rng(0).normal(size=(2, 5, 16)).astype(np.float32)
        >>> out, weights = mha(x, x, x, attn_mask=nn.causal_mask(5))
        >>> out.shape, weights.shape
        ((2, 5, 16), (2, 5, 5))
        >>> dq, dk, dv = mha.backward(np.ones_like(out))  # self-attention: dx = dq + dk + dv
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, batch_first=False, rng=None,
                 dtype=np.float32):
        super().__init__()
        E, h = int(embed_dim), int(num_heads)
        if h < 1 or E % h:
            raise ValueError(f"MultiheadAttention: embed_dim ({E}) must be divisible by num_heads ({h})")
        if not 0 <= dropout < 1:
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1), got {dropout}")
        self.embed_dim, self.num_heads, self.head_dim = E, h, E // h
        self.dropout, self.batch_first, self.rng = float(dropout), bool(batch_first), init.get_rng(rng)
        self.in_proj_weight = Parameter(np.zeros((3 * E, E), dtype=dtype))
        init.xavier_uniform_(self.in_proj_weight, rng=self.rng)
        self.in_proj_bias = Parameter(np.zeros(3 * E, dtype=dtype)) if bias else None
        self.out_proj = Linear(E, E, bias=bias, rng=self.rng, dtype=dtype)
        if bias:
            self.out_proj.bias.data[:] = 0

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}" + \
            (", batch_first=True" if self.batch_first else "")

    # -- helpers ------------------------------------------------------------------------------
    def _batch_major(self, a, name):
        desc = "(N, L, E)" if self.batch_first else "(L, N, E)"
        check_input(self, a, (3,), f"{name} {desc}", self.embed_dim, axis=2)
        return a if self.batch_first else a.transpose(1, 0, 2)  # (N, L, E)

    def _heads(self, a):  # (N, L, E) -> (N, h, L, d)
        N, L, _ = a.shape
        return a.reshape(N, L, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    def _project(self, a, rows):
        """``a`` (N, L, E) times the in_proj rows ``rows`` (a slice of 3E) plus their bias: (N, L, len)."""
        N, L, E = a.shape
        out = matmul(a.reshape(N * L, E), self.in_proj_weight.data[rows].T)  # why not @: kernels.matmul
        if self.in_proj_bias is not None:
            out += self.in_proj_bias.data[rows]
        return out.reshape(N, L, -1)

    def _projections(self, q_in, k_in, v_in, same):
        """q, k, v (N, ., E). Self-attention (``same``: one array three times) in one product with the
        (3E, E) weight: the three (N, L, E) column blocks of its (N, L, 3E) result (views)."""
        E = self.embed_dim
        if same:
            qkv = self._project(q_in, slice(0, 3 * E))
            return qkv[..., :E], qkv[..., E:2 * E], qkv[..., 2 * E:]
        return tuple(self._project(a, slice(i * E, (i + 1) * E)) for i, a in enumerate((q_in, k_in, v_in)))

    def _additive(self, mask, shape, name, dtype):
        if not isinstance(mask, np.ndarray) or mask.shape not in shape:
            got = mask.shape if isinstance(mask, np.ndarray) else type(mask).__name__
            raise ValueError(f"{self._label()}: expected {name} of shape {' or '.join(map(str, shape))}, got {got}")
        if mask.dtype == np.bool_:
            return np.where(mask, dtype.type(-np.inf), dtype.type(0))
        if not np.issubdtype(mask.dtype, np.floating):
            raise TypeError(f"{self._label()}: expected {name} of dtype bool or float, got {mask.dtype}")
        return mask.astype(dtype, copy=False)

    def _mask(self, attn_mask, key_padding_mask, N, L, S, dtype):
        """attn_mask and key_padding_mask merged into one additive mask for (N, h, L, S) scores."""
        mask = None
        if attn_mask is not None:
            mask = self._additive(attn_mask, [(L, S), (N * self.num_heads, L, S)], "attn_mask", dtype)
            mask = mask.reshape(N, self.num_heads, L, S) if mask.ndim == 3 else mask
        if key_padding_mask is not None:
            kpm = self._additive(key_padding_mask, [(N, S)], "key_padding_mask", dtype)[:, None, None, :]
            mask = kpm if mask is None else mask + kpm
        return mask

    # -- forward / backward ---------------------------------------------------------------------
    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True):
        """``(attn_output, attn_weights or None)``; masks and shapes in the class docstring."""
        q_in, k_in, v_in = (self._batch_major(a, n) for a, n in ((query, "query"), (key, "key"), (value, "value")))
        N, L, _ = q_in.shape
        S = k_in.shape[1]
        if k_in.shape != v_in.shape or k_in.shape[0] != N:
            raise ValueError(f"{self._label()}: query, key and value must share the batch size, and key and "
                             f"value their shape; got {query.shape}, {key.shape}, {value.shape}")
        mask = self._mask(attn_mask, key_padding_mask, N, L, S, q_in.dtype)
        same = query is key and key is value
        q, k, v = (self._heads(a) for a in self._projections(q_in, k_in, v_in, same))  # (N, h, ., d) views
        p = self.dropout if self.training else 0.0
        merged = np.empty((N, L, self.embed_dim), dtype=q_in.dtype)  # the heads' outputs, side by side
        _, weights, acache = attention_forward(q, k, v, mask, p, 1 / np.sqrt(self.head_dim), self.rng,
                                               out=self._heads(merged))
        # out_proj holds the weights (PyTorch's names); like PyTorch, the product is made here,
        # not by calling the child (whose hooks do not fire in PyTorch either)
        out = matmul(merged.reshape(N * L, -1), self.out_proj.weight.data.T).reshape(N, L, -1)
        if self.out_proj.bias is not None:
            out += self.out_proj.bias.data
        self.cache = (q_in, k_in, v_in, merged, acache, average_attn_weights)
        if need_weights:
            weights = weights.mean(axis=1) if average_attn_weights else weights
        else:
            weights = None
        return (out if self.batch_first else out.transpose(1, 0, 2)), weights

    def backward(self, dout, input_grad=True):
        """``dout``: d attn_output, or ``(d attn_output, d attn_weights)``. Returns ``(d_query, d_key,
        d_value)``, or None without ``input_grad``."""
        q_in, k_in, v_in, merged, acache, averaged = self._saved()
        dout, dweights = dout if isinstance(dout, tuple) else (dout, None)
        N, L, E = q_in.shape
        check_grad(self, dout, (N, L, E) if self.batch_first else (L, N, E), q_in.dtype)
        dout = dout if self.batch_first else dout.transpose(1, 0, 2)
        wo, bo = self.out_proj.weight, self.out_proj.bias
        dout2 = np.ascontiguousarray(dout).reshape(-1, E)  # (N L, E)
        if wo.requires_grad:
            matmul(dout2.T, merged.reshape(-1, E), out=wo.grad, accumulate=True)
        if bo is not None and bo.requires_grad:
            bo.grad += dout2.sum(axis=0)
        do = matmul(dout2, wo.data).reshape(N, L, E)  # d loss / d merged heads
        if dweights is not None:
            S = k_in.shape[1]
            check_grad(self, dweights, (N, L, S) if averaged else (N, self.num_heads, L, S), q_in.dtype)
            dweights = dweights[:, None] / self.num_heads if averaged else dweights  # mean over heads
        # d loss / d each projection, written by the kernels into (N, ., E) arrays: no merge copy
        grads = [np.empty((N, a.shape[1], E), dtype=q_in.dtype) for a in (q_in, k_in, v_in)]
        attention_backward(self._heads(do), acache, dweights, out=[self._heads(g) for g in grads])
        self.cache = None
        W, b = self.in_proj_weight, self.in_proj_bias
        dins = []
        for i, (g, a) in enumerate(zip(grads, (q_in, k_in, v_in))):
            rows = slice(i * E, (i + 1) * E)
            g2 = g.reshape(-1, E)
            if W.requires_grad:
                matmul(g2.T, a.reshape(-1, E), out=W.grad[rows], accumulate=True)
            if b is not None and b.requires_grad:
                b.grad[rows] += g2.sum(axis=0)
            if input_grad:
                da = matmul(g2, W.data[rows]).reshape(g.shape)
                dins.append(da if self.batch_first else da.transpose(1, 0, 2))
        return tuple(dins) if input_grad else None
