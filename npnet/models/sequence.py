"""Sequence classifiers of the zoo: rnn-rows, lstm-rows, gru-rows and transformer-rows.

They classify a sequence ``(N, T, F)`` of T steps of F features, e.g. a Fashion-MNIST image read
row by row (``npnet.data.Rows``: 28 steps of 28 pixels). Builders take ``in_shape = (T, F)``;
the recurrent ones accept any T, the Transformer any T up to ``max_len``.
"""
import numpy as np

from .. import nn
from ..nn._checks import check_input

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentClassifier(nn.Module):
    """A recurrent layer (``rnn``: RNN with tanh, ``lstm``, ``gru``) over the steps, then ``fc``
    on the last layer's final hidden state (forward and reverse side by side when bidirectional).

    Children: ``rnn`` (batch_first, PyTorch's weight names), ``fc`` (Linear(D*H, num_classes)).

    Shape: x (N, T, input_size) -> logits (N, num_classes).
    """

    def __init__(self, cell, input_size, hidden_size, num_classes, num_layers=1, bidirectional=False,
                 dropout=0.0, rng=None):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"RecurrentClassifier: cell must be one of {', '.join(CELLS)}, got {cell!r}")
        self.cell = cell
        self.rnn = CELLS[cell](input_size, hidden_size, num_layers=num_layers, batch_first=True,
                               dropout=dropout, bidirectional=bidirectional, rng=rng)
        self.fc = nn.Linear(self.rnn.num_directions * hidden_size, num_classes, rng=rng)

    def extra_repr(self):
        return f"cell={self.cell!r}"

    def forward(self, x):
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state  # (L*D, N, H); an LSTM's (h_n, c_n)
        D = self.rnn.num_directions
        last = np.concatenate(list(h_n[-D:]), axis=1)  # (N, D*H): the last layer's directions
        self.cache = h_n.shape
        return self.fc(last)

    def backward(self, dout, input_grad=True):
        shape = self._saved()
        self.cache = None
        D, (LD, N, H) = self.rnn.num_directions, shape
        dlast = self.fc.backward(dout)  # (N, D*H)
        dh_n = np.zeros(shape, dlast.dtype)
        dh_n[LD - D:] = dlast.reshape(N, D, H).transpose(1, 0, 2)
        d_state = (dh_n, None) if isinstance(self.rnn, nn.LSTM) else dh_n
        return self.rnn.backward((None, d_state), input_grad)  # (N, T, input_size) or None


class TransformerClassifier(nn.Module):
    """``embed`` (Linear(F, d_model) on every step) -> ``pos`` (sinusoidal PositionalEncoding) ->
    ``encoder`` (pre-norm TransformerEncoder, GELU, a final LayerNorm) -> the mean over the steps
    -> ``fc`` (Linear(d_model, num_classes)).

    Shape: x (N, T, input_size), T <= max_len -> logits (N, num_classes).
    """

    def __init__(self, input_size, num_classes, d_model=64, nhead=4, num_layers=2, dim_feedforward=128,
                 dropout=0.1, max_len=512, rng=None):
        super().__init__()
        self.input_size, self.d_model = int(input_size), int(d_model)
        self.embed = nn.Linear(input_size, d_model, rng=rng)
        self.pos = nn.PositionalEncoding(d_model, dropout, max_len, batch_first=True, rng=rng)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation="gelu",
                                           batch_first=True, norm_first=True, rng=rng)
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model), rng=rng)
        self.fc = nn.Linear(d_model, num_classes, rng=rng)

    def forward(self, x):
        check_input(self, x, (3,), f"(N, T, {self.input_size})", self.input_size, axis=2)
        N, T, F = x.shape
        h = self.embed(x.reshape(N * T, F)).reshape(N, T, self.d_model)
        h = self.encoder(self.pos(h))  # (N, T, d_model)
        self.cache = x.shape
        return self.fc(h.mean(axis=1))

    def backward(self, dout, input_grad=True):
        N, T, F = self._saved()
        self.cache = None
        dmean = self.fc.backward(dout)  # (N, d_model)
        dh = np.repeat(dmean[:, None, :] / dmean.dtype.type(T), T, axis=1)  # (N, T, d_model)
        dh = self.pos.backward(self.encoder.backward(dh))
        dx = self.embed.backward(dh.reshape(N * T, self.d_model), input_grad)
        return None if dx is None else dx.reshape(N, T, F)


def _steps(name, in_shape):
    """(T, F) of a sequence model's ``in_shape``; ValueError otherwise."""
    if len(in_shape) != 2:
        raise ValueError(f"{name}: in_shape must be (T, F), steps and features per step, e.g. "
                         f"(28, 28) for Fashion-MNIST read row by row; got {tuple(in_shape)}")
    return in_shape


def _recurrent(cell):
    def build(in_shape, num_classes, rng, hidden_size=128, num_layers=1, bidirectional=False,
              dropout=0.0):
        T, F = _steps(f"{cell}-rows", in_shape)
        return RecurrentClassifier(cell, F, hidden_size, num_classes, num_layers, bidirectional,
                                   dropout, rng)
    build.__name__ = f"{cell}_rows"
    build.__doc__ = (f"``{cell}-rows``: {CELLS[cell].__name__}(F, hidden_size, num_layers) over the T "
                     "steps, then Linear on the last hidden state (``RecurrentClassifier``). For "
                     "(28, 28) with the defaults (hidden 128, 1 layer): "
                     + {"rnn": "21,514", "lstm": "82,186", "gru": "61,962"}[cell] + " parameters.")
    return build


rnn_rows, lstm_rows, gru_rows = _recurrent("rnn"), _recurrent("lstm"), _recurrent("gru")


def transformer_rows(in_shape, num_classes, rng, d_model=64, nhead=4, num_layers=2, dim_feedforward=128,
                     dropout=0.1):
    """``transformer-rows``: a small pre-norm Transformer encoder over the T steps, mean-pooled
    (``TransformerClassifier``). For (28, 28) with the defaults: 69,578 parameters."""
    T, F = _steps("transformer-rows", in_shape)
    return TransformerClassifier(F, num_classes, d_model, nhead, num_layers, dim_feedforward, dropout,
                                 max(512, T), rng)
