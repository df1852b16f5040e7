"""Converters of ONNX's RNN, LSTM and GRU nodes: npnet's ``nn.RNN``, ``nn.LSTM``, ``nn.GRU``.

ONNX computes one layer per node, time-major: Y (T, D, N, H), Y_h and Y_c (D, N, H); its gates
are stacked i, o, f, c (LSTM) and z, r, h (GRU), npnet's (and PyTorch's) i, f, g, o and r, z, n;
weights are W (D, G*H, I), R (D, G*H, H), B (D, 2*G*H) = [W_b, R_b]. The rows are put back in
npnet's order under PyTorch's names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), so a model
npnet exported (whose ONNX weights are reordered copies named ``rnn.W_l0``) reloads with the
state dict it had.

What npnet's exporter writes for one multi-layer layer is rebuilt as that one layer: the nodes
of layers k and k + 1 joined by Transpose (0, 2, 1, 3) -> Reshape (0, 0, -1) (Y as npnet's
(T, N, D*H)), their Y_h (and Y_c) read only by one Concat (h_n, c_n); a Transpose (1, 0, 2)
before and after is ``batch_first``. The layer returns a tuple, and each output read is an
``nn.Item`` node. A node outside that pattern is a one-layer npnet layer with its outputs in
ONNX's layout (Y reshaped and transposed back), so a file from elsewhere loads as it computes.
"""
import numpy as np

from .. import nn
from .names import sanitize
from .registry import Unsupported, converter, load_param

_CELLS = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
# npnet's gate p is ONNX's slot _FROM_ONNX[op][p] (the inverse of the exporter's _GATE_ORDER)
_FROM_ONNX = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2), "RNN": (0,)}
_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}


@converter("RNN", "LSTM", "GRU")
def recurrent(node, ctx):
    spec = _spec(node, ctx)
    layers = _stack(node, ctx, spec)
    module = _module(node, ctx, layers, spec)
    made = f"{node.output[0]}#{node.op_type}"  # the layer's tuple of outputs
    w = node.input[1]
    prefix = sanitize(w.rsplit(".", 1)[0]) if "." in w else sanitize(node.name) or node.op_type.lower()
    x, outputs = _wiring(node, ctx, layers, module, made, prefix)
    return [(module, [x], made)] + outputs + _states(node, ctx, layers, made, prefix)


def _strings(value):
    return None if value is None else [v.decode() if isinstance(v, bytes) else v for v in value]


def _spec(node, ctx):
    """(hidden_size, directions, RNN nonlinearity or None); Unsupported for what npnet lacks."""
    op, H = node.op_type, ctx.attr(node, "hidden_size")
    direction = ctx.attr(node, "direction", "forward")
    if H is None or direction not in ("forward", "bidirectional"):
        raise Unsupported(f"hidden_size {H}, direction {direction!r}; npnet's {op} runs forward or "
                          "bidirectional and needs hidden_size")
    D = 2 if direction == "bidirectional" else 1
    for attr, ok in (("layout", 0), ("clip", None), ("input_forget", 0), ("activation_alpha", None),
                     ("activation_beta", None)):
        if ctx.attr(node, attr, ok) != ok:
            raise Unsupported(f"{attr}={ctx.attr(node, attr)!r}; npnet's {op} has no such option")
    if op == "GRU" and ctx.attr(node, "linear_before_reset", 0) != 1:
        raise Unsupported("linear_before_reset=0: ONNX's default GRU applies r before the recurrent "
                          "product, npnet's (PyTorch's) after it (linear_before_reset=1)")
    acts = _strings(ctx.attr(node, "activations"))
    if op == "RNN":
        acts = acts or ["Tanh"] * D
        if len(set(acts)) != 1 or acts[0] not in ("Tanh", "Relu"):
            raise Unsupported(f"activations {acts}; npnet's RNN uses one of Tanh, Relu")
    elif acts is not None and acts != _ACTIVATIONS[op] * D:
        raise Unsupported(f"activations {acts}; npnet's {op} uses {_ACTIVATIONS[op] * D}")
    _check_optional_inputs(node, ctx)
    return H, D, acts[0].lower() if op == "RNN" else None


def _check_optional_inputs(node, ctx):
    """sequence_lens absent; initial states and peepholes absent or constant zeros."""
    for i, what in ((4, "sequence_lens"), (5, "initial_h"), (6, "initial_c"), (7, "P (peepholes)")):
        if i < len(node.input) and node.input[i]:
            value = ctx.constant(node, i)
            if i == 4 or value is None or value.any():
                raise Unsupported(f"{what} is given; npnet's {node.op_type} starts from zero states "
                                  "over whole sequences, without peepholes")


def _follow(ctx, name, op, **attrs):
    """The one reader of ``name`` if it is an ``op`` node with these attributes / constant input 1."""
    n = ctx.follow(name, op)
    if n is None or n.input[0] != name:
        return None
    for key, want in attrs.items():
        got = ctx.constant(n, 1) if key == "shape" else ctx.attr(n, key)
        if got is None or list(np.reshape(got, -1)) != want:
            return None
    return n


def _time_major(ctx, y):
    """[Transpose, Reshape] turning Y (T, D, N, H) into (T, N, D*H), or None."""
    t = _follow(ctx, y, "Transpose", perm=[0, 2, 1, 3])
    r = t and _follow(ctx, t.output[0], "Reshape", shape=[0, 0, -1])
    return [t, r] if r else None


