"""The model zoo: ``build_model(name, in_shape, num_classes, **kw)`` and ``summary``.

Names: linear, mlp, cnn-small, cnn-bn, cnn-5, alexnet, resnet32, mknet, mknet6. Each builder's
docstring describes its architecture and parameter counts. ``in_shape`` is (C, H, W) without the
batch dim.
"""
import inspect

from .. import init
from .mknet import KernelGate, MultiKernelConv, mknet, mknet6
from .resnet import BasicBlock, ShortcutA, resnet32
from .simple import alexnet, cnn5, cnn_bn, cnn_small, linear, mlp
from .summary import summary

__all__ = ["build_model", "summary", "model_options", "MODELS", "KernelGate", "MultiKernelConv",
           "BasicBlock", "ShortcutA"]

#: model name -> its builder ``f(in_shape, num_classes, rng, **options)``; ``build_model`` calls it.
MODELS = {"linear": linear, "mlp": mlp, "cnn-small": cnn_small, "cnn-bn": cnn_bn, "cnn-5": cnn5,
          "alexnet": alexnet, "resnet32": resnet32, "mknet": mknet, "mknet6": mknet6}


def model_options(name):
    """The keyword options of a zoo model's builder, e.g. ``['hidden', 'activation']`` for mlp."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return list(inspect.signature(MODELS[name]).parameters)[3:]  # after in_shape, num_classes, rng


def build_model(name, in_shape=(3, 32, 32), num_classes=10, rng=None, **kw):
    """A fresh float32 model from the zoo.

    name: one of ``MODELS``; in_shape: (C, H, W); rng: Generator, int seed or None (npnet's
    default generator, see ``npnet.manual_seed``) for the weights and the Dropout masks;
    kw: the builder's own options (e.g. ``hidden=(100,), activation='relu'`` for mlp).
    """
    if name not in MODELS:
        raise ValueError(f"build_model: unknown model {name!r}; expected one of {', '.join(MODELS)}")
    in_shape = tuple(in_shape)
    if len(in_shape) != 3 or not all(isinstance(d, int) and d > 0 for d in in_shape):
        raise ValueError(f"build_model: in_shape must be (C, H, W) of positive ints, got {in_shape!r}")
    unknown = sorted(set(kw) - set(model_options(name)))
    if unknown:
        raise TypeError(f"build_model({name!r}): unknown option(s) {', '.join(unknown)}; "
                        f"valid options: {', '.join(model_options(name)) or 'none'}")
    return MODELS[name](in_shape, int(num_classes), init.get_rng(rng), **kw)
