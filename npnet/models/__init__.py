"""The model zoo: ``build_model(name, in_shape, num_classes, **kw)`` and ``summary``.

Names: linear, mlp, cnn-small, cnn-bn, cnn-5, alexnet, resnet32, mknet, mknet6 (images);
rnn-rows, lstm-rows, gru-rows, transformer-rows (sequences); char-lstm, char-transformer
(language models). Each builder's docstring describes its architecture and parameter counts.
``in_shape`` is one sample's shape without the batch dim, by the model's input kind
(``input_kind(name)``): "image" (C, H, W); "sequence" (T, F), T steps of F features (an image
read row by row: ``npnet.data.Rows``); "tokens" (T,), a window of T token ids, with
``num_classes`` the vocabulary size (ids in, next-id logits out).
"""
import inspect

from .. import init
from .language import CausalTransformerLM, CharLSTM, char_lstm, char_transformer
from .mknet import KernelGate, MultiKernelConv, mknet, mknet6
from .resnet import BasicBlock, ShortcutA, resnet32
from .sequence import (RecurrentClassifier, TransformerClassifier, gru_rows, lstm_rows, rnn_rows,
                       transformer_rows)
from .simple import alexnet, cnn5, cnn_bn, cnn_small, linear, mlp
from .summary import summary

__all__ = ["build_model", "summary", "model_options", "input_kind", "MODELS", "INPUT_KINDS",
           "KernelGate", "MultiKernelConv", "BasicBlock", "ShortcutA", "RecurrentClassifier",
           "TransformerClassifier", "CharLSTM", "CausalTransformerLM"]

#: model name -> its builder ``f(in_shape, num_classes, rng, **options)``; ``build_model`` calls it.
MODELS = {"linear": linear, "mlp": mlp, "cnn-small": cnn_small, "cnn-bn": cnn_bn, "cnn-5": cnn5,
          "alexnet": alexnet, "resnet32": resnet32, "mknet": mknet, "mknet6": mknet6,
          "rnn-rows": rnn_rows, "lstm-rows": lstm_rows, "gru-rows": gru_rows,
          "transformer-rows": transformer_rows,
          "char-lstm": char_lstm, "char-transformer": char_transformer}
#: input kind -> (the in_shape it takes, in words; its length)
INPUT_KINDS = {"image": ("(C, H, W)", 3), "sequence": ("(T, F): steps, features per step", 2),
               "tokens": ("(T,): the length of a window of token ids", 1)}
_KINDS = {"rnn-rows": "sequence", "lstm-rows": "sequence", "gru-rows": "sequence",
          "transformer-rows": "sequence", "char-lstm": "tokens", "char-transformer": "tokens"}


def _known(name, who):
    if name not in MODELS:
        raise ValueError(f"{who}: unknown model {name!r}; expected one of {', '.join(MODELS)}")


def input_kind(name):
    """What a zoo model reads: "image" (C, H, W), "sequence" (T, F) or "tokens" (T,) int64 ids."""
    _known(name, "input_kind")
    return _KINDS.get(name, "image")


def model_options(name):
    """The keyword options of a zoo model's builder, e.g. ``['hidden', 'activation']`` for mlp."""
    _known(name, "model_options")
    return list(inspect.signature(MODELS[name]).parameters)[3:]  # after in_shape, num_classes, rng


def build_model(name, in_shape=(3, 32, 32), num_classes=10, rng=None, **kw):
    """A fresh float32 model from the zoo.

    name: one of ``MODELS``; in_shape: one sample's shape, by ``input_kind(name)``: (C, H, W)
    for an image model, (T, F) for a sequence model, (T,) for a language model (whose
    num_classes is the vocabulary size); rng: Generator, int seed or None (npnet's default
    generator, see ``npnet.manual_seed``) for the weights and the Dropout masks; kw: the builder's
    own options (e.g. ``hidden=(100,), activation='relu'`` for mlp).
    """
    _known(name, "build_model")
    in_shape = tuple(in_shape)
    kind = input_kind(name)
    words, ndim = INPUT_KINDS[kind]
    if len(in_shape) != ndim or not all(isinstance(d, int) and d > 0 for d in in_shape):
        what = {"image": "an image model", "sequence": "a sequence model",
                "tokens": "a language model"}[kind]
        raise ValueError(f"build_model({name!r}): {what} takes in_shape {words}, of positive ints; "
                         f"got {in_shape!r}")
    if int(num_classes) < 1:
        raise ValueError(f"build_model({name!r}): num_classes must be >= 1, got {num_classes}")
    unknown = sorted(set(kw) - set(model_options(name)))
    if unknown:
        raise TypeError(f"build_model({name!r}): unknown option(s) {', '.join(unknown)}; "
                        f"valid options: {', '.join(model_options(name)) or 'none'}")
    return MODELS[name](in_shape, int(num_classes), init.get_rng(rng), **kw)
