"""The self-attention npnet's exporter writes (``_ops_sequence.self_attention``), rebuilt as one
``modules.SelfAttention`` (a MultiheadAttention) from the nodes::

    qkv = x @ in_proj_weight^T (+ in_proj_bias)                      (N, L, 3E)
    q, k, v = Slice(qkv, iE, (i+1)E, axis 2) -> Reshape (0, 0, h, d) -> Transpose (0, 2, 1, 3)
    p = Softmax(MatMul(q * 1/sqrt(d), Transpose(k, (0, 1, 3, 2))) (+ mask), axis -1)
    out = Reshape(Transpose(MatMul(p, v), (0, 2, 1, 3)), (0, 0, E)) @ out_proj.weight^T (+ bias)

Why a pattern and not one layer per node: the weights keep MultiheadAttention's state-dict keys
(``self_attn.in_proj_weight``, ``self_attn.out_proj.bias``) and the reloaded model runs npnet's
own attention forward and backward. A MatMul of two computed values outside this pattern is not
built (``layers.matmul`` says so, naming the node).
"""
import numpy as np

from .modules import SelfAttention
from .registry import load_param


def self_attention(node, ctx, w):
    """``(SelfAttention, [x] or [x, mask], output)`` when the MatMul ``node`` (x @ w, w of shape
    (E, 3E)) starts the pattern, else None (and nothing absorbed)."""
    E, seen = w.shape[0], []
    qkv, in_bias = _bias(ctx, node, 3 * E, seen)
    heads = _heads(ctx, qkv, E, seen)
    if heads is None:
        return None
    (q, k, v), h = heads
    d = E // h
    qs = _step(ctx, q, "Mul", seen)
    kt = _step(ctx, k, "Transpose", seen, perm=[0, 1, 3, 2])
    scale = None if qs is None else ctx.constant(qs, 1 - list(qs.input).index(q))
    if kt is None or scale is None or scale.size != 1 or not np.isclose(float(scale.reshape(-1)[0]),
                                                                         1 / np.sqrt(d), rtol=1e-6):
        return None
    found = _scores_to_output(ctx, qs.output[0], kt.output[0], v, E, seen)
    if found is None:
        return None
    mask, merged = found
    proj = _step(ctx, merged, "MatMul", seen)
    wo = None if proj is None else ctx.constant(proj, 1)
    if wo is None or wo.shape != (E, E):
        return None
    out, out_bias = _bias(ctx, proj, E, seen)
    if (in_bias is None) != (out_bias is None):
        return None
    return _build(node, ctx, w, in_bias, proj, out_bias, h, mask, out, seen)


def _build(node, ctx, w, in_bias, proj, out_bias, h, mask, out, seen):
    E = w.shape[0]
    m = SelfAttention(E, h, bias=in_bias is not None, batch_first=True, rng=np.random.default_rng(0))
    load_param(m.in_proj_weight, ctx.param(node, 1).T, "in_proj_weight")  # named first: the layer's name
    load_param(m.out_proj.weight, ctx.param(proj, 1).T, "out_proj.weight")
    for param, (add, i) in ((m.in_proj_bias, in_bias), (m.out_proj.bias, out_bias)):
        if param is not None:
            load_param(param, ctx.param(add, i).reshape(-1), "a bias")
    for n in seen:
        ctx.absorb(n)
    inputs = [ctx.data(node, 0)]
    if mask is not None:
        add, i = mask
        inputs.append(ctx.operand(add, i))
    return m, inputs, out


def _step(ctx, name, op, seen, **attrs):
    """The one reader of ``name`` if it is an ``op`` node with these attributes (recorded in ``seen``)."""
    n = ctx.follow(name, op)
    if n is None or any(list(ctx.attr(n, key) or []) != want for key, want in attrs.items()):
        return None
    seen.append(n)
    return n


def _bias(ctx, node, size, seen):
    """(value, (Add, constant index) or None): the Add of a constant (size,) bias after ``node``."""
    out = node.output[0]
    add = ctx.follow(out, "Add")
    if add is not None:
        i = 1 - list(add.input).index(out)
        c = ctx.constant(add, i)
        if c is not None and c.size == size and c.ndim == 1:
            seen.append(add)
            return add.output[0], (add, i)
    return out, None


def _heads(ctx, qkv, E, seen):
    """The q, k, v heads (N, h, L, d) cut from ``qkv`` (N, L, 3E) by three Slices, and h."""
    readers = ctx.consumers.get(qkv, [])
    if qkv in ctx.outputs or len(readers) != 3 or any(r.op_type != "Slice" for r in readers):
        return None
    by_start, hs = {}, set()
    for s in readers:
        starts, ends, axes = (ctx.constant(s, i) for i in (1, 2, 3))
        if starts is None or ends is None or axes is None or len(s.input) > 4 and s.input[4]:
            return None
        if axes.reshape(-1).tolist() not in ([2], [-1]) or int(ends.reshape(-1)[0]) - int(starts.reshape(-1)[0]) != E:
            return None
        reshape = ctx.follow(s.output[0], "Reshape")
        shape = None if reshape is None else ctx.constant(reshape, 1)
        if shape is None or shape.tolist()[:2] != [0, 0] or len(shape) != 4 or shape[2] * shape[3] != E:
            return None
        t = _step(ctx, reshape.output[0], "Transpose", [], perm=[0, 2, 1, 3])
        if t is None:
            return None
        by_start[int(starts.reshape(-1)[0])] = t.output[0]
        hs.add(int(shape[2]))
        seen += [s, reshape, t]
    if sorted(by_start) != [0, E, 2 * E] or len(hs) != 1:
        return None
    return (by_start[0], by_start[E], by_start[2 * E]), hs.pop()


def _scores_to_output(ctx, q, kt, v, E, seen):
    """(mask (Add, index) or None, merged (N, L, E)) from softmax(q kt (+ mask)) v."""
    scores = ctx.follow(q, "MatMul")
    if scores is None or list(scores.input) != [q, kt] or ctx.follow(kt, "MatMul") is not scores:
        return None
    seen.append(scores)
    s, mask = scores.output[0], None
    add = _step(ctx, s, "Add", seen)
    if add is not None:
        mask, s = (add, 1 - list(add.input).index(s)), add.output[0]
    p = ctx.follow(s, "Softmax")
    if p is None or ctx.attr(p, "axis", -1) not in (-1, 3):
        return None
    seen.append(p)
    o = ctx.follow(p.output[0], "MatMul")
    if o is None or list(o.input) != [p.output[0], v] or ctx.follow(v, "MatMul") is not o:
        return None
    seen.append(o)
    t = _step(ctx, o.output[0], "Transpose", seen, perm=[0, 2, 1, 3])
    r = t and _step(ctx, t.output[0], "Reshape", seen)
    if r is None or (ctx.constant(r, 1) is None or ctx.constant(r, 1).tolist() != [0, 0, E]):
        return None
    return mask, r.output[0]
