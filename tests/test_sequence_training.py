"""The sequence layers with npnet's optimizers and losses, end to end: a small LSTM classifier and
a small causal Transformer language model learn toy tasks in a few dozen Adam steps (float32)."""
import numpy as np

from npnet import nn
from npnet.losses import CrossEntropyLoss
from npnet.nn.utils import clip_grad_norm_
from npnet.optim import Adam


def test_lstm_classifier_learns_the_sign_of_a_sum():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6, 2)).astype(np.float32)  # (N, T, features)
    y = (x[:, :, 0].sum(axis=1) > 0).astype(np.int64)  # needs the whole sequence
    lstm, head = nn.LSTM(2, 8, batch_first=True, rng=1), nn.Linear(8, 2, rng=2)
    params = list(lstm.parameters()) + list(head.parameters())
    opt, criterion = Adam(params, lr=0.05), CrossEntropyLoss()
    losses = []
    for _ in range(40):
        opt.zero_grad()
        _, (h_n, c_n) = lstm(x)
        losses.append(criterion(head(h_n[-1]), y))
        dh = np.zeros_like(h_n)
        dh[-1] = head.backward(criterion.backward())
        lstm.backward((None, (dh, None)), input_grad=False)
        clip_grad_norm_(params, 5.0)
        opt.step()
    assert losses[-1] < 0.05 * losses[0]
    assert all(p.data.dtype == np.float32 for p in params)


def test_causal_transformer_learns_to_repeat_the_previous_token():
    rng = np.random.default_rng(1)
    V, D, T, N = 6, 16, 8, 16
    tokens = rng.integers(1, V, (N, T))
    targets = np.concatenate([np.zeros((N, 1), np.int64), tokens[:, :-1]], axis=1)  # y_t = x_{t-1}
    targets[:, 0] = -100  # nothing to predict at t = 0: ignored
    emb, pos = nn.Embedding(V, D, rng=2), nn.PositionalEncoding(D, dropout=0.0, batch_first=True)
    enc = nn.TransformerEncoderLayer(D, 2, 32, dropout=0.0, batch_first=True, norm_first=True, rng=3)
    head = nn.Linear(D, V, rng=4)
    mods = [emb, enc, head]
    opt = Adam([p for m in mods for p in m.parameters()], lr=0.02)
    criterion, mask = CrossEntropyLoss(), nn.causal_mask(T)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        h = enc(pos(emb(tokens)), src_mask=mask)  # (N, T, D)
        logits = head(h.reshape(-1, D)).reshape(N, T, V).transpose(0, 2, 1)  # (N, V, T)
        losses.append(criterion(logits, targets))
        dlogits = criterion.backward().transpose(0, 2, 1).reshape(-1, V)
        dh = head.backward(np.ascontiguousarray(dlogits)).reshape(N, T, D)
        emb.backward(pos.backward(enc.backward(dh)))
        opt.step()
    assert losses[-1] < 0.05 * losses[0]
