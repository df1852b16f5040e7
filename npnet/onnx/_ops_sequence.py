"""Converters of the sequence layers: Embedding, LayerNorm, RNN / LSTM / GRU, self-attention,
TransformerEncoderLayer / TransformerEncoder, PositionalEncoding.

Attention is decomposed into MatMul, Add, Softmax, Reshape and Transpose nodes; the recurrent
layers are ONNX's RNN, LSTM and GRU nodes, one per layer, with their gates reordered (below).
Every length is read from the input's shape at run time, so batch and sequence length can vary.
"""
import numpy as np

from .. import nn
from ._graph import ExportError, converts
from ._ops_image import hint, linear


@converts(nn.Embedding)
def embedding(ctx, module, ids):
    """weight[ids]: Gather of the table's rows, (*) int64 -> (*, embedding_dim)."""
    return ctx.node("Gather", [ctx.param(module, "weight"), ids], hint(ctx, module), axis=0)


@converts(nn.LayerNorm)
def layer_norm(ctx, module, x):
    """LayerNormalization over the last len(normalized_shape) dims (opset 17 and later)."""
    if ctx.opset < 17:
        raise ExportError(f"layer {ctx.name_of(module)!r} (LayerNorm) cannot be exported at opset {ctx.opset}: "
                          "ONNX's LayerNormalization needs opset >= 17")
    if module.weight is None:
        scale = ctx.constant(hint(ctx, module, "ones"), np.ones(module.normalized_shape, np.float32))
    else:
        scale = ctx.param(module, "weight")
    bias = [ctx.param(module, "bias")] if module.bias is not None else []
    return ctx.node("LayerNormalization", [x, scale] + bias, hint(ctx, module),
                    axis=-len(module.normalized_shape), epsilon=module.eps)


# -- recurrent layers ----------------------------------------------------------------------------
# ONNX stacks the gates in another order than PyTorch (and npnet): LSTM i, o, f, c against
# PyTorch's i, f, g, o (c is PyTorch's g); GRU z, r, h against r, z, n. The rows of every weight
# and bias are reordered to ONNX's: entry j names the PyTorch gate that goes to ONNX slot j.
_GATE_ORDER = {nn.LSTM: (0, 3, 1, 2), nn.GRU: (1, 0, 2), nn.RNN: (0,)}


def _reordered(array, order, H):
    """The rows of ``array`` (G*H, ...) gate by gate in ``order``."""
    return np.concatenate([array[g * H:(g + 1) * H] for g in order])


def _layer_weights(ctx, module, k, order):
    """ONNX's W (D, G*H, I), R (D, G*H, H), B (D, 2*G*H) of layer k, or B "" without biases."""
    H, name = module.hidden_size, hint(ctx, module)
    dirs = [module._weights(k, d) for d in range(module.num_directions)]
    W = ctx.constant(f"{name}.W_l{k}", np.stack([_reordered(w.data, order, H) for w, _, _, _ in dirs]))
    R = ctx.constant(f"{name}.R_l{k}", np.stack([_reordered(r.data, order, H) for _, r, _, _ in dirs]))
    if not module.bias:
        return W, R, ""
    B = np.stack([np.concatenate([_reordered(bi.data, order, H), _reordered(bh.data, order, H)])
                  for _, _, bi, bh in dirs])
    return W, R, ctx.constant(f"{name}.B_l{k}", B)


def _attrs(module):
    D = module.num_directions
    attrs = dict(hidden_size=module.hidden_size, direction="bidirectional" if D == 2 else "forward")
    if isinstance(module, nn.RNN):
        attrs["activations"] = ["Tanh" if module.nonlinearity == "tanh" else "Relu"] * D
    if isinstance(module, nn.GRU):
        attrs["linear_before_reset"] = 1  # PyTorch's GRU: r scales (W_hn h + b_hn), bias included
    return attrs


def _stacked(ctx, states, name):
    """The layers' final states (D, N, H) each, stacked as npnet's h_n: (L*D, N, H)."""
    return states[0] if len(states) == 1 else ctx.node("Concat", states, name, axis=0)


