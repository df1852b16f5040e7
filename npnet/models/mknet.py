"""Multi-kernel networks: parallel convolutions of different kernel sizes mixed per image by a
learned gate. ``mknet`` (3 blocks, 3x3 + 5x5) and ``mknet6`` (the course report's 6 blocks,
1x1 + 3x3 + 5x5)."""
import numpy as np

from .. import functional as F, init, nn
from ..nn._checks import check_grad, check_input
from .simple import check_pooling

GATES = ("softmax", "sigmoid")


class KernelGate(nn.Module):
    """The small fully connected network that weighs a block's branches, one weight per image.

    ``z = fc2(relu(fc1(mean_hw(x))))`` of shape (N, K), then ``a = softmax(z)`` over the K branches
    (``kind="softmax"``: the branches compete, the weights sum to 1) or ``a = sigmoid(z)`` per
    branch (``kind="sigmoid"``: each branch is scaled in (0, 1) independently of the others).

    Shape: (N, C, H, W) -> (N, K). Sub-modules ``pool``, ``fc1`` (C -> hidden), ``relu``, ``fc2``
    (hidden -> K), as in a PyTorch twin whose state-dict keys are ``fc1.weight``, ``fc2.bias``, ...
    """

    def __init__(self, in_channels, num_branches, hidden, kind="softmax", rng=None):
        super().__init__()
        if kind not in GATES:
            raise ValueError(f"KernelGate: kind must be one of {', '.join(GATES)}, got {kind!r}")
        self.in_channels, self.num_branches, self.kind = in_channels, num_branches, kind
        self.pool = nn.GlobalAvgPool2d()
        self.fc1 = nn.Linear(in_channels, hidden, rng=rng)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, num_branches, rng=rng)

    def extra_repr(self):
        return f"{self.in_channels}, branches={self.num_branches}, kind={self.kind!r}"

    def forward(self, x):
        check_input(self, x, (4,), f"(N, {self.in_channels}, H, W)", self.in_channels)
        z = self.fc2(self.relu(self.fc1(self.pool(x))))  # (N, K) logits
        if self.kind == "softmax":
            a = F.softmax(z)
        else:  # (1 + tanh(z/2)) / 2: the sigmoid without an exp that could overflow
            half = z.dtype.type(0.5)
            a = half * (np.tanh(half * z) + 1)
        self.cache = a
        return a  # (N, K)

    def backward(self, dout, input_grad=True):
        a = self._saved()
        check_grad(self, dout, a.shape, a.dtype)
        self.cache = None
        if self.kind == "softmax":
            dz = a * (dout - np.sum(a * dout, axis=1, keepdims=True))
        else:
            dz = dout * a * (1 - a)
        dpool = self.fc1.backward(self.relu.backward(self.fc2.backward(dz)), input_grad)
        return self.pool.backward(dpool, input_grad)  # (N, C, H, W) or None


