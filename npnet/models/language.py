"""Character language models of the zoo: char-lstm and char-transformer (decoder-only, causal).

Both read token ids ``(N, T)`` int64 and return next-token logits ``(N, V, T)``: the class dim
second, as ``CrossEntropyLoss`` takes sequences (PyTorch's layout), so the Trainer's loss is
``criterion(model(ids), next_ids)``. Builders take ``in_shape = (T,)`` (a window of T ids) and
``num_classes = V``, the vocabulary size, which is also the number of input ids.
``model.generate(ids, length, temperature, rng)`` continues a prompt.
"""
import numpy as np

from .. import init, nn
from ..functional import softmax


def _check_ids(model, ids):
    if not isinstance(ids, np.ndarray) or ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        got = f"shape {ids.shape}, dtype {ids.dtype}" if isinstance(ids, np.ndarray) else type(ids).__name__
        raise ValueError(f"{type(model).__name__}: expected token ids of shape (N, T), integer, got {got}")
    return ids.shape


def sample_next(logits, temperature, rng):
    """One id per row of ``logits`` (N, V): the argmax for temperature 0, else drawn from
    softmax(logits / temperature) (in float64, so that the probabilities sum to 1)."""
    if temperature == 0:
        return logits.argmax(axis=1)
    p = softmax(logits.astype(np.float64) / temperature)  # (N, V)
    u = rng.random((len(p), 1))
    return np.minimum((p.cumsum(axis=1) < u).sum(axis=1), p.shape[1] - 1)


class _LanguageModel(nn.Module):
    """What both models share: the output layout, the backward of the head, ``generate``."""

    #: the dtype of the input: token ids (``summary`` and tools that make an example input read it)
    input_dtype = np.int64

    def _head(self, h):
        N, T, D = h.shape
        logits = self.fc(h.reshape(N * T, D)).reshape(N, T, -1)
        return logits.transpose(0, 2, 1)  # (N, V, T)

    def _head_backward(self, dout):
        N, V, T = dout.shape
        dh = self.fc.backward(np.ascontiguousarray(dout.transpose(0, 2, 1)).reshape(N * T, V))
        return dh.reshape(N, T, -1)

    def generate(self, ids, length, temperature=1.0, rng=None, context=None):
        """``ids`` (N, T0) followed by ``length`` sampled ids: (N, T0 + length), in eval mode and
        without caches (the model's mode is restored). ``context``: the Transformer sees the last
        ``context`` ids (default max_len; give the training windows' length, the positions it
        learnt); the LSTM carries its state through everything and ignores it."""
        _check_ids(self, ids)
        if ids.shape[1] < 1 or length < 0 or not temperature >= 0:
            raise ValueError(f"{type(self).__name__}.generate: need a prompt of >= 1 id, length >= 0 "
                             f"and temperature >= 0, got {ids.shape[1]}, {length}, {temperature}")
        rng, was_training = init.get_rng(rng), self.training
        self.eval()
        try:
            with nn.no_grad():
                return self._generate(ids.astype(np.int64), int(length), float(temperature), rng, context)
        finally:
            self.train(was_training)


class CharLSTM(_LanguageModel):
    """``embedding`` (V, E) -> ``lstm`` (E -> H, batch_first) -> ``fc`` (Linear(H, V)) at every step.

    Shape: ids (N, T) -> logits (N, V, T).
    """

    def __init__(self, vocab_size, embedding_dim=64, hidden_size=256, num_layers=2, dropout=0.0, rng=None):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, rng=rng)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers=num_layers, batch_first=True,
                            dropout=dropout, rng=rng)
        self.fc = nn.Linear(hidden_size, vocab_size, rng=rng)

    def step(self, ids, state=None):
        """``(logits (N, V, T), (h_n, c_n))`` for ids (N, T) after the LSTM state ``state``."""
        _check_ids(self, ids)
        h, state = self.lstm(self.embedding(ids), state)  # (N, T, H)
        self.cache = True
        return self._head(h), state

    def forward(self, ids):
        return self.step(ids)[0]

    def backward(self, dout, input_grad=True):
        self._saved()
        self.cache = None
        self.embedding.backward(self.lstm.backward(self._head_backward(dout)))
        return None  # integer ids have no gradient

    def _generate(self, ids, length, temperature, rng, context):
        logits, state = self.step(ids)
        out = [ids]
        for _ in range(length):
            nxt = sample_next(logits[:, :, -1], temperature, rng)[:, None]  # (N, 1)
            out.append(nxt)
            logits, state = self.step(nxt, state)
        return np.concatenate(out, axis=1)


