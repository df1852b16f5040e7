"""``npnet.onnx.export``: the checks of its arguments, the walk (``Graph.convert`` on the model),
the graph's input and output, ``onnx.checker`` and the atomic write.

The model's structure is read by walking its modules, not by tracing a forward: each layer class
has one converter in ``CONVERTERS`` (``_ops_image.py``, ``_ops_sequence.py``, ``_ops_zoo.py``;
the context they write into is ``_graph.Graph``).
"""
import numpy as np

from .._io import atomic_write
from . import _ops_image, _ops_sequence, _ops_zoo  # noqa: F401  (the converters register on import)
from ._graph import CONVERTERS, ExportError, Graph, converts  # noqa: F401  (the registry, re-exported)

_MISSING_ONNX = "npnet.onnx needs the onnx package: pip install -e '.[onnx]'"


def import_onnx():
    """The ``onnx`` package, or an ImportError saying how to install it."""
    try:
        import onnx
        import onnx.checker  # noqa: F401  (submodules used below)
        import onnx.numpy_helper  # noqa: F401
    except ImportError:
        raise ImportError(_MISSING_ONNX) from None
    return onnx


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
