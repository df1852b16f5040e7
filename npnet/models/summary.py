"""``summary(model, in_shape)``: a table of layers, output shapes and parameter counts."""
import numpy as np

from .. import nn


def _rows(module, x, prefix):
    """Runs ``x`` through ``module``, returning (output, rows); a Sequential is opened up."""
    if isinstance(module, nn.Sequential):
        rows = []
        for name, child in module._modules.items():
            x, sub = _rows(child, x, f"{prefix}.{name}" if prefix else name)
            rows += sub
        return x, rows
    if not prefix and module._modules:  # a model class of its own: its children, in call order
        return _child_rows(module, x)
    out = module(x)
    return out, [(prefix or "(model)", type(module).__name__, _shape(out), module.num_parameters())]


def _shape(out, batch=None):
    """The output's shape per sample (a recurrent layer's (output, states): output's); a layer
    run on every step of ``batch`` samples at once, (N*T, d), shows (T, d)."""
    shape = (out[0] if isinstance(out, tuple) else out).shape
    if batch is not None and shape[0] != batch and shape[0] % batch == 0:
        return (shape[0] // batch,) + shape[1:]
    return shape[1:]


def _child_rows(model, x):
    """One forward of ``model`` with a forward hook on each direct child, recording its output."""
    rows, handles = [], []
    for name, child in model._modules.items():
        def record(m, args, out, name=name):
            rows.append((name, type(m).__name__, _shape(out, len(x)), m.num_parameters()))
        handles.append(child.register_forward_hook(record))
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, rows + [("(model)", type(model).__name__, _shape(out), 0)]


def summary(model, in_shape, batch_size=1):
    """The layers of ``model`` with their output shapes (without the batch dim) and parameter
    counts, the total at the bottom, as a string to print.

    One forward pass of zeros of shape ``(batch_size, *in_shape)`` in eval mode finds the shapes
    (of dtype ``model.input_dtype`` when the model has one, token ids for a language model); the
    model's mode is restored and the caches are cleared afterwards. A ``Sequential`` shows each
    layer; another model class shows its direct children in the order it calls them.
    """
    was_training = model.training
    dtype = getattr(model, "input_dtype", None) or model.dtype or np.float32
    model.eval()
    try:
        _, rows = _rows(model, np.zeros((batch_size,) + tuple(in_shape), dtype=dtype), "")
    finally:
        model.train(was_training)
        for m in model.modules():
            object.__setattr__(m, "cache", None)
    header = ("Layer", "Type", "Output shape", "Params")
    table = [header] + [(n, t, str(tuple(int(d) for d in s)), f"{p:,}") for n, t, s, p in rows]
    widths = [max(len(r[i]) for r in table) for i in range(4)]

    def line(r):
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    rule = "-" * len(line(header))
    body = [line(r) for r in table[1:]]
    total = f"Total parameters: {model.num_parameters():,}  (input {tuple(in_shape)})"
    return "\n".join([line(header), rule] + body + [rule, total])