class CausalTransformerLM(_LanguageModel):
    """Decoder-only Transformer: ``embedding`` (V, d_model) -> ``pos`` (sinusoidal) -> ``encoder``
    (pre-norm TransformerEncoder layers, GELU, under a causal mask: position t sees positions
    <= t only; a final LayerNorm) -> ``fc`` (Linear(d_model, V)) at every position.

    Shape: ids (N, T), T <= max_len -> logits (N, V, T). ``generate`` reads the last max_len ids.
    """

    def __init__(self, vocab_size, d_model=128, nhead=4, num_layers=2, dim_feedforward=512, dropout=0.1,
                 max_len=256, rng=None):
        super().__init__()
        self.max_len = int(max_len)
        self.embedding = nn.Embedding(vocab_size, d_model, rng=rng)
        self.pos = nn.PositionalEncoding(d_model, dropout, self.max_len, batch_first=True, rng=rng)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation="gelu",
                                           batch_first=True, norm_first=True, rng=rng)
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model), rng=rng)
        self.fc = nn.Linear(d_model, vocab_size, rng=rng)

    def extra_repr(self):
        return f"max_len={self.max_len}"

    def forward(self, ids):
        N, T = _check_ids(self, ids)
        x = self.pos(self.embedding(ids))  # (N, T, d_model)
        h = self.encoder(x, mask=nn.causal_mask(T, dtype=x.dtype))
        self.cache = True
        return self._head(h)

    def backward(self, dout, input_grad=True):
        self._saved()
        self.cache = None
        self.embedding.backward(self.pos.backward(self.encoder.backward(self._head_backward(dout))))
        return None  # integer ids have no gradient

    def _generate(self, ids, length, temperature, rng, context):
        T = self.max_len if context is None else max(1, min(int(context), self.max_len))
        for _ in range(length):
            logits = self.forward(ids[:, -T:])
            ids = np.concatenate([ids, sample_next(logits[:, :, -1], temperature, rng)[:, None]], axis=1)
        return ids


def _window(name, in_shape):
    if len(in_shape) != 1:
        raise ValueError(f"{name}: a language model takes in_shape (T,), the length of a window of "
                         f"token ids (num_classes is the vocabulary size); got {tuple(in_shape)}")
    return in_shape[0]


def char_lstm(in_shape, num_classes, rng, embedding_dim=64, hidden_size=256, num_layers=2, dropout=0.0):
    """``char-lstm``: Embedding(V, 64) -> LSTM(64, 256, 2 layers) -> Linear(256, V) (``CharLSTM``).
    V = 99 (python-source-mini): 887,843 parameters."""
    _window("char-lstm", in_shape)
    return CharLSTM(num_classes, embedding_dim, hidden_size, num_layers, dropout, rng)


def char_transformer(in_shape, num_classes, rng, d_model=128, nhead=4, num_layers=2, dim_feedforward=512,
                     dropout=0.1, max_len=256):
    """``char-transformer``: Embedding(V, 128) -> 2 causal pre-norm layers (4 heads, feed-forward
    512) -> LayerNorm -> Linear(128, V) (``CausalTransformerLM``); windows up to ``max_len``.
    V = 99: 422,243 parameters."""
    T = _window("char-transformer", in_shape)
    if T > max_len:
        raise ValueError(f"char-transformer: windows of {T} ids exceed max_len {max_len}; raise max_len")
    return CausalTransformerLM(num_classes, d_model, nhead, num_layers, dim_feedforward, dropout, max_len, rng)

