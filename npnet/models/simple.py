"""Plain feed-forward models of the zoo: linear, mlp, cnn-small, cnn-bn, cnn-5, alexnet.

Every builder takes ``(in_shape, num_classes, rng, ...)``: ``in_shape`` is ``(C, H, W)`` and
``rng`` (a Generator, int seed or None for npnet's default) initialises every layer and drives
every Dropout mask, so that a seeded model is reproducible. Each returns a ``Sequential``.
"""
import math

from .. import nn

_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}


def make_activation(name):
    """A fresh activation module from its name: relu, sigmoid, tanh or leaky_relu."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def pooled(size, times):
    """A spatial size after ``times`` 2x2 max-pools with stride 2 (each floors)."""
    for _ in range(times):
        size //= 2
    return size


def check_pooling(name, in_shape, times):
    """Raises a ValueError when ``in_shape`` is too small for ``times`` 2x2 pools."""
    _, h, w = in_shape
    if pooled(h, times) < 1 or pooled(w, times) < 1:
        raise ValueError(f"{name}: input {tuple(in_shape)} is too small for {times} 2x2 max-pools; "
                         f"need H and W >= {2 ** times}")
    return pooled(h, times), pooled(w, times)


def linear(in_shape, num_classes, rng):
    """``linear``: one Linear on the flattened pixels, Flatten -> Linear(C*H*W, num_classes)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(in_shape), num_classes, rng=rng))


def mlp(in_shape, num_classes, rng, hidden=(200,), activation="sigmoid"):
    """``mlp``: Flatten -> [Linear(d, h) -> activation] for each h in ``hidden`` -> Linear(., classes).

    The default is the two-layer network: 200 sigmoid units.
    """
    hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    layers, d = [nn.Flatten()], math.prod(in_shape)
    for h in hidden:
        layers += [nn.Linear(d, h, rng=rng), make_activation(activation)]
        d = h
    return nn.Sequential(*layers, nn.Linear(d, num_classes, rng=rng))


def cnn_small(in_shape, num_classes, rng, activation="relu", head_activation="sigmoid"):
    """``cnn-small``: 3 x [Conv 3x3 same -> activation -> MaxPool 2x2] with 32/64/64 channels,
    Flatten -> Linear(64*H/8*W/8, 64) -> head_activation -> Linear(64, num_classes).

    ``head_activation`` (relu, sigmoid, tanh or leaky_relu) is the hidden layer of the classifier
    head. The default, Sigmoid, is seed 004's Keras network of the comparison example; ``relu``
    suits class-weighted losses on a long tail (RESULTS.md, the long-tail section, measured why).
    The option changes no parameter, so the state-dict keys and shapes are the same.

    3x32x32: 122,570 parameters (flatten 64*4*4 = 1024); 1x28x28: 93,322 (flatten 64*3*3 = 576).
    """
    oh, ow = check_pooling("cnn-small", in_shape, 3)
    layers, c = [], in_shape[0]
    for out in (32, 64, 64):
        layers += [nn.Conv2d(c, out, 3, padding=1, rng=rng), make_activation(activation),
                   nn.MaxPool2d(2)]
        c = out
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * oh * ow, 64, rng=rng),
                         make_activation(head_activation), nn.Linear(64, num_classes, rng=rng))


def cnn_bn(in_shape, num_classes, rng, hidden=256):
    """``cnn-bn``: 3 x [Conv 3x3 same -> ReLU -> BatchNorm2d] with 32/64/128 channels, MaxPool 2x2,
    Flatten -> Linear(128*H/2*W/2, 256) -> ReLU -> Linear(256, num_classes).

    3x32x32: flatten 128*16*16 = 32768; 8,485,130 parameters. 1x28x28: 6,518,474.
    """
    oh, ow = check_pooling("cnn-bn", in_shape, 1)
    layers, c = [], in_shape[0]
    for out in (32, 64, 128):
        layers += [nn.Conv2d(c, out, 3, padding=1, rng=rng), nn.ReLU(), nn.BatchNorm2d(out)]
        c = out
    return nn.Sequential(*layers, nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(128 * oh * ow, hidden, rng=rng), nn.ReLU(),
                         nn.Linear(hidden, num_classes, rng=rng))


def cnn5(in_shape, num_classes, rng, dropout=0.25):
    """``cnn-5``: five same-padded convolutions, each followed by ReLU:

    Conv 7x7 (96) -> MaxPool 2 -> Conv 5x5 (96) -> Conv 5x5 (128) -> MaxPool 2 -> Conv 5x5 (164)
    -> Conv 3x3 (196) -> MaxPool 2 -> Dropout(0.25) -> Flatten -> Linear(196*H/8*W/8, 512) -> ReLU
    -> Dropout(0.25) -> Linear(512, 256) -> ReLU -> Linear(256, num_classes).

    3x32x32: flatten 196*4*4 = 3136, 3,106,530 parameters; 1x28x28: flatten 1764, 2,394,658.
    """
    oh, ow = check_pooling("cnn-5", in_shape, 3)
    spec = [(7, 96, True), (5, 96, False), (5, 128, True), (5, 164, False), (3, 196, True)]
    layers, c = [], in_shape[0]
    for k, out, pool in spec:
        layers += [nn.Conv2d(c, out, k, padding=k // 2, rng=rng), nn.ReLU()]
        layers += [nn.MaxPool2d(2)] if pool else []
        c = out
    return nn.Sequential(*layers, nn.Dropout(dropout, rng=rng), nn.Flatten(),
                         nn.Linear(196 * oh * ow, 512, rng=rng), nn.ReLU(),
                         nn.Dropout(dropout, rng=rng), nn.Linear(512, 256, rng=rng), nn.ReLU(),
                         nn.Linear(256, num_classes, rng=rng))


def alexnet(in_shape, num_classes, rng, dropout=0.5):
    """``alexnet``, CIFAR-sized (same-padded, stride 1), each convolution followed by ReLU:

    Conv 5x5 (96) -> MaxPool 2 -> Conv 5x5 (256) -> MaxPool 2 -> Conv 3x3 (384) -> Conv 3x3 (384)
    -> Conv 3x3 (384) -> MaxPool 2 -> Flatten -> [Dropout(p)] -> Linear(384*H/8*W/8, 4096) -> ReLU
    -> [Dropout(p)] -> Linear(4096, 4096) -> ReLU -> Linear(4096, num_classes).

    ``dropout=0`` leaves the Dropout layers out. 3x32x32: flatten 6144, 46,154,250 parameters;
    1x28x28: flatten 3456, 35,139,402.
    """
    oh, ow = check_pooling("alexnet", in_shape, 3)
    spec = [(5, 96, True), (5, 256, True), (3, 384, False), (3, 384, False), (3, 384, True)]
    layers, c = [], in_shape[0]
    for k, out, pool in spec:
        layers += [nn.Conv2d(c, out, k, padding=k // 2, rng=rng), nn.ReLU()]
        layers += [nn.MaxPool2d(2)] if pool else []
        c = out
    layers.append(nn.Flatten())
    for d_in in (384 * oh * ow, 4096):
        layers += [nn.Dropout(dropout, rng=rng)] if dropout > 0 else []
        layers += [nn.Linear(d_in, 4096, rng=rng), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(4096, num_classes, rng=rng))
