"""mknet: a CIFAR backbone of multi-kernel blocks, parallel convolutions mixed by a learned gate."""
import numpy as np

from .. import functional as F, init, nn
from ..nn._checks import check_grad, check_input


class MultiKernelConv(nn.Module):
    """Parallel same-padded convolutions with different kernel sizes, mixed per sample.

    For branches k = 1..K: ``y_k = conv_k(x)``. A gate looks at the globally pooled input,
    ``a = softmax(fc2(relu(fc1(mean_hw(x)))))`` of shape (N, K), and the output is
    ``sum_k a[:, k] * y_k``: each image chooses its own mix of receptive fields.

    Shape: (N, C_in, H, W) -> (N, C_out, H, W). Sub-modules: ``conv3``, ``conv5``, ... (one per
    kernel size, odd sizes only), ``pool``, ``fc1``, ``relu``, ``fc2``; the gate has
    ``hidden = max(C_in // reduction, 4)`` units.
    """

    def __init__(self, in_channels, out_channels, kernel_sizes=(3, 5), reduction=4, rng=None):
        super().__init__()
        ks = tuple(int(k) for k in kernel_sizes)
        if len(ks) < 2 or len(set(ks)) != len(ks) or any(k < 1 or k % 2 == 0 for k in ks):
            raise ValueError(f"MultiKernelConv: expected at least two distinct odd kernel sizes, "
                             f"got {kernel_sizes!r}")
        self.in_channels, self.out_channels, self.kernel_sizes = in_channels, out_channels, ks
        for k in ks:
            setattr(self, f"conv{k}", nn.Conv2d(in_channels, out_channels, k, padding=k // 2, rng=rng))
        hidden = max(in_channels // reduction, 4)
        self.pool = nn.GlobalAvgPool2d()
        self.fc1 = nn.Linear(in_channels, hidden, rng=rng)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, len(ks), rng=rng)

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, kernel_sizes={self.kernel_sizes}"

    def _branches(self):
        return [getattr(self, f"conv{k}") for k in self.kernel_sizes]

    def forward(self, x):
        check_input(self, x, (4,), f"(N, {self.in_channels}, H, W)", self.in_channels)
        z = self.fc2(self.relu(self.fc1(self.pool(x))))  # (N, K) gate logits
        a = F.softmax(z)  # (N, K) mix of the branches
        ys = [conv(x) for conv in self._branches()]  # K x (N, C_out, H, W)
        out = sum(a[:, k, None, None, None] * y for k, y in enumerate(ys))
        self.cache = (a, ys)
        return out

    def backward(self, dout, input_grad=True):
        a, ys = self._saved()
        check_grad(self, dout, ys[0].shape, ys[0].dtype)
        self.cache = None
        da = np.stack([np.sum(dout * y, axis=(1, 2, 3)) for y in ys], axis=1)  # (N, K)
        dz = a * (da - np.sum(a * da, axis=1, keepdims=True))  # softmax backward
        dpool = self.fc1.backward(self.relu.backward(self.fc2.backward(dz)), input_grad)
        dx = self.pool.backward(dpool, input_grad)  # the gate's path to x
        for k, conv in enumerate(self._branches()):
            dconv = conv.backward(a[:, k, None, None, None] * dout, input_grad)
            dx = dx + dconv if input_grad else None
        return dx


def mknet(in_shape, num_classes, rng, widths=(32, 64, 128, 256), kernel_sizes=(3, 5)):
    """``mknet``: Conv 3x3 (32) -> BatchNorm -> ReLU, then for 64/128/256 channels a
    MultiKernelConv (3x3 and 5x5 branches, softmax gate) -> BatchNorm -> ReLU, with a 2x2
    MaxPool after the first two blocks -> GlobalAvgPool2d -> Linear(256, num_classes).

    3x32x32: 1,473,144 parameters; 1x28x28: 1,472,568.
    """
    rng = init.get_rng(rng)
    if min(in_shape[1:]) < 4:
        raise ValueError(f"mknet: input {tuple(in_shape)} is too small for two 2x2 max-pools")
    layers = [nn.Conv2d(in_shape[0], widths[0], 3, padding=1, rng=rng),
              nn.BatchNorm2d(widths[0]), nn.ReLU()]
    c = widths[0]
    for i, w in enumerate(widths[1:]):
        layers += [MultiKernelConv(c, w, kernel_sizes, rng=rng), nn.BatchNorm2d(w), nn.ReLU()]
        layers += [nn.MaxPool2d(2)] if i < len(widths) - 2 else []
        c = w
    return nn.Sequential(*layers, nn.GlobalAvgPool2d(), nn.Linear(c, num_classes, rng=rng))
