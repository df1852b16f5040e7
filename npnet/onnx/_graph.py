"""The graph context the converters write into (``Graph``), their registry (``CONVERTERS``,
``converts``) and the dispatch from a module to its class's converter (``converter_for``).

A converter is ``convert(ctx, module, x) -> y`` with ``x`` and ``y`` the names of ONNX values (a
tuple of names where the layer returns several arrays, as RNN's ``(output, h_n)``); it adds nodes
with ``ctx.node`` and weights with ``ctx.param``, and converts its children with
``ctx.convert``. Every value's batch dim stays symbolic: reshapes copy dims with 0 and infer one
with -1, lengths are read with ``Shape`` where a converter needs them.
"""
import numpy as np

from ..nn.module import Module

#: layer class -> ``convert(ctx, module, x)``; filled by the ``_ops_*`` modules via ``converts``
CONVERTERS = {}


def converts(*classes):
    """Decorator: registers ``fn`` as the converter of ``classes``."""
    def register(fn):
        for cls in classes:
            CONVERTERS[cls] = fn
        return fn
    return register


class ExportError(ValueError):
    """A model that cannot be written as ONNX; the message names the layer and says why."""


class Graph:
    """What the converters write into: nodes, initializers and unique value names.

    ``names`` maps each module (by id) to its dotted name in the model (``"features.0"``), so
    that nodes and weights are named as the model's state-dict keys are.
    """

    def __init__(self, onnx, opset, model):
        self.onnx, self.opset = onnx, int(opset)
        self.nodes, self.initializers = [], []
        self.names = {id(m): n for n, m in model.named_modules()}
        self._taken, self._params = set(), {}

    # -- names --------------------------------------------------------------------------------
    def name_of(self, module):
        """The dotted name of ``module`` in the model ("" for the model itself)."""
        return self.names.get(id(module), "")

    def fresh(self, hint):
        """A value name not used yet, ``hint`` or ``hint_1``, ``hint_2``, ..."""
        hint = hint or "value"
        name, i = hint, 0
        while name in self._taken:
            i += 1
            name = f"{hint}_{i}"
        self._taken.add(name)
        return name

    # -- tensors ------------------------------------------------------------------------------
    def param(self, module, attr):
        """The initializer of ``module.<attr>`` (a Parameter or a buffer), float32, named by its
        state-dict key; a Parameter shared by two layers is one initializer."""
        value = getattr(module, attr)
        array = value.data if hasattr(value, "data") and not isinstance(value, np.ndarray) else value
        key = id(value)
        if key not in self._params:
            prefix = self.name_of(module)
            self._params[key] = self.constant(f"{prefix}.{attr}" if prefix else attr, array)
        return self._params[key]

    def constant(self, hint, array, dtype=None):
        """A new initializer holding ``array`` (floating arrays as float32, integer ones as
        int64 unless ``dtype`` says otherwise); returns its name."""
        array = np.asarray(array)
        if dtype is None:
            dtype = np.float32 if np.issubdtype(array.dtype, np.floating) else np.int64
        name = self.fresh(hint)
        tensor = self.onnx.numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), name)
        self.initializers.append(tensor)
        return name

    def ints(self, hint, values):
        """An int64 1-D initializer (shapes, axes, pads, slice bounds)."""
        return self.constant(hint, np.asarray(values, np.int64))

    # -- nodes --------------------------------------------------------------------------------
    def node(self, op, inputs, hint, outputs=1, **attrs):
        """Adds one ``op`` node reading ``inputs`` (names; "" for an omitted optional input);
        returns its output name, or a tuple of ``outputs`` names when outputs > 1."""
        outs = [self.fresh(hint if outputs == 1 else f"{hint}_{i}") for i in range(outputs)]
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), outs, name=self.fresh(f"{hint}/{op}"),
                                                     **attrs))
        return outs[0] if outputs == 1 else tuple(outs)

    def reduce_mean(self, x, axes, hint, keepdims=0):
        """ReduceMean over ``axes``: an attribute before opset 18, an input from 18 on."""
        if self.opset >= 18:
            return self.node("ReduceMean", [x, self.ints(f"{hint}/axes", axes)], hint, keepdims=keepdims)
        return self.node("ReduceMean", [x], hint, axes=list(axes), keepdims=keepdims)

    def dims(self, x, start, end, hint):
        """The int64 1-D tensor ``shape(x)[start:end]``, read at run time (batch and lengths)."""
        shape = self.node("Shape", [x], f"{hint}/shape")
        return self.node("Slice", [shape, self.ints(f"{hint}/start", [start]), self.ints(f"{hint}/end", [end])],
                         f"{hint}/dims")

    # -- the walk -----------------------------------------------------------------------------
    def convert(self, module, x):
        """The output name(s) of ``module`` applied to the value ``x``: its class's converter."""
        return converter_for(module, self.name_of(module))(self, module, x)

    def chain(self, modules, x):
        """``modules`` applied one after the other (a Sequential's children, a fused group)."""
        for m in modules:
            x = self.convert(m, x)
        return x


def converter_for(module, name):
    """The converter of ``module``'s class, or of the nearest base class whose ``forward`` the
    class still runs (BasicBlock computes what ResidualBlock's forward says). A class with its own
    ``forward`` and no converter is an ``ExportError`` naming the layer: its data flow is code
    the walker cannot read."""
    cls = type(module)
    for base in cls.__mro__:
        if base in CONVERTERS:
            if base is cls or getattr(cls, "forward", None) is getattr(base, "forward", None):
                return CONVERTERS[base]
            raise ExportError(f"layer {name or '(the model)'!r} ({cls.__name__}) cannot be exported: its class "
                              f"overrides {base.__name__}.forward, so what it computes is its own code; "
                              f"npnet.onnx has no converter for {cls.__name__}")
        if base is Module:
            break
    raise ExportError(f"layer {name or '(the model)'!r} ({cls.__module__}.{cls.__qualname__}) cannot be "
                      "exported: npnet.onnx has no converter for this class (export a model built of npnet's "
                      "layers, or add a converter to npnet.onnx.exporter.CONVERTERS)")
