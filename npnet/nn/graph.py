"""Graph: a container whose children form a directed acyclic graph (skips, fan-out, multi-input nodes)."""
import inspect
import re

from ._call import MultiInput
from .module import Module

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")


def node_name_problem(name):
    """Why ``name`` cannot name a node of a ``Graph`` (a sentence), or None when it can: names are
    words of letters, digits and ``_`` joined by dots, the first not starting with ``_``
    (``"conv1"``, ``"layer1.0.bn1"``: the dotted names of a PyTorch model's modules, so that
    state-dict keys stay PyTorch's), and not the name of a method or attribute of ``Graph`` (a
    child named ``"train"`` would hide ``Graph.train``)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return (f"node names are words of letters, digits and '_' joined by dots (the first not "
                f"starting with '_'), got {name!r}")
    if hasattr(Graph, name) or name in ("training", "cache", "input_name"):
        return f"node name {name!r} is the name of a Graph attribute"
    return None


def add_grads(a, b):
    """The sum of two gradients of one value: arrays add; None is zero; tuples (the gradient of a
    layer's several outputs, as ``(d_output, (d_h_n, d_c_n))``) add item by item."""
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, tuple):
        return tuple(add_grads(x, y) for x, y in zip(a, b))
    return a + b


class Graph(Module):
    """Modules wired as a directed acyclic graph, with one input and one output.

    Each node is ``(name, module, inputs)``: ``inputs`` names the values ``module`` is called on,
    in order (the graph input or earlier nodes), so a value may feed several nodes (a residual
    fan-out) and a node may read several values (``nn.Add``, ``nn.Concat``: modules whose forward
    takes several inputs). Nodes are listed in topological order; the last one is the output.
    Children are registered under the node names, so state-dict keys are ``"<name>.weight"``;
    names may hold dots (``"layer1.0.conv1"``), which keeps a PyTorch model's keys.

    ``forward`` keeps no values of its own (each module caches what its backward reads) and lets
    go of each value after its last reader. ``backward`` walks the nodes in reverse, sums the
    gradients of a value read by several nodes, and asks a module for its input gradient only
    where a trainable parameter (or, with ``input_grad``, the graph input) lies behind that input:
    as ``Sequential``, nodes with nothing to train behind them are not visited.

    Args:
        nodes (list): ``(name, module, inputs)`` triples; ``inputs`` is a name or a sequence of
            names, each the graph input's name or the name of an earlier node.
        input_name (str): the name the nodes use for the graph input (default ``"input"``).

    Shape:
        input: what the first readers of the input take.
        output: the last node's output.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> g = nn.Graph([("fc1", nn.Linear(4, 4, rng=0), "input"), ("act", nn.Tanh(), "fc1"),
        ...               ("sum", nn.Add(), ("act", "input")), ("fc2", nn.Linear(4, 2, rng=1), "sum")])
        >>> y = g(np.ones((3, 4), np.float32))                      # fc2(tanh(fc1(x)) + x)
        >>> g.backward(np.ones_like(y)).shape, list(g.state_dict())[:2]
        ((3, 4), ['fc1.weight', 'fc1.bias'])
        >>> print(g)
        Graph(
          input: input
          fc1 = Linear(in_features=4, out_features=4, bias=True)(input)
          act = Tanh()(fc1)
          sum = Add()(act, input)
          fc2 = Linear(in_features=4, out_features=2, bias=True)(sum)
        )
    """

    def __init__(self, nodes, input_name="input"):
        super().__init__()
        problem = node_name_problem(input_name)
        if problem:
            raise ValueError(f"Graph: input_name: {problem}")
        self.input_name = input_name
        order = []
        for k, node in enumerate(nodes):
            if not (isinstance(node, (tuple, list)) and len(node) == 3):
                raise TypeError(f"Graph: node {k} must be a (name, module, inputs) triple, got {node!r}")
            name, module, inputs = node
            inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
            self._check_node(k, name, module, inputs, order)
            setattr(self, name, module)
            order.append((name, inputs))
        if not order:
            raise ValueError("Graph: needs at least one node")
        self._nodes = tuple(order)
        self._check_all_used()

    def _check_node(self, k, name, module, inputs, earlier):
        problem = node_name_problem(name)
        known = {self.input_name} | {n for n, _ in earlier}
        if problem or name in known:
            raise ValueError(f"Graph: node {k}: {problem or f'the name {name!r} is already taken'}")
        if not isinstance(module, Module):
            raise TypeError(f"Graph: node {name!r}: expected a Module, got {type(module).__name__}")
        for i in inputs:
            if i == name:
                raise ValueError(f"Graph: node {name!r} reads its own output (a cycle)")
            if i not in known:
                raise ValueError(f"Graph: node {name!r} reads {i!r}, which is neither the input "
                                 f"{self.input_name!r} nor an earlier node (nodes must be listed in "
                                 "topological order, and a graph has no cycles)")
        try:
            inspect.signature(module.forward).bind(*inputs)
        except TypeError:
            raise TypeError(f"Graph: node {name!r} reads {len(inputs)} value(s) {list(inputs)}, which "
                            f"{type(module).__name__}.forward{inspect.signature(module.forward)} "
                            "does not take") from None

    def _check_all_used(self):
        read = {i for _, inputs in self._nodes for i in inputs}
        unused = [n for n, _ in self._nodes[:-1] if n not in read]
        if self.input_name not in read:
            unused.insert(0, self.input_name)
        if unused:
            raise ValueError(f"Graph: {unused} read by no node; every value but the last node's "
                             "must feed a later node")

    @property
    def nodes(self):
        """``[(name, module, inputs), ...]`` in the order they run (the modules registered now)."""
        return [(name, self._modules[name], inputs) for name, inputs in self._nodes]

    def __getitem__(self, name):
        """The module of node ``name`` (dotted names too: ``graph["layer1.0.conv1"]``)."""
        return self._modules[name]

    def forward(self, x):
        last_read = {i: name for name, inputs in self._nodes for i in inputs}
        values = {self.input_name: x}
        for name, inputs in self._nodes:
            values[name] = self._modules[name](*[values[i] for i in inputs])
            for i in inputs:
                if last_read[i] == name:  # inference holds only the values still to be read
                    values.pop(i, None)
        self.cache = True  # backward reads the modules' caches; this marks that a forward ran
        return values[self._nodes[-1][0]]

    def backward(self, dout, input_grad=True):
        self._saved()
        self.cache = None
        wanted = self._wanted(input_grad)
        grads = {self._nodes[-1][0]: dout}
        for name, inputs in reversed(self._nodes):
            g = grads.pop(name, None)
            if g is None:  # nothing trainable lies behind this node: not visited
                continue
            ask = any(wanted[i] for i in inputs)
            module = self._modules[name]
            dxs = module.backward(g, ask)
            if ask:
                # a multi-input module returns one gradient per input; any other returns the
                # gradient of its one input, which may be a tuple (an Item of a recurrent layer's output)
                per_input = dxs if isinstance(dxs, tuple) and isinstance(module, MultiInput) else (dxs,)
                for i, d in zip(inputs, per_input):
                    if wanted[i]:  # a value read by several nodes gets the sum of their gradients
                        grads[i] = d if i not in grads else add_grads(grads[i], d)
        return grads.pop(self.input_name) if input_grad else None

    def _wanted(self, input_grad):
        """{value: whether d loss / d value is needed}: a trainable parameter, or the input when
        ``input_grad``, lies behind it."""
        wanted = {self.input_name: bool(input_grad)}
        for name, inputs in self._nodes:
            wanted[name] = any(wanted[i] for i in inputs) or self._modules[name].has_trainable_parameters()
        return wanted

    def __repr__(self):
        lines = ["Graph(", f"  input: {self.input_name}"]
        for name, module, inputs in self.nodes:
            body = repr(module).replace("\n", "\n  ")
            lines.append(f"  {name} = {body}({', '.join(inputs)})")
        lines.append(")")
        return "\n".join(lines)
