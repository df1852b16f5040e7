"""Scaled dot-product attention as a forward / backward pair of plain functions, and
``scaled_dot_product_attention`` with the mask conventions of ``torch.nn.functional``.

``attention_forward`` takes an *additive* float mask (0 where a query may look, -inf where not);
each caller turns its own mask convention into that: ``F.scaled_dot_product_attention``'s boolean
mask is True where attention is *allowed*, ``nn.MultiheadAttention``'s is True where it is
*forbidden*. A query row whose every key is masked gives NaN in MultiheadAttention and zeros in
``scaled_dot_product_attention``, as PyTorch 2.13 does in each (``zero_empty_rows``).
"""
import math

import numpy as np

from .. import init
from ..kernels.bmm import bmm
from ..kernels.softmax import softmax_backward, softmax_forward

__all__ = ["attention_forward", "attention_backward", "scaled_dot_product_attention", "causal_mask"]


def _t(a):
    return np.swapaxes(a, -1, -2)


def attention_forward(q, k, v, mask=None, dropout_p=0.0, scale=None, rng=None, zero_empty_rows=False, out=None):
    """``softmax(q k^T * scale + mask) v`` over the last two axes, with dropout on the weights.

    Shape: q (..., L, E), k (..., S, E), v (..., S, Ev), mask broadcastable to (..., L, S) ->
    out (..., L, Ev), weights (..., L, S) (after dropout, as PyTorch's MultiheadAttention returns
    them). Returns ``(out, weights, cache)``; ``cache`` is what ``attention_backward`` reads.
    scale: 1 / sqrt(E) when None. zero_empty_rows: a query whose every score is -inf gets zero
    weights (and output) instead of the NaN of 0 / 0. out: an array to write the output into (a
    view whose last axis is adjacent, e.g. the heads of a (N, L, E) array).

    The products are ``kernels.bmm`` (views read in place), the softmax ``kernels.softmax`` (scale
    and mask fused, in place on the scores); their twins ``bmm_ref`` (``q @ k^T``) and
    ``softmax_forward_ref`` are the plain NumPy math.
    """
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = bmm(q, _t(k))  # (..., L, S) raw scores
    p = softmax_forward(s, scale, mask, zero_empty_rows, out=s)  # softmax(s * scale + mask), in place
    keep = None
    if dropout_p > 0:
        keep = (init.get_rng(rng).random(p.shape, dtype=p.dtype) >= dropout_p) * p.dtype.type(1 / (1 - dropout_p))
    pd = p if keep is None else p * keep
    return bmm(pd, v, out=out), pd, (q, k, v, p, keep, scale)


def attention_backward(dout, cache, dweights=None, out=None):
    """Gradients ``(dq, dk, dv)`` of ``attention_forward`` for upstream ``dout`` (out's shape)
    and optionally ``dweights`` (the weights' shape). out: None, or three arrays to write dq, dk,
    dv into (as ``attention_forward``'s out)."""
    q, k, v, p, keep, scale = cache
    dq, dk, dv = out if out is not None else (None, None, None)
    pd = p if keep is None else p * keep
    dv = bmm(_t(pd), dout, out=dv)  # (..., S, Ev)
    dp = bmm(dout, _t(v))  # (..., L, S): d loss / d weights
    if dweights is not None:
        dp += dweights
    if keep is not None:
        dp *= keep
    # softmax backward, times the scale: p * (dp - sum(dp * p)) * scale; masked keys have p = 0
    ds = softmax_backward(dp, p, scale, out=dp)
    return bmm(ds, k, out=dq), bmm(_t(ds), q, out=dk), dv


def causal_mask(L, S=None, dtype=np.float32):
    """Additive (L, S) mask: 0 on and below the diagonal, -inf above (position i sees keys <= i).
    ``nn.Transformer.generate_square_subsequent_mask(L)`` in PyTorch."""
    S = L if S is None else S
    return np.triu(np.full((L, S), -np.inf, dtype=dtype), k=1)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, rng=None):
    """``torch.nn.functional.scaled_dot_product_attention``: the output only.

    attn_mask: boolean, True where a query **may** attend (PyTorch's convention for this
    function), or float, added to the scores; broadcastable to (..., L, S). is_causal: the
    lower-triangular mask (then attn_mask must be None). A query that may attend to no key gets
    zeros, as PyTorch. For a backward pass, call ``attention_forward`` with ``sdpa_mask(...)`` and
    ``zero_empty_rows=True``, and keep its cache.

    Shape: query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev).
    """
    mask = sdpa_mask(attn_mask, is_causal, query.shape[-2], key.shape[-2], query.dtype)
    return attention_forward(query, key, value, mask, dropout_p, scale, rng, zero_empty_rows=True)[0]


def sdpa_mask(attn_mask, is_causal, L, S, dtype):
    """The additive mask of ``scaled_dot_product_attention``'s arguments (None for no mask)."""
    if is_causal:
        if attn_mask is not None:
            raise ValueError("scaled_dot_product_attention: pass attn_mask or is_causal=True, not both")
        return causal_mask(L, S, dtype)
    if attn_mask is None:
        return None
    attn_mask = np.asarray(attn_mask)
    try:  # the scores' batch dims are the caller's; the last two must broadcast to (L, S) exactly
        ok = np.broadcast_shapes(attn_mask.shape[-2:], (L, S)) == (L, S)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"scaled_dot_product_attention: expected attn_mask broadcastable to (..., {L}, {S}), "
                         f"got {attn_mask.shape}")
    if attn_mask.dtype == np.bool_:
        return np.where(attn_mask, dtype.type(0), dtype.type(-np.inf))
    return attn_mask.astype(dtype, copy=False)
