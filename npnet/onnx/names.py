"""Names of the imported layers: PyTorch's module names where the file keeps them (torch.onnx
names initializers "conv1.weight" and nodes "/layer1/layer1.0/conv1/Conv"), so that the model's
state-dict keys are those of the PyTorch model it was exported from."""
import re

from ..nn import Sequential
from ..nn.graph import node_name_problem


def sanitize(text):
    """``text`` as a node name: characters other than letters, digits, ``_`` and ``.`` become
    ``_``, empty dotted parts go, the first part loses its leading ``_``; "" if nothing is left."""
    parts = [p for p in re.sub(r"[^A-Za-z0-9_.]", "_", text).split(".") if p]
    if parts:
        parts[0] = parts[0].lstrip("_")
    return ".".join(p for p in parts if p)


def node_names(built, taken):
    """One unique name per built entry ``(node, module, inputs, output, weights)``: first the layers
    with weights, after their weights' names ("fc.weight" -> "fc"), then the others, after the
    scope of the node's name ("/relu_1/Relu" -> "relu_1"), its name, or its operator."""
    names = [None] * len(built)
    for k, (node, _, _, _, weights) in enumerate(built):
        prefix = _weight_prefix(weights) if node is not None else ""
        if prefix:
            names[k] = _unique(prefix, taken)
    for k, entry in enumerate(built):
        if names[k] is None:
            names[k] = _unique(_hint(entry), taken)
    return names


def _weight_prefix(weights):
    for w in weights:
        if "." in w:
            prefix = sanitize(w.rsplit(".", 1)[0])
            if prefix:
                return prefix
    return ""


def _hint(entry):
    node, _, _, _, weights = entry
    if node is None:  # a Constant operand: named after the constant
        return sanitize(weights[0].replace("_output_0", "")) or "constant"
    parts = [p for p in node.name.split("/") if p]
    if len(parts) >= 2:  # "/features/features.3/MaxPool": the module "features.3"
        return sanitize(parts[-2]) or node.op_type.lower()
    if len(parts) == 1 and not node.name.startswith("/"):
        return sanitize(parts[0]) or node.op_type.lower()
    return node.op_type.lower()  # "/Add": a function call at the top of forward


def _unique(base, taken):
    base = base or "node"
    name, i = base, 0
    while name in taken or node_name_problem(name) or hasattr(Sequential, name):
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name
