"""ONNX import: ``npnet.onnx.load(path)`` builds an npnet model from an ONNX file."""
from .load import load  # noqa: F401
