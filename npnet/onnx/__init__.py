"""ONNX interchange: ``npnet.onnx.export(model, example_input, path)`` writes a model as an ONNX
file that ONNX Runtime, Netron and other tools read; ``npnet.onnx.load(path)`` builds an npnet
model, with its weights, from an ONNX file (one that ``torch.onnx.export`` wrote, say).

The export walks the model's modules: every npnet layer class (and each block of the model zoo)
has one small converter that writes what the layer computes, in eval mode (BatchNorm with its
running statistics, Dropout off). A module whose class has no converter stops the export with
one error that names it, before anything is written. The file has one input and one output,
named ``"input"`` and ``"output"`` by default (torch.onnx's names), a symbolic batch dim
``"batch"``, and the weights as float32 initializers named by the model's state-dict keys.

The import reads the file (protobuf: nothing in it runs), checks it with ``onnx.checker`` and
builds one npnet layer per operator: a chain becomes a ``Sequential`` whose children keep
PyTorch's module names, anything else an ``nn.Graph``. An operator npnet has no layer for stops
the load with one error naming the node, its place and the operator; nothing half-built is
returned.

::

    import npnet, onnxruntime
    model = npnet.models.build_model("cnn-bn", (1, 28, 28), 10)     # ... trained
    npnet.onnx.export(model, x[:1], "cnn_bn.onnx")                   # x: (N, 1, 28, 28) float32
    session = onnxruntime.InferenceSession("cnn_bn.onnx")
    logits = session.run(None, {"input": x})[0]                      # (N, 10), any N
    again = npnet.onnx.load("cnn_bn.onnx")                           # an npnet model: train it on

The package needs the optional ``onnx`` package (``pip install -e '.[onnx]'``), imported when
``export`` or ``load`` is called, so ``import npnet.onnx`` costs nothing without it.

Files: export: ``exporter.py`` the checks, the walk, the writing; ``_graph.py`` the graph
context the converters write into and their registry; ``_ops_image.py`` the feed-forward layers
and containers; ``_ops_sequence.py`` the sequence layers; ``_ops_zoo.py`` the zoo's own modules.
Import: ``load.py`` reading, checking and the walk over the nodes; ``registry.py`` one converter
per ONNX operator, in ``layers.py``, ``elementwise.py``, ``shapes.py``, ``sequence.py`` (Gather,
LayerNormalization, ReduceMean, Slice, Pad), ``recurrent.py`` (RNN, LSTM, GRU) and
``attention.py`` (the exporter's self-attention); ``modules.py`` the few modules only the import
builds; ``names.py`` layer names; ``dims.py`` shape arithmetic done at load time.

Round trips: every model npnet exports (the whole zoo) loads back with the state dict it had
(the recurrent layers' weights under PyTorch's names again, BatchNorm's ``num_batches_tracked``
at 0: ONNX does not hold it), computes the same outputs at any batch size, and trains on: where
the exporter wrote one npnet block as several nodes, the import rebuilds the block (a stacked
LSTM, a MultiheadAttention, a PositionalEncoding, GELU), elsewhere it builds one layer per node.
"""
from .exporter import ExportError, export
from .load import load

__all__ = ["export", "ExportError", "load"]
