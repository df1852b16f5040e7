"""``npnet.onnx.load(path)``: an ONNX file as an npnet model, its weights as float32 Parameters.

The file is parsed by ``onnx`` (protobuf: data only, nothing in it runs) and checked by
``onnx.checker``; each node is turned into a layer by its converter (``registry.py``, one per
operator), and the layers are wired as a ``Sequential`` when the graph is a chain, a ``Graph``
otherwise. Everything is built before anything is returned, and nothing global changes: a file
npnet cannot build gives one ``ValueError`` and no model.
"""
from pathlib import Path

import numpy as np

from .. import nn
from . import attention, elementwise, layers, recurrent, sequence, shapes  # noqa: F401  (they register)
from .dims import fold_dims
from .registry import CONVERTERS, Unsupported
from .names import node_names, sanitize

_INSTALL = "npnet.onnx needs the onnx package: pip install -e '.[onnx]'"
_ONLY = {"Div": "in GELU's erf form"}  # operators built only as part of a pattern


def load(path):
    """The npnet model of the ONNX file ``path``.

    Returns a ``Sequential`` when the graph is a chain (children named after the PyTorch modules
    when the file keeps their names, e.g. ``"features.0"``, so the state-dict keys are PyTorch's),
    else an ``nn.Graph``; one graph input and one output. Operators: those of
    ``supported_operators()``. Raises ``ValueError`` naming the file for a file that is not a
    valid ONNX model (truncated, not ONNX) and, for a node npnet cannot build, naming its place,
    its name and operator, and the operators npnet builds.

    What npnet's layers fix: 2-D convolutions and pooling with symmetric padding, groups and
    dilation 1, pooling rounded down (ceil_mode=0); Linear on (N, features) inputs (LinearNd on
    higher ranks); Reshape to a constant shape or to sizes of its own input
    (``x.view(x.size(0), -1)``; other shape arithmetic is not built); Softmax over one dim;
    RNN / LSTM / GRU from zero initial states over whole sequences (PyTorch's GRU:
    linear_before_reset=1); MatMul of two computed values only inside the self-attention npnet's
    exporter writes; a constant cut to a length read at run time only as a positional table or
    a causal mask. Weights and constants become float32; BatchNorm's ``num_batches_tracked``
    starts at 0. A constant operand of Add / Mul / Concat
    becomes an ``nn.Constant`` node (a buffer: its state-dict key ``"<name>.value"`` has no
    PyTorch twin).
    """
    onnx = _import_onnx()
    proto = _read(onnx, path)
    try:
        return _build(_Context(onnx, proto))
    except Unsupported as e:
        raise ValueError(f"npnet.onnx.load('{path}'): {e}") from None


def supported_operators():
    """The ONNX operators ``load`` builds, sorted."""
    return sorted(set(CONVERTERS) | {"Constant"})


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError(_INSTALL) from None
    return onnx


