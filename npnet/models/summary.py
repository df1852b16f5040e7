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
    out = module(x)
    return out, [(prefix or "(model)", type(module).__name__, out.shape[1:], module.num_parameters())]


def summary(model, in_shape, batch_size=1):
    """The layers of ``model`` with their output shapes (without the batch dim) and parameter
    counts, the total at the bottom, as a string to print.

    One forward pass of zeros of shape ``(batch_size, *in_shape)`` in eval mode finds the shapes;
    the model's mode is restored and the caches are cleared afterwards.
    """
    was_training = model.training
    dtype = model.dtype or np.float32
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
