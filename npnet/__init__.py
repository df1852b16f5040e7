"""npnet: a deep-learning library written from scratch on NumPy, every backward pass by hand."""
from . import nn, gradcheck

__version__ = "0.1.0"