def _read(onnx, path):
    from google.protobuf.message import DecodeError
    data = Path(path).read_bytes()  # a missing file: Python's own FileNotFoundError names it
    try:
        proto = onnx.load_from_string(data)
        onnx.checker.check_model(proto)
    except (DecodeError, onnx.checker.ValidationError) as e:
        raise ValueError(f"npnet.onnx.load('{path}'): not a valid ONNX model (a truncated file, or "
                         f"not ONNX at all): {type(e).__name__}: {str(e).strip().splitlines()[0]}") from None
    external = [t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ValueError(f"npnet.onnx.load('{path}'): weights {external[:3]} are stored in separate "
                         "files (ONNX external data), which npnet does not read")
    return proto


class _Context:
    """What converters read: attributes, constants, consumers of each value, ranks."""

    def __init__(self, onnx, proto):
        self.onnx, self.graph = onnx, proto.graph
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.nodes = list(self.graph.node)
        self.consts = {t.name: onnx.numpy_helper.to_array(t) for t in self.graph.initializer}
        self.outputs = {o.name for o in self.graph.output}
        self.consumers = {}
        self.producers = {out: node for node in self.nodes for out in node.output if out}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.ranks = _ranks(onnx, proto)
        self.absorbed, self.built, self.weights = set(), [], []
        self.sources = {}  # a weight folded at load time (a Transpose of it) -> the initializer it came from
        self.named_after = None  # a pattern's node whose name names the layer better than the first's
        self.dims = {}  # shape arithmetic (dims.py): {value: [int or Dim, ...]}

    # -- for the converters -------------------------------------------------------------------
    def attr(self, node, name, default=None):
        for a in node.attribute:
            if a.name == name:
                value = self.onnx.helper.get_attribute_value(a)
                return value.decode() if isinstance(value, bytes) else value
        return default

    def value(self, name):
        """The constant array named ``name``, or None when the graph computes it."""
        return self.consts.get(name)

    def constant(self, node, i, default=None):
        """Input ``i`` of ``node`` as a constant array; ``default`` when absent; None when computed."""
        if i >= len(node.input) or not node.input[i]:
            return default
        return self.value(node.input[i])

    def data(self, node, i):
        """The name of input ``i``, a value the graph computes."""
        name = node.input[i] if i < len(node.input) else ""
        if not name or name in self.consts:
            raise Unsupported(f"input {i} ({name or 'absent'}) must be a computed value, not a constant")
        return name

    def param(self, node, i, optional=False):
        """Input ``i`` as a float32 weight (a constant); None when absent and ``optional``. Its
        name may name the layer (``names.py``)."""
        if optional and (i >= len(node.input) or not node.input[i]):
            return None
        array = self._float32(node, i)
        self.weights.append(self.sources.get(node.input[i], node.input[i]))
        return array

    def _float32(self, node, i):
        array = self.constant(node, i)
        if array is None:
            raise Unsupported(f"input {i} ({node.input[i] if i < len(node.input) else 'absent'}) must be "
                              "a constant weight (an initializer)")
        if not np.issubdtype(array.dtype, np.floating):
            raise Unsupported(f"the weight {node.input[i]} has dtype {array.dtype}, not floating")
        return array.astype(np.float32)

    def operand(self, node, i):
        """Input ``i`` as a value name; a constant becomes a ``Constant`` node of its own, placed
        before the node that reads it."""
        name = node.input[i]
        if name not in self.consts:
            return name
        made = f"{name}#const{len(self.built)}"  # '#' keeps it apart from the file's own names
        self.built.append((None, nn.Constant(self._float32(node, i)), [], made, [name]))
        return made

    def rank(self, name):
        return self.ranks.get(name)

    def follow(self, name, op_type):
        """The one node reading ``name`` if it is an ``op_type`` node (and ``name`` is not a graph
        output), else None: a pattern may take that node in."""
        readers = self.consumers.get(name, [])
        if name in self.outputs or len(readers) != 1 or readers[0].op_type != op_type:
            return None
        return readers[0]

    def absorb(self, node):
        self.absorbed.add(id(node))


def _ranks(onnx, proto):
    """{value name: rank} from ONNX's shape inference (empty where it fails)."""
    try:
        graph = onnx.shape_inference.infer_shapes(proto).graph
    except Exception:  # inference is a help for BatchNorm's 1d/2d choice, not a requirement
        graph = proto.graph
    infos = list(graph.value_info) + list(graph.input) + list(graph.output)
    return {v.name: len(v.type.tensor_type.shape.dim) for v in infos if v.type.tensor_type.HasField("shape")}


def _build(ctx):
    x_name, y_name = _io_names(ctx)
    total = len(ctx.nodes)
    # constants and shape arithmetic first: a pattern looks ahead (GELU's erf form reads the 1
    # and 0.5 of later nodes)
    folded = set()
    for k, node in enumerate(ctx.nodes):
        if _fold_constant(ctx, node, _place(k, total, node)) or fold_dims(ctx, node):
            folded.add(id(node))
    for k, node in enumerate(ctx.nodes):
        if id(node) in ctx.absorbed or id(node) in folded:
            continue
        place = _place(k, total, node)
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        if op not in CONVERTERS:
            built = [f"{o} ({_ONLY[o]})" if o in _ONLY else o for o in supported_operators()]
            raise Unsupported(f"{place}: npnet has no layer for the operator {op}; it builds "
                              f"{', '.join(built)}")
        ctx.weights = []
        try:
            result = CONVERTERS[op](node, ctx)
            if not isinstance(result, list):  # a list: the converter accounts for every output
                _check_extra_outputs(ctx, node)
        except (Unsupported, ValueError, TypeError) as e:
            raise Unsupported(f"{place}: {e}") from None
        _add_built(ctx, node, result)
    return _assemble(ctx, x_name, y_name)


def _add_built(ctx, node, result):
    """A converter's ``(module, inputs, output)``, or a list of them: the first is the node's
    layer (named after its weights), each later one ``(module, inputs, output, name hint)`` a
    layer reading it, e.g. the ``Item`` picking ``h_n`` out of an LSTM's outputs."""
    first, *rest = result if isinstance(result, list) else [result]
    ctx.built.append((ctx.named_after or node, *first, ctx.weights))
    ctx.named_after = None
    for module, inputs, out, hint in rest:
        ctx.built.append((None, module, inputs, out, [hint]))


def _place(k, total, node):
    return f"node {k + 1} of {total}, '{node.name or node.output[0]}' ({node.op_type})"


def _io_names(ctx):
    inputs = [i.name for i in ctx.graph.input if i.name not in ctx.consts]
    outputs = [o.name for o in ctx.graph.output]
    if len(inputs) != 1 or len(outputs) != 1:
        raise Unsupported(f"the graph has inputs {inputs} and outputs {outputs}; npnet builds graphs "
                          "with one input and one output")
    return inputs[0], outputs[0]


def _fold_constant(ctx, node, place):
    """Constant nodes, Identity of a constant (PyTorch writes one for each weight equal to
    another) and Transpose of a constant become constants; True if ``node`` was one."""
    if node.op_type in ("Identity", "Transpose") and node.input[0] in ctx.consts:
        # a weight transposed in the graph (npnet's exporter writes x @ W^T so) is the weight
        # transposed at load time, still named after its initializer
        # (an Identity is another weight equal to it, which keeps its own name)
        array = ctx.consts[node.input[0]]
        if node.op_type == "Identity":
            ctx.consts[node.output[0]] = array
            return True
        ctx.consts[node.output[0]] = array.transpose(ctx.attr(node, "perm", list(range(array.ndim))[::-1]))
        ctx.sources[node.output[0]] = ctx.sources.get(node.input[0], node.input[0])
        return True
    if node.op_type != "Constant":
        return False
    kinds = {"value": lambda v: ctx.onnx.numpy_helper.to_array(v), "value_float": np.float32,
             "value_floats": lambda v: np.array(v, np.float32), "value_int": np.int64,
             "value_ints": lambda v: np.array(v, np.int64)}
    for a in node.attribute:
        if a.name in kinds:
            ctx.consts[node.output[0]] = np.asarray(kinds[a.name](ctx.onnx.helper.get_attribute_value(a)))
            return True
    raise Unsupported(f"{place}: attribute {[a.name for a in node.attribute]} is not a dense tensor "
                      "or number")


def _check_extra_outputs(ctx, node):
    for extra in node.output[1:]:
        if extra and (extra in ctx.consumers or extra in ctx.outputs):
            raise Unsupported(f"output {extra!r} is read, and npnet's layer computes only the first output")


def _assemble(ctx, x_name, y_name):
    """A Sequential (a chain) or a Graph of the built layers, named; only what reaches the output."""
    built = _reaching(ctx.built, y_name)
    if not built or built[-1][3] != y_name:
        raise Unsupported(f"the output {y_name!r} is not computed by a layer (a constant, or the input)")
    input_name = sanitize(x_name) or "input"
    names = node_names(built, taken={input_name})
    owner = {x_name: input_name}
    nodes = []
    for (node, module, inputs, out, _), name in zip(built, names):
        missing = [i for i in inputs if i not in owner]
        if missing:
            raise Unsupported(f"'{name}' reads {missing}, which no earlier node computes")
        nodes.append((name, module, [owner[i] for i in inputs]))
        owner[out] = name
    if all(ins == [prev] for (_, _, ins), prev in zip(nodes, [input_name] + [n for n, _, _ in nodes])):
        seq = nn.Sequential()
        for name, module, _ in nodes:  # as torch.nn.Sequential(OrderedDict(...)): PyTorch's names
            setattr(seq, name, module)
        return seq
    return nn.Graph(nodes, input_name=input_name)


def _reaching(built, y_name):
    """The built entries the output depends on, in order."""
    needed, keep = {y_name}, []
    for entry in reversed(built):
        if entry[3] in needed:
            keep.append(entry)
            needed.update(entry[2])
    return keep[::-1]
