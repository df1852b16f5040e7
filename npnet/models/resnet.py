"""ResNet-32 for CIFAR (He et al. 2016, section 4.2) with option-A (parameter-free) shortcuts."""
import numpy as np

from .. import init, nn
from ..nn._checks import check_grad, check_input
from ..nn.residual import ResidualBlock


class ShortcutA(nn.Module):
    """Option-A shortcut: keep every ``stride``-th pixel, then zero-pad the channels.

    Shape: (N, C_in, H, W) -> (N, C_out, ceil(H/s), ceil(W/s)); the input channels land in the
    middle, ``(C_out - C_in) // 2`` zero channels before them and the rest after. No parameters.
    """

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"ShortcutA: out_channels ({out_channels}) must be >= in_channels "
                             f"({in_channels})")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"

    def forward(self, x):
        check_input(self, x, (4,), f"(N, {self.in_channels}, H, W)", self.in_channels)
        s, front = self.stride, (self.out_channels - self.in_channels) // 2
        sub = x[:, :, ::s, ::s]  # (N, C_in, OH, OW)
        out = np.zeros((x.shape[0], self.out_channels) + sub.shape[2:], dtype=x.dtype)
        out[:, front:front + self.in_channels] = sub
        self.cache = (x.shape, out.shape, x.dtype)
        return out

    def backward(self, dout, input_grad=True):
        shape, out_shape, dtype = self._saved()
        check_grad(self, dout, out_shape, dtype)
        self.cache = None
        s, front = self.stride, (self.out_channels - self.in_channels) // 2
        dx = np.zeros(shape, dtype=dtype)
        dx[:, :, ::s, ::s] = dout[:, front:front + self.in_channels]
        return dx


class BasicBlock(ResidualBlock):
    """``relu2(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x))`` with 3x3 convolutions (bias=False).

    The first convolution carries the stride; the shortcut is ``Identity`` when the shape is kept,
    ``ShortcutA`` otherwise. Shape: (N, C_in, H, W) -> (N, C_out, ceil(H/s), ceil(W/s)).
    State-dict keys as in the usual PyTorch code (``conv1.weight``, ``bn2.running_var``, ...).
    Forward and backward are ``ResidualBlock``'s, over the children named here.
    """

    branch_names = ("conv1", "bn1", "relu1", "conv2", "bn2")
    act_name = "relu2"

    def __init__(self, in_channels, out_channels, stride=1, rng=None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False, rng=rng)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False, rng=rng)
        self.bn2 = nn.BatchNorm2d(out_channels)
        keep = stride == 1 and in_channels == out_channels
        self.shortcut = nn.Identity() if keep else ShortcutA(in_channels, out_channels, stride)
        self.relu2 = nn.ReLU()


def resnet32(in_shape, num_classes, rng, widths=(16, 32, 64), blocks=5):
    """``resnet32``: Conv 3x3 (16, bias=False) -> BatchNorm -> ReLU -> 3 stages of 5 BasicBlocks
    with 16/32/64 channels (the first block of stages 2 and 3 has stride 2 and an option-A
    shortcut) -> GlobalAvgPool2d -> Linear(64, num_classes). 6 * 5 + 2 = 32 weighted layers.

    Convolutions and the Linear weight use Kaiming-normal initialisation (fan_in, ReLU gain).
    3x32x32: 464,154 parameters; 1x28x28: 463,866 (the stem sees one channel).
    """
    rng = init.get_rng(rng)
    layers = [nn.Conv2d(in_shape[0], widths[0], 3, padding=1, bias=False, rng=rng),
              nn.BatchNorm2d(widths[0]), nn.ReLU()]
    c = widths[0]
    for i, w in enumerate(widths):
        for b in range(blocks):
            layers.append(BasicBlock(c, w, 2 if (i > 0 and b == 0) else 1, rng=rng))
            c = w
    model = nn.Sequential(*layers, nn.GlobalAvgPool2d(), nn.Linear(c, num_classes, rng=rng))
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            init.kaiming_normal_(m.weight, nonlinearity="relu", rng=rng)
    return model