class MultiKernelConv(nn.Module):
    """Parallel same-padded convolutions with different kernel sizes, mixed per sample.

    For branches k = 1..K: ``y_k = conv_k(x)``; the output is ``sum_k a[:, k] * y_k`` where
    ``a = gate(x)`` (N, K) comes from a ``KernelGate`` on the block's input: each image chooses
    its own mix of receptive fields.

    Shape: (N, C_in, H, W) -> (N, C_out, H, W). Sub-modules: ``conv1``, ``conv3``, ``conv5``, ...
    (one per kernel size, odd sizes only) and ``gate`` with ``hidden = max(C_in // reduction, 4)``
    units; ``gate_kind`` is ``"softmax"`` or ``"sigmoid"`` (see ``KernelGate``).
    """

    def __init__(self, in_channels, out_channels, kernel_sizes=(3, 5), reduction=4, rng=None,
                 gate_kind="softmax"):
        super().__init__()
        ks = tuple(int(k) for k in kernel_sizes)
        if len(ks) < 2 or len(set(ks)) != len(ks) or any(k < 1 or k % 2 == 0 for k in ks):
            raise ValueError(f"MultiKernelConv: expected at least two distinct odd kernel sizes, "
                             f"got {kernel_sizes!r}")
        self.in_channels, self.out_channels, self.kernel_sizes = in_channels, out_channels, ks
        for k in ks:
            setattr(self, f"conv{k}", nn.Conv2d(in_channels, out_channels, k, padding=k // 2, rng=rng))
        self.gate = KernelGate(in_channels, len(ks), max(in_channels // reduction, 4), gate_kind, rng)

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, kernel_sizes={self.kernel_sizes}"

    def _branches(self):
        return [getattr(self, f"conv{k}") for k in self.kernel_sizes]

    def forward(self, x):
        check_input(self, x, (4,), f"(N, {self.in_channels}, H, W)", self.in_channels)
        a = self.gate(x)  # (N, K) mix of the branches
        ys = [conv(x) for conv in self._branches()]  # K x (N, C_out, H, W)
        out = a[:, 0, None, None, None] * ys[0]
        for k in range(1, len(ys)):
            out += a[:, k, None, None, None] * ys[k]
        self.cache = (a, ys)
        return out

    def backward(self, dout, input_grad=True):
        a, ys = self._saved()
        check_grad(self, dout, ys[0].shape, ys[0].dtype)
        self.cache = None
        da = np.stack([np.einsum("nchw,nchw->n", dout, y) for y in ys], axis=1)  # (N, K)
        dx = self.gate.backward(da, input_grad)  # the gate's path to x
        for k, conv in enumerate(self._branches()):
            dconv = conv.backward(a[:, k, None, None, None] * dout, input_grad)
            dx = dx + dconv if input_grad else None
        return dx


def multi_kernel_blocks(channels, widths, kernel_sizes, pool_after, rng, gate_kind="softmax"):
    """[MultiKernelConv -> BatchNorm2d -> ReLU] per width, a 2x2 MaxPool after the blocks numbered
    (from 1) in ``pool_after``. Returns (list of layers, output channels)."""
    layers = []
    for i, w in enumerate(widths, start=1):
        layers += [MultiKernelConv(channels, w, kernel_sizes, rng=rng, gate_kind=gate_kind),
                   nn.BatchNorm2d(w), nn.ReLU()]
        layers += [nn.MaxPool2d(2)] if i in pool_after else []
        channels = w
    return layers, channels


def mknet(in_shape, num_classes, rng, widths=(32, 64, 128, 256), kernel_sizes=(3, 5)):
    """``mknet``: Conv 3x3 (32) -> BatchNorm -> ReLU, then for 64/128/256 channels a
    MultiKernelConv (3x3 and 5x5 branches, softmax gate) -> BatchNorm -> ReLU, with a 2x2
    MaxPool after the first two blocks -> GlobalAvgPool2d -> Linear(256, num_classes).

    3x32x32: 1,473,144 parameters; 1x28x28: 1,472,568.
    """
    rng = init.get_rng(rng)
    check_pooling("mknet", in_shape, 2)
    layers = [nn.Conv2d(in_shape[0], widths[0], 3, padding=1, rng=rng),
              nn.BatchNorm2d(widths[0]), nn.ReLU()]
    blocks, c = multi_kernel_blocks(widths[0], widths[1:], kernel_sizes, (1, 2), rng)
    return nn.Sequential(*layers, *blocks, nn.GlobalAvgPool2d(), nn.Linear(c, num_classes, rng=rng))


def mknet6(in_shape, num_classes, rng, widths=(16, 32, 32, 64, 64, 128), kernel_sizes=(1, 3, 5),
           pool_after=(2, 4, 5), gate="sigmoid", hidden=256, dropout=0.3):
    """``mknet6``: the multi-kernel network of the course report.

    6 blocks of [MultiKernelConv (1x1, 3x3, 5x5 branches; gate: GlobalAvgPool -> Linear(C, hidden)
    -> ReLU -> Linear(hidden, 3) -> sigmoid, hidden = max(C/4, 4)) -> BatchNorm2d -> ReLU] with
    16/32/32/64/64/128 channels, MaxPool 2x2 after blocks 2, 4 and 5 -> GlobalAvgPool2d -> Flatten
    -> Linear(128, 256) -> ReLU -> BatchNorm1d(256) -> Dropout(0.3) -> Linear(256, num_classes).

    The report fixes the layout, not the widths, the gate's output function or the dropout rate.
    Widths: a train step at batch 128 on 1x28x28 costs about half of the same net at
    32/32/64/64/128/128 (1,157,520 parameters), which keeps an epoch of the 54,000 Fashion-MNIST
    training images on two cores in minutes (see RESULTS.md). Gate: a sigmoid per branch rather
    than mknet's softmax, so that an image can use the 1x1 (channel-wise) and the 3x3/5x5
    (spatial) branches fully at once instead of trading one against the others; ``gate="softmax"``
    gives the convex mix. Options: ``widths`` (one per block), ``kernel_sizes``, ``pool_after``
    (block numbers from 1), ``gate``, ``hidden``, ``dropout``.

    3x32x32: 597,864 parameters; 1x28x28: 596,736 parameters.
    """
    rng = init.get_rng(rng)
    check_pooling("mknet6", in_shape, len(pool_after))
    blocks, c = multi_kernel_blocks(in_shape[0], widths, kernel_sizes, pool_after, rng, gate)
    return nn.Sequential(*blocks, nn.GlobalAvgPool2d(), nn.Flatten(), nn.Linear(c, hidden, rng=rng),
                         nn.ReLU(), nn.BatchNorm1d(hidden), nn.Dropout(dropout, rng=rng),
                         nn.Linear(hidden, num_classes, rng=rng))
