"""PyTorch twins of npnet modules: same architecture, same module nesting, same weights.

``to_torch(module)`` walks an npnet module tree and builds the matching ``torch.nn`` tree child by
child under the same attribute names, so ``state_dict()`` keys line up one to one; it then loads
npnet's weights and buffers with ``strict=True``, which fails loudly if the two trees differ in any
name or shape. Both sides then compute the same function (checked by the callers).

Only import this module after :func:`_common.pin_threads` (it imports torch).
"""
import torch
import torch.nn.functional as F
from torch import nn as tnn

from npnet import nn
from npnet.models import BasicBlock, ShortcutA


class GlobalAvgPool(tnn.Module):
    """(N, C, H, W) -> (N, C), the mean over H and W (npnet's GlobalAvgPool2d)."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


class Residual(tnn.Module):
    """branch(x) + shortcut(x) (npnet's Residual)."""

    def __init__(self, branch, shortcut):
        super().__init__()
        self.branch, self.shortcut = branch, shortcut

    def forward(self, x):
        return self.branch(x) + self.shortcut(x)


class TorchShortcutA(tnn.Module):
    """Option-A ResNet shortcut: every stride-th pixel, zero channels padded on both sides."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.stride = stride
        self.front = (out_channels - in_channels) // 2
        self.back = out_channels - in_channels - self.front

    def forward(self, x):
        s = self.stride
        return F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, self.front, self.back))


class TorchBasicBlock(tnn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), children named as in npnet's BasicBlock."""

    def __init__(self, children):
        super().__init__()
        for name, child in children.items():
            setattr(self, name, child)

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + self.shortcut(x))


def _leaf(m):
    """The torch module for one npnet layer without children (None if unknown)."""
    if isinstance(m, nn.Conv2d):
        return tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                          bias=m.bias is not None)
    if isinstance(m, nn.Linear):
        return tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        cls = tnn.BatchNorm2d if isinstance(m, nn.BatchNorm2d) else tnn.BatchNorm1d
        return cls(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine)
    if isinstance(m, nn.MaxPool2d):
        return tnn.MaxPool2d(m.kernel_size, m.stride, m.padding)
    if isinstance(m, nn.AvgPool2d):
        return tnn.AvgPool2d(m.kernel_size, m.stride, m.padding)     # count_include_pad=True
    if isinstance(m, nn.LeakyReLU):
        return tnn.LeakyReLU(m.negative_slope)
    if isinstance(m, nn.Flatten):
        return tnn.Flatten(m.start_dim)
    if isinstance(m, nn.Dropout):
        return tnn.Dropout(m.p)
    if isinstance(m, ShortcutA):
        return TorchShortcutA(m.in_channels, m.out_channels, m.stride)
    simple = {nn.ReLU: tnn.ReLU, nn.Sigmoid: tnn.Sigmoid, nn.Tanh: tnn.Tanh, nn.Identity: tnn.Identity,
              nn.GlobalAvgPool2d: GlobalAvgPool}
    cls = simple.get(type(m))
    return cls() if cls else None


def build_twin(m):
    """The torch module tree matching npnet module ``m`` (fresh torch initialisation)."""
    if isinstance(m, nn.Sequential):
        return tnn.Sequential(*(build_twin(c) for c in m))
    if isinstance(m, BasicBlock):
        return TorchBasicBlock({name: build_twin(c) for name, c in m._modules.items()})
    if isinstance(m, nn.Residual):
        return Residual(build_twin(m.branch), build_twin(m.shortcut))
    twin = _leaf(m)
    if twin is None:
        raise TypeError(f"to_torch: no PyTorch twin for npnet module {type(m).__name__}")
    return twin


def load_npnet_state(twin, model):
    """Copies npnet ``model``'s parameters and buffers into ``twin`` (keys must match exactly)."""
    state = {k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()}
    twin.load_state_dict(state, strict=True)
    return twin


def to_torch(model):
    """A torch twin of npnet ``model`` with npnet's weights, in the same train/eval mode."""
    twin = load_npnet_state(build_twin(model), model)
    return twin.train(model.training)
