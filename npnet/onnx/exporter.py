"""The walker, the graph context and the writing of ``npnet.onnx.export``.

The model's structure is read by walking its modules, not by tracing a forward: each layer class
has one converter in ``CONVERTERS`` (``_ops_image.py``, ``_ops_sequence.py``, ``_ops_zoo.py``),
``convert(ctx, module, x) -> y`` with ``x`` and ``y`` the names of ONNX values (a tuple of names
where the layer returns several arrays, as RNN's ``(output, h_n)``). A converter adds nodes with
``ctx.node`` and weights with ``ctx.param``. Every value's batch dim stays symbolic: reshapes
copy dims with 0 and infer one with -1, lengths are read with ``Shape`` where a converter needs
them, so one file runs at any batch size.
"""
import numpy as np

from .._io import atomic_write
from ..nn.module import Module

#: layer class -> ``convert(ctx, module, x)``; filled by the ``_ops_*`` modules via ``converts``
CONVERTERS = {}

_MISSING_ONNX = "npnet.onnx needs the onnx package: pip install -e '.[onnx]'"


def converts(*classes):
    """Decorator: registers ``fn`` as the converter of ``classes``."""
    def register(fn):
        for cls in classes:
            CONVERTERS[cls] = fn
        return fn
    return register


def import_onnx():
    """The ``onnx`` package, or an ImportError saying how to install it."""
    try:
        import onnx
        import onnx.checker  # noqa: F401  (submodules used below)
        import onnx.numpy_helper  # noqa: F401
    except ImportError:
        raise ImportError(_MISSING_ONNX) from None
    return onnx


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


def export(model, example_input, path, opset=17, input_names=None, output_names=None, dynamic_batch=True,
           metadata=None):
    """Writes ``model`` as an ONNX file at ``path`` and returns the ``onnx.ModelProto``.

    The graph computes the model in eval mode (BatchNorm with its running statistics, Dropout
    off), whatever mode the model is in (the mode is not changed). Weights are float32
    initializers named by the model's state-dict keys where one array is one initializer
    (``"features.0.weight"``); the recurrent layers' weights, whose gates ONNX orders
    differently, are reordered copies named ``<layer>.W_l0`` etc.

    Args:
        model (Module): a model made of npnet's layers, containers and zoo blocks.
        example_input: one batch the model takes, a numpy array ``(N, ...)``, float32 (int64 token
            ids for a language model); it fixes every dim but the batch, and is run through the
            model once (eval mode, ``no_grad``) to check it and to read the output's shape.
        path: the file (a str or path-like); written atomically (a temporary file beside it, then
            renamed), only once the graph is built and passes ``onnx.checker`` (full check).
        opset (int): the ONNX opset, >= 13 (LayerNorm needs 17; GELU is one ``Gelu`` node from
            20, a formula of ``Erf`` or ``Tanh`` below).
        input_names, output_names (list or None): one name each, default ``["input"]`` and
            ``["output"]``, as torch.onnx names them.
        dynamic_batch (bool): the first dim of input and output is the symbol ``"batch"`` (default),
            else the example's batch size.
        metadata (dict or None): str -> str pairs for the file's ``metadata_props`` (Netron shows
            them; ``npnet export`` writes the run's classes and preprocessing there).

    Raises ``ExportError`` (a ValueError) naming the first layer that cannot be written, and why,
    before anything is written; ImportError when the onnx package is missing.
    """
    onnx = import_onnx()
    opset = _check_args(onnx, example_input, opset)
    input_name = _one_name(input_names, "input", "input_names")
    output_name = _one_name(output_names, "output", "output_names")
    graph = Graph(onnx, opset, model)
    graph._taken.update((input_name, output_name))
    out = graph.convert(model, input_name)
    if not isinstance(out, str):
        raise ExportError(f"the model ({type(model).__name__}) returns {len(out)} arrays; npnet.onnx.export "
                          "writes models with one output")
    _name_output(graph, out, input_name, output_name)
    expected = _eval_forward(model, example_input)
    proto = _model_proto(onnx, graph, model, example_input, expected, input_name, output_name, dynamic_batch)
    onnx.helper.set_model_props(proto, {str(k): str(v) for k, v in (metadata or {}).items()})
    onnx.checker.check_model(proto, full_check=True)
    atomic_write(path, lambda f: f.write(proto.SerializeToString()))
    return proto


def _check_args(onnx, example_input, opset):
    if not isinstance(example_input, np.ndarray) or example_input.ndim < 1:
        raise TypeError(f"npnet.onnx.export: example_input must be a numpy array (N, ...), got "
                        f"{type(example_input).__name__}")
    if not (np.issubdtype(example_input.dtype, np.floating) or np.issubdtype(example_input.dtype, np.integer)):
        raise TypeError(f"npnet.onnx.export: example_input must be floating (or integer token ids), got "
                        f"{example_input.dtype}")
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not 13 <= opset <= newest:
        raise ValueError(f"npnet.onnx.export: opset must be an int from 13 to {newest} (this onnx's newest), "
                         f"got {opset!r}")
    return int(opset)


def _one_name(names, default, what):
    if names is None:
        return default
    names = list(names)
    if len(names) != 1 or not isinstance(names[0], str) or not names[0]:
        raise ValueError(f"npnet.onnx.export: {what} must be a list of one non-empty name, got {names!r}")
    return names[0]


def _name_output(graph, out, input_name, output_name):
    """Gives the last value the graph's output name (an Identity when it is the input itself or
    a weight, as for a model that is all Dropout and Identity)."""
    producers = [n for n in graph.nodes if out in n.output]
    if not producers or out == input_name:
        graph.nodes.append(graph.onnx.helper.make_node("Identity", [out], [output_name], name="output/Identity"))
        return
    for node in graph.nodes:
        for field in (node.input, node.output):
            for i, v in enumerate(field):
                if v == out:
                    field[i] = output_name


def _eval_forward(model, x):
    """The model's eval-mode output for ``x`` under ``no_grad``; every module's mode restored."""
    from ..nn import no_grad
    modes = [(m, m.training) for m in model.modules()]
    try:
        with no_grad():
            y = model.eval()(x)
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    if not isinstance(y, np.ndarray):
        raise ExportError(f"the model ({type(model).__name__}) returns a {type(y).__name__}; npnet.onnx.export "
                          "writes models with one output array")
    return y


def _model_proto(onnx, graph, model, x, y, input_name, output_name, dynamic_batch):
    h = onnx.helper
    batch = "batch" if dynamic_batch else x.shape[0]
    in_type = onnx.TensorProto.FLOAT if np.issubdtype(x.dtype, np.floating) else onnx.TensorProto.INT64
    inputs = [h.make_tensor_value_info(input_name, in_type, [batch, *x.shape[1:]])]
    outputs = [h.make_tensor_value_info(output_name, onnx.TensorProto.FLOAT, [batch, *y.shape[1:]])]
    g = h.make_graph(graph.nodes, type(model).__name__, inputs, outputs, graph.initializers)
    opsets = [h.make_opsetid("", graph.opset)]
    from .. import __version__
    proto = h.make_model(g, opset_imports=opsets, producer_name="npnet", producer_version=__version__,
                         ir_version=h.find_min_ir_version_for(opsets))
    proto.doc_string = f"npnet {type(model).__name__}, eval mode"
    return proto


# the converters register themselves on import (below the names they use)
from . import _ops_image, _ops_sequence, _ops_zoo  # noqa: E402,F401