@converts(nn.RNN, nn.LSTM, nn.GRU)
def recurrent(ctx, module, x):
    """``(output, h_n)`` (LSTM: ``(output, (h_n, c_n))``) from zero initial states, in eval mode
    (no dropout between layers). One ONNX node per layer, time-major:
    Y (T, D, N, H) -> (T, N, D*H) feeds the next layer; the layers' Y_h are h_n (L*D, N, H)."""
    name, cell = hint(ctx, module), module.HAS_CELL
    op, order = next((c.__name__, o) for c, o in _GATE_ORDER.items() if isinstance(module, c))  # a subclass too
    seq = ctx.node("Transpose", [x], f"{name}/time_major", perm=[1, 0, 2]) if module.batch_first else x
    h_n, c_n = [], []
    for k in range(module.num_layers):
        W, R, B = _layer_weights(ctx, module, k, order)
        outs = ctx.node(op, [seq, W, R] + ([B] if B else []), f"{name}/l{k}",
                        outputs=3 if cell else 2, **_attrs(module))
        h_n.append(outs[1])
        c_n += outs[2:]
        y = ctx.node("Transpose", [outs[0]], f"{name}/l{k}/tnd", perm=[0, 2, 1, 3])  # (T, N, D, H)
        seq = ctx.node("Reshape", [y, ctx.ints(f"{name}/l{k}/shape", [0, 0, -1])], f"{name}/l{k}/output")
    out = ctx.node("Transpose", [seq], f"{name}/output", perm=[1, 0, 2]) if module.batch_first else seq
    if cell:
        return out, (_stacked(ctx, h_n, f"{name}/h_n"), _stacked(ctx, c_n, f"{name}/c_n"))
    return out, _stacked(ctx, h_n, f"{name}/h_n")


# -- attention and Transformers ------------------------------------------------------------------
@converts(nn.MultiheadAttention)
def multihead_attention(ctx, module, x):
    raise ExportError(f"layer {ctx.name_of(module)!r} (MultiheadAttention) cannot be exported on its own: it "
                      "takes query, key and value; npnet.onnx writes it as the self-attention of a "
                      "TransformerEncoderLayer")


def self_attention(ctx, mha, x, mask=None):
    """out_proj(concat_h softmax(q_h k_h^T / sqrt(d) + mask) v_h) with q = k = v = x.

    x (N, L, E) (or (L, N, E)); mask: an additive (L, L) value or None. q is scaled before the
    product, as npnet (and PyTorch) do."""
    name, E, h, d = hint(ctx, mha), mha.embed_dim, mha.num_heads, mha.head_dim
    xb = x if mha.batch_first else ctx.node("Transpose", [x], f"{name}/batch_major", perm=[1, 0, 2])
    wt = ctx.node("Transpose", [ctx.param(mha, "in_proj_weight")], f"{name}/in_proj_weight_t", perm=[1, 0])
    qkv = ctx.node("MatMul", [xb, wt], f"{name}/qkv")  # (N, L, 3E)
    if mha.in_proj_bias is not None:
        qkv = ctx.node("Add", [qkv, ctx.param(mha, "in_proj_bias")], f"{name}/qkv_b")
    to_heads = ctx.ints(f"{name}/heads_shape", [0, 0, h, d])

    def head(i, what):  # (N, L, E) slice i -> (N, h, L, d)
        part = ctx.node("Slice", [qkv, ctx.ints(f"{name}/{what}_start", [i * E]),
                                  ctx.ints(f"{name}/{what}_end", [(i + 1) * E]), ctx.ints(f"{name}/axis2", [2])],
                        f"{name}/{what}")
        return ctx.node("Transpose", [ctx.node("Reshape", [part, to_heads], f"{name}/{what}_split")],
                        f"{name}/{what}_heads", perm=[0, 2, 1, 3])

    q, k, v = head(0, "q"), head(1, "k"), head(2, "v")
    scale = ctx.constant(f"{name}/scale", np.array(1 / np.sqrt(d), np.float32))
    q = ctx.node("Mul", [q, scale], f"{name}/q_scaled")
    kt = ctx.node("Transpose", [k], f"{name}/k_t", perm=[0, 1, 3, 2])
    s = ctx.node("MatMul", [q, kt], f"{name}/scores")  # (N, h, L, L)
    if mask is not None:
        s = ctx.node("Add", [s, mask], f"{name}/masked")
    p = ctx.node("Softmax", [s], f"{name}/weights", axis=-1)
    o = ctx.node("Transpose", [ctx.node("MatMul", [p, v], f"{name}/o")], f"{name}/o_t", perm=[0, 2, 1, 3])
    merged = ctx.node("Reshape", [o, ctx.ints(f"{name}/merge_shape", [0, 0, E])], f"{name}/merged")
    out = linear(ctx, mha.out_proj, merged, rank=3)  # (N, L, E)
    return out if mha.batch_first else ctx.node("Transpose", [out], f"{name}/seq_major", perm=[1, 0, 2])