def _stack(node, ctx, spec):
    """The nodes of the layers npnet's exporter wrote for one multi-layer layer, from ``node``."""
    layers = [node]
    while True:
        chain = _time_major(ctx, layers[-1].output[0])
        nxt = chain and _follow(ctx, chain[1].output[0], node.op_type)
        try:
            if not nxt or _spec(nxt, ctx) != spec:
                break
        except Unsupported:  # converted on its own, its error named there
            break
        layers.append(nxt)
    if len(layers) > 1 and all(_joined(ctx, layers, j) is not False for j in range(1, len(node.output))):
        return layers
    return [node]


def _joined(ctx, layers, j):
    """The Concat (axis 0) of the layers' output j (Y_h, Y_c), None when none is read, False when
    they are read otherwise."""
    names = [n.output[j] if j < len(n.output) else "" for n in layers]
    readers = [ctx.follow(v, "Concat") if v else None for v in names]
    if all(not v or (v not in ctx.consumers and v not in ctx.outputs) for v in names):
        return None
    cat = readers[0]
    if cat is None or any(r is not cat for r in readers) or list(cat.input) != names or ctx.attr(cat, "axis") != 0:
        return False
    return cat


def _reorder(a, op, H):
    return np.concatenate([a[s * H:(s + 1) * H] for s in _FROM_ONNX[op]])


def _module(node, ctx, layers, spec):
    """The npnet layer, its weights loaded from every layer's node."""
    (H, D, nonlinearity), op = spec, node.op_type
    W = ctx.param(node, 1)
    has_bias = len(node.input) > 3 and bool(node.input[3])
    kw = dict(num_layers=len(layers), bias=has_bias, bidirectional=D == 2, rng=np.random.default_rng(0))
    if nonlinearity:
        kw["nonlinearity"] = nonlinearity
    module = _CELLS[op](W.shape[2], H, **kw)
    for k, layer in enumerate(layers):
        W, R = ctx.param(layer, 1), ctx.param(layer, 2)
        B = ctx.param(layer, 3, optional=True)
        if (B is not None) != has_bias:
            raise Unsupported(f"layer {k} of the stack has {'a' if B is not None else 'no'} bias, layer 0 not")
        GH = _CELLS[op].GATES * H
        for d in range(D):
            w_ih, w_hh, b_ih, b_hh = module._weights(k, d)
            load_param(w_ih, _reorder(W[d], op, H), f"W (layer {k}, direction {d})")
            load_param(w_hh, _reorder(R[d], op, H), f"R (layer {k}, direction {d})")
            if has_bias:
                load_param(b_ih, _reorder(B[d, :GH], op, H), f"W_b (layer {k}, direction {d})")
                load_param(b_hh, _reorder(B[d, GH:], op, H), f"R_b (layer {k}, direction {d})")
    for extra in layers[1:]:
        ctx.absorb(extra)
    return module


def _read(ctx, name):
    return bool(name) and (name in ctx.consumers or name in ctx.outputs)


def _wiring(node, ctx, layers, module, made, prefix):
    """The layer's input and the entries giving its output sequence: batch_first when a Transpose
    (1, 0, 2) feeds it and one follows its output (or the output is not read)."""
    x, y = ctx.data(node, 0), layers[-1].output[0]
    for a in layers[:-1]:  # the joints of a stack are inside the layer
        for n in _time_major(ctx, a.output[0]):
            ctx.absorb(n)
    lead, chain = _lead_transpose(ctx, node, x), _time_major(ctx, y)
    tm = chain[1].output[0] if chain else None
    trail = _follow(ctx, tm, "Transpose", perm=[1, 0, 2]) if tm else None
    if lead is not None and (not _read(ctx, y) or (chain and (trail or not _read(ctx, tm)))):
        module.batch_first = True
        x, out = lead.input[0], (trail.output[0] if trail else None)  # the lead's own entry is not read now
    else:
        out, trail = (tm if chain else y if _read(ctx, y) else None), None
    for n in (chain or []) + ([trail] if trail else []):
        ctx.absorb(n)
    if out is None:
        return x, []
    if chain:
        return x, [(nn.Item((0,)), [made], out, f"{prefix}_output")]
    return x, _onnx_layout(module, made, out, prefix)


def _lead_transpose(ctx, node, x):
    """The Transpose (1, 0, 2) making ``x`` if only ``node`` reads it, else None."""
    lead = ctx.producers.get(x)
    if lead is None or lead.op_type != "Transpose" or list(ctx.attr(lead, "perm") or []) != [1, 0, 2]:
        return None
    return lead if ctx.follow(x, node.op_type) is node else None


def _onnx_layout(module, made, out, prefix):
    """Entries giving ONNX's Y (T, D, N, H) as ``out`` from npnet's output (T, N, D*H)."""
    H, D = module.hidden_size, module.num_directions
    return [(nn.Item((0,)), [made], f"{made}/output", f"{prefix}_output"),
            (nn.Reshape((0, 0, D, H)), [f"{made}/output"], f"{made}/tndh", f"{prefix}_tndh"),
            (nn.Transpose((0, 2, 1, 3)), [f"{made}/tndh"], out, f"{prefix}_y")]


def _states(node, ctx, layers, made, prefix):
    """Item entries for h_n and (LSTM) c_n where they are read: the Concat of the layers' states
    for a stack, the node's own Y_h / Y_c for one layer."""
    entries, cell = [], node.op_type == "LSTM"
    for j, what in ((1, "h_n"), (2, "c_n"))[:2 if cell else 1]:
        if len(layers) > 1:
            cat = _joined(ctx, layers, j)
            if cat is None:
                continue
            ctx.absorb(cat)
            value = cat.output[0]
        else:
            value = node.output[j] if j < len(node.output) else ""
        if _read(ctx, value):
            path = (1, j - 1) if cell else (1,)
            entries.append((nn.Item(path), [made], value, f"{prefix}_{what}"))
    return entries
