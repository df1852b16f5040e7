"""Layers with explicit forward and backward passes."""
from .module import Module, Parameter, no_grad, is_grad_enabled
from .container import Sequential
from .linear import Linear
from .conv import Conv2d
from .pooling import MaxPool2d, AvgPool2d, GlobalAvgPool2d
from .normalization import BatchNorm1d, BatchNorm2d
from .dropout import Dropout
from .activation import ReLU, LeakyReLU, Sigmoid, Tanh, GELU, SiLU, Softmax, LogSoftmax
from .embedding import Embedding
from .layernorm import LayerNorm
from .rnn import RNN
from .lstm import LSTM
from .gru import GRU
from .attention import scaled_dot_product_attention, causal_mask
from .multihead import MultiheadAttention
from .transformer import TransformerEncoderLayer, TransformerEncoder, PositionalEncoding
from . import utils
from .shape import Flatten, Identity
from .residual import Residual, ResidualBlock
# the losses live in npnet.losses (they are not Modules: a loss returns a float and its backward
# takes no dout); they are named here too because a PyTorch user looks for nn.CrossEntropyLoss
from ..losses import CrossEntropyLoss, FocalLoss, MSELoss

__all__ = ["Module", "Parameter", "no_grad", "is_grad_enabled", "Sequential", "Linear", "Conv2d", "MaxPool2d", "AvgPool2d",
           "GlobalAvgPool2d", "BatchNorm1d", "BatchNorm2d", "Dropout", "ReLU", "LeakyReLU", "Sigmoid",
           "Tanh", "GELU", "SiLU", "Softmax", "LogSoftmax", "Embedding", "LayerNorm", "RNN", "LSTM", "GRU",
           "MultiheadAttention", "TransformerEncoderLayer", "TransformerEncoder", "PositionalEncoding",
           "scaled_dot_product_attention", "causal_mask", "utils",
           "Flatten", "Identity", "Residual", "ResidualBlock", "CrossEntropyLoss", "MSELoss", "FocalLoss"]
from .graph import Graph
from .ops import Add, Mul, Concat, Reshape, Transpose, Constant
from .slicing import Slice, Pad, Item
__all__ += ["Graph", "Add", "Mul", "Concat", "Reshape", "Transpose", "Constant", "Slice", "Pad", "Item"]
