"""The tune pass: ``npnet.tune(model, x)`` times each convolution's candidate algorithms once, on
the shapes ``x`` gives it, and sets the fastest as the layer's ``algorithm`` attribute (as cuDNN's
benchmark mode does, but once, visibly: ``print(model)`` shows every layer's algorithm).

Only 3x3 stride-1 convolutions have a choice (im2col, Winograd F(2x2, 3x3), F(4x4, 3x3)); every
other layer keeps its algorithm. Timings are remembered per machine (``kernels/autotune.py``), so
the next run on this machine reads them instead of measuring. A model that is never tuned runs the
fixed rule of ``Conv2d(algorithm=None)``: the same on every machine.
"""
import numpy as np

from ..kernels import autotune
from ..kernels.conv import conv2d_backward, conv2d_forward
from .conv import Conv2d
from .grad_mode import no_grad


#: the candidates unless asked otherwise: all three. F(4x4, 3x3) ("winograd4") is what makes the
#: wide layers fast (cnn-bn's train step 325-342 ms with it, 426-455 ms with im2col and F(2x2)
#: alone; its forward 97-107 against 152 ms, 7 December), but it rounds ~10x more coarsely, and
#: training amplifies that: cnn-bn with SyncBatchNorm on 3 uneven ranks ended an epoch 2.1e-3
#: (relative) away from one process with it, 1.2e-5 with F(2x2). ``algorithms=("im2col",
#: "winograd")`` (the config's ``speed.algorithms``) keeps every layer at im2col's rounding.
DEFAULT_ALGORITHMS = ("im2col", "winograd", "winograd4")


class TuneReport(list):
    """The rows of a tune pass, one per tuned layer: ``{"layer", "input", "times" (ms by algorithm;
    empty when read from the cache), "algorithm"}``; ``print(report)`` shows them as a table."""

    def __str__(self):
        if not self:
            return "npnet.tune: no layer with a choice of algorithm"
        lines = [f"{'layer':<22} {'input':<22} {'algorithm':<10} times (ms)"]
        for r in self:
            times = ", ".join(f"{a} {t:.2f}" for a, t in r["times"].items()) or "(from the cache)"
            lines.append(f"{r['layer']:<22} {str(r['input']):<22} {r['algorithm']:<10} {times}")
        return "\n".join(lines)


def tune(model, example_input, algorithms=None, train=None):
    """Times each convolution of ``model`` that has a choice and sets its ``algorithm``; returns a
    :class:`TuneReport`. ``example_input``: a batch of the shape training (or inference) will use.
    ``algorithms``: the candidates; by default (``DEFAULT_ALGORITHMS``) im2col, Winograd F(2x2, 3x3)
    and F(4x4, 3x3) (``"winograd4"``: faster on wide layers, float32 rounding ~10x coarser). ``train``: time forward and backward (default:
    ``model.training``), or the forward alone."""
    train = model.training if train is None else bool(train)
    algorithms = DEFAULT_ALGORITHMS if algorithms is None else algorithms
    candidates = tuple(a for a in autotune.ALGORITHMS if a in algorithms)
    if not candidates:
        raise ValueError(f"npnet.tune: algorithms must name some of {autotune.ALGORITHMS}, got {algorithms!r}")
    report = TuneReport()
    for name, conv, shape in _conv_inputs(model, example_input):
        options = [a for a in candidates if a in conv.algorithms()]
        if len(options) < 2:
            continue
        best, times = autotune.measure(_key(conv, shape, example_input.dtype, train),
                                       _runs(conv, shape, example_input.dtype, train, options))
        conv.algorithm = best
        report.append({"layer": name, "input": shape, "algorithm": best,
                       "times": {a: t * 1e3 for a, t in times.items()}})
    return report


def algorithms(model):
    """``{layer name: algorithm}`` of every Conv2d (names as in the unfused model)."""
    return {name: m.algorithm for name, m in model.named_modules() if isinstance(m, Conv2d)}


def set_algorithms(model, choices):
    """Sets each named Conv2d's ``algorithm`` from ``choices`` (as :func:`algorithms` returns them:
    a checkpoint's, or rank 0's); a name the model lacks is an error, checked before any is set."""
    convs = {name: m for name, m in model.named_modules() if isinstance(m, Conv2d)}
    unknown = sorted(set(choices) - set(convs))
    if unknown:
        raise ValueError(f"set_algorithms: the model has no Conv2d named {unknown}; its Conv2d layers: "
                         f"{sorted(convs)}")
    for name, algorithm in choices.items():
        convs[name]._checked_algorithm(algorithm)
    for name, algorithm in choices.items():
        convs[name].algorithm = algorithm
    return model


def _conv_inputs(model, x):
    """``[(name, conv, input shape)]`` for the convolutions one forward of x runs, in call order.
    Each Conv2d's ``check_input`` is shadowed for that one forward (plain and fused modules alike call
    it first) by a recorder, and restored after. The forward runs in eval mode inside ``no_grad()`` (no
    BatchNorm statistics move, no Dropout draws), every module's mode restored after."""
    names = {id(m): n for n, m in model.named_modules() if isinstance(m, Conv2d)}
    seen = []

    def recorder(conv):
        def check_input(x):
            seen.append((names.get(id(conv), "?"), conv, x.shape))
            return Conv2d.check_input(conv, x)
        return check_input

    convs = [m for m in model.modules() if isinstance(m, Conv2d)]
    modes = [(m, m.training) for m in model.modules()]
    try:
        for conv in convs:
            conv.__dict__["check_input"] = recorder(conv)
        with no_grad():
            model.eval()(x)
    finally:
        for conv in convs:
            conv.__dict__.pop("check_input", None)
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    unique = {}
    for name, conv, shape in seen:
        unique.setdefault((id(conv), shape), (name, conv, shape))
    return list(unique.values())


def _key(conv, shape, dtype, train):
    N, C, H, W = shape
    (ph, pw) = conv.padding
    return (f"{'train' if train else 'forward'} ({N}, {C}, {H}, {W}) -> {conv.out_channels} 3x3 "
            f"pad ({ph}, {pw}) {np.dtype(dtype)}")


def _runs(conv, shape, dtype, train, options):
    """``{algorithm: function of no arguments}`` computing this layer's pass on random data (made at
    the first call: nothing is allocated when the choice comes from the cache)."""
    data = []

    def arrays():
        if not data:
            rng = np.random.default_rng(0)
            data.extend([rng.standard_normal(shape).astype(dtype), conv.weight.data.astype(dtype),
                         rng.standard_normal((shape[0],) + conv.output_shape(shape[1:])).astype(dtype)])
        return data

    def run(a):
        def step():
            x, w, dy = arrays()
            conv2d_forward(x, w, None, *conv.stride, *conv.padding, algorithm=a)
            if train:
                conv2d_backward(x, w, dy, *conv.stride, *conv.padding, need_dw=conv.weight.requires_grad,
                                algorithm=a)
        return step
    return {a: run(a) for a in options}