def encoder_layer(ctx, layer, x, mask=None):
    """Pre-norm: x + sa(norm1(x)), then + ff(norm2(.)); post-norm: norm1(x + sa(x)), then
    norm2(. + ff(.)); ff = linear2(act(linear1(.))). The dropouts are off (eval)."""
    name = hint(ctx, layer)

    def ff(y):
        hidden = ctx.convert(layer.activation, linear(ctx, layer.linear1, y, rank=3))
        return linear(ctx, layer.linear2, hidden, rank=3)

    def add(a, b, what):
        return ctx.node("Add", [a, b], f"{name}/{what}")

    if layer.norm_first:
        x = add(x, self_attention(ctx, layer.self_attn, ctx.convert(layer.norm1, x), mask), "sa_residual")
        return add(x, ff(ctx.convert(layer.norm2, x)), "ff_residual")
    x = ctx.convert(layer.norm1, add(x, self_attention(ctx, layer.self_attn, x, mask), "sa_residual"))
    return ctx.convert(layer.norm2, add(x, ff(x), "ff_residual"))


@converts(nn.TransformerEncoderLayer)
def transformer_encoder_layer(ctx, module, x):
    return encoder_layer(ctx, module, x)


def encoder(ctx, module, x, mask=None):
    """The layers in turn under the same mask, then ``norm``."""
    for layer in module.layers:
        x = encoder_layer(ctx, layer, x, mask)
    return ctx.convert(module.norm, x) if module.norm is not None else x


@converts(nn.TransformerEncoder)
def transformer_encoder(ctx, module, x):
    return encoder(ctx, module, x)


def sequence_length(ctx, x, batch_first, what):
    """L of x (N, L, .) or (L, N, .), as a 1-element int64 tensor read at run time."""
    axis = 1 if batch_first else 0
    return ctx.dims(x, axis, axis + 1, what)


@converts(nn.PositionalEncoding)
def positional_encoding(ctx, module, x):
    """x + pe[:L]: the sinusoidal table (max_len, d_model) as a constant, sliced to the input's
    length; (L, d) broadcasts over (N, L, d), or is unsqueezed to (L, 1, d) for (L, N, d)."""
    name = hint(ctx, module)
    L = sequence_length(ctx, x, module.batch_first, f"{name}/L")
    table = ctx.constant(f"{name}.pe", module.pe)  # float64 rounded to float32, as npnet's forward
    start, axis = ctx.ints(f"{name}/zero", [0]), ctx.ints(f"{name}/axis0", [0])
    pe = ctx.node("Slice", [table, start, L, axis], f"{name}/pe_L")  # (L, d_model)
    if not module.batch_first:
        pe = ctx.node("Unsqueeze", [pe, ctx.ints(f"{name}/axis1", [1])], f"{name}/pe_L1")
    return ctx.node("Add", [x, pe], name)


def causal_mask(ctx, x, max_len, what):
    """The additive (L, L) causal mask of x (N, L, .): a (max_len, max_len) constant with -inf
    above the diagonal (``nn.causal_mask``), sliced to the input's length."""
    L = sequence_length(ctx, x, True, f"{what}/L")
    full = ctx.constant(f"{what}/causal", nn.causal_mask(max_len))
    zeros, axes = ctx.ints(f"{what}/zeros", [0, 0]), ctx.ints(f"{what}/axes", [0, 1])
    ends = ctx.node("Concat", [L, L], f"{what}/ends", axis=0)
    return ctx.node("Slice", [full, zeros, ends, axes], what)
