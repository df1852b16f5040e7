"""Converters of the model zoo's own modules (``npnet.models``): ResNet's option-A shortcut,
mknet's multi-kernel blocks and gate, and the sequence classifiers and language models, whose
``forward`` is their own code (written here again as nodes, step by step)."""
import numpy as np

from ..models import (CausalTransformerLM, CharLSTM, KernelGate, MultiKernelConv, RecurrentClassifier,
                      ShortcutA, TransformerClassifier)
from ._graph import converts
from ._ops_image import hint, linear
from ._ops_sequence import causal_mask, encoder

_END = np.iinfo(np.int64).max  # a Slice end past any length: "to the end"


@converts(ShortcutA)
def shortcut_a(ctx, module, x):
    """x[:, :, ::s, ::s] (Slice with steps), then zero channels around it (Pad on axis 1):
    (N, C_in, H, W) -> (N, C_out, ceil(H/s), ceil(W/s))."""
    name, s = hint(ctx, module), module.stride
    sub = ctx.node("Slice", [x, ctx.ints(f"{name}/starts", [0, 0]), ctx.ints(f"{name}/ends", [_END, _END]),
                             ctx.ints(f"{name}/axes", [2, 3]), ctx.ints(f"{name}/steps", [s, s])], f"{name}/sub")
    front = (module.out_channels - module.in_channels) // 2
    back = module.out_channels - module.in_channels - front
    pads = ctx.ints(f"{name}/pads", [0, front, 0, 0, 0, back, 0, 0])  # begins of N, C, H, W, then ends
    return ctx.node("Pad", [sub, pads], name, mode="constant")


@converts(KernelGate)
def kernel_gate(ctx, module, x):
    """softmax or sigmoid of fc2(relu(fc1(mean_hw(x)))): (N, C, H, W) -> (N, K)."""
    z = ctx.chain([module.pool, module.fc1, module.relu, module.fc2], x)
    if module.kind == "softmax":
        return ctx.node("Softmax", [z], hint(ctx, module), axis=1)
    return ctx.node("Sigmoid", [z], hint(ctx, module))


@converts(MultiKernelConv)
def multi_kernel_conv(ctx, module, x):
    """sum_k a[:, k] * conv_k(x), a = gate(x) (N, K) reshaped to (N, K, 1, 1) and sliced per branch."""
    name, K = hint(ctx, module), len(module.kernel_sizes)
    a = ctx.node("Reshape", [ctx.convert(module.gate, x), ctx.ints(f"{name}/gate_shape", [0, K, 1, 1])],
                 f"{name}/a")
    out, axis = None, ctx.ints(f"{name}/axis1", [1])
    for k, conv in enumerate(module._branches()):
        a_k = ctx.node("Slice", [a, ctx.ints(f"{name}/k{k}", [k]), ctx.ints(f"{name}/k{k}_end", [k + 1]), axis],
                       f"{name}/a{k}")  # (N, 1, 1, 1)
        term = ctx.node("Mul", [a_k, ctx.convert(conv, x)], f"{name}/term{k}")
        out = term if out is None else ctx.node("Add", [out, term], name if k == K - 1 else f"{name}/sum{k}")
    return out


@converts(RecurrentClassifier)
def recurrent_classifier(ctx, module, x):
    """fc of the last layer's final hidden states, directions side by side:
    h_n (L*D, N, H) -> its last D rows (D, N, H) -> (N, D, H) -> (N, D*H) -> fc."""
    name, D = hint(ctx, module), module.rnn.num_directions
    _, state = ctx.convert(module.rnn, x)
    h_n = state[0] if isinstance(state, tuple) else state
    LD = module.rnn.num_layers * D
    last = ctx.node("Slice", [h_n, ctx.ints(f"{name}/start", [LD - D]), ctx.ints(f"{name}/end", [LD]),
                              ctx.ints(f"{name}/axis0", [0])], f"{name}/last")
    last = ctx.node("Transpose", [last], f"{name}/last_ndh", perm=[1, 0, 2])
    last = ctx.node("Reshape", [last, ctx.ints(f"{name}/flat", [0, -1])], f"{name}/last_flat")
    return ctx.convert(module.fc, last)


@converts(TransformerClassifier)
def transformer_classifier(ctx, module, x):
    """embed (every step) -> pos -> encoder -> mean over the steps -> fc: (N, T, F) -> (N, classes)."""
    h = ctx.convert(module.pos, linear(ctx, module.embed, x, rank=3))
    h = ctx.reduce_mean(encoder(ctx, module.encoder, h), [1], f"{hint(ctx, module)}/mean")
    return ctx.convert(module.fc, h)


def _head(ctx, module, h):
    """fc at every position, (N, T, D) -> (N, T, V), then the class dim second: (N, V, T)."""
    logits = linear(ctx, module.fc, h, rank=3)
    return ctx.node("Transpose", [logits], f"{hint(ctx, module)}/logits", perm=[0, 2, 1])


@converts(CharLSTM)
def char_lstm(ctx, module, ids):
    """embedding -> lstm (its output sequence) -> fc at every step: ids (N, T) -> (N, V, T)."""
    out, _ = ctx.convert(module.lstm, ctx.convert(module.embedding, ids))
    return _head(ctx, module, out)


@converts(CausalTransformerLM)
def causal_transformer_lm(ctx, module, ids):
    """embedding -> pos -> encoder under the causal mask -> fc: ids (N, T) -> (N, V, T)."""
    x = ctx.convert(module.pos, ctx.convert(module.embedding, ids))
    mask = causal_mask(ctx, x, module.max_len, f"{hint(ctx, module)}/mask")
    return _head(ctx, module, encoder(ctx, module.encoder, x, mask))
