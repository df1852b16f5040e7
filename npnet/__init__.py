"""npnet: a deep-learning library written from scratch on NumPy, every backward pass by hand."""
from . import nn, init, functional, gradcheck, losses, optim, metrics, data
from .init import manual_seed
from .nn import no_grad, is_grad_enabled

__version__ = "0.1.0"
