"""The registry of converters: ``CONVERTERS[op_type](node, ctx)`` returns ``(module, inputs,
output)``, the npnet layer, the ONNX values it reads and the value it computes (a later node's
when the converter takes in a pattern: MatMul + Add is one Linear, the five nodes of GELU's erf
form are one GELU). ``ctx`` is ``load._Context``: attributes, constants, the readers of a value.
A converter raises ``Unsupported`` with the reason when a node asks for what npnet's layer
cannot do. A converter may return a list instead: its layer's entry first, then entries
``(module, inputs, output, name hint)`` of layers reading it (an RNN's outputs, picked by
``nn.Item``). The converters live in ``layers.py``, ``elementwise.py``, ``shapes.py``,
``sequence.py``, ``recurrent.py`` and ``attention.py``."""
import numpy as np

CONVERTERS = {}


class Unsupported(ValueError):
    """A node npnet cannot build, with the reason; ``load`` adds the file and the node's place."""


def converter(*op_types):
    """Registers the decorated function as the converter of ``op_types``."""
    def register(fn):
        for op_type in op_types:
            CONVERTERS[op_type] = fn
        return fn
    return register


def one_input(node, ctx, module):
    """The result of a converter whose layer reads input 0 and computes output 0."""
    return module, [ctx.data(node, 0)], node.output[0]


def load_param(param, array, what):
    """Copies ``array`` into ``param.data``: a clear error unless the shapes agree."""
    if param.data.shape != array.shape:
        raise Unsupported(f"{what} has shape {array.shape}, expected {param.data.shape}")
    param.data[...] = array


def float32_value(v):
    """The shortest decimal of float32 ``v`` (1e-05, not 9.999999747378752e-06): ONNX stores its
    float attributes in float32, PyTorch's arguments are the decimals."""
    return float(str(np.float32(v)))
