"""The PyTorch twin of compare_sequence_models.py, for RESULTS.md: the same recipe in torch.

Same data (the same images, split and row sequences), the same batches in the same order (npnet's
DataLoader with the same seed), the same initial weights (npnet's seeded zoo model, its state dict
loaded into torch.nn modules built with the same names and architecture), the same optimizer
(Adam, lr 1e-3), clipping (norm 1), cosine schedule and evaluation. What differs: the dropout
masks of the Transformer (dropout 0.1: torch draws its own with its own generator, seeded by
``--seed``) and float32 rounding; the RNN, LSTM and GRU have no dropout and follow npnet's run to
rounding. Prints the same table and writes it to ``--out`` (default
``out/compare_sequence_models_torch``) as ``results.md``. PyTorch (``pip install torch==2.13.0``)
is a reference here, never a dependency of npnet.

    python examples/compare_sequence_models_torch.py [--epochs 10] [--quick] [--models RNN GRU]
"""
import math
import os
import time

import numpy as np
import torch
from torch import nn

from npnet.data import DataLoader
from npnet.models import build_model

from _common import EVAL_BATCH, publish, run
from compare_sequence_models import BATCH, CLIP, LR, MODELS, load_sequences, parse_args, results_table


class RecurrentTwin(nn.Module):
    """npnet's RecurrentClassifier: ``rnn`` (RNN tanh / LSTM / GRU, batch_first), then ``fc`` on
    the last layer's final hidden state."""

    def __init__(self, cell, input_size, hidden_size=128, num_classes=10):
        super().__init__()
        self.rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](input_size, hidden_size,
                                                                         batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x):  # (N, T, F) -> (N, num_classes)
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state  # (1, N, H); an LSTM's (h_n, c_n)
        return self.fc(h_n[-1])


class PositionalEncoding(nn.Module):
    """npnet.nn.PositionalEncoding: adds the sinusoidal table (computed in float64, rounded to
    float32), then dropout; no state-dict entries."""

    def __init__(self, d, dropout, max_len):
        super().__init__()
        pos, div = torch.arange(max_len)[:, None], torch.exp(torch.arange(0, d, 2) * (-math.log(1e4) / d))
        pe = torch.zeros(max_len, d, dtype=torch.float64)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
        self.register_buffer("pe", pe.float(), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):  # (N, T, d)
        return self.dropout(x + self.pe[:x.shape[1]])


class TransformerTwin(nn.Module):
    """npnet's TransformerClassifier: ``embed`` -> ``pos`` -> pre-norm ``encoder`` (GELU, final
    LayerNorm) -> the mean over the steps -> ``fc``."""

    def __init__(self, input_size, num_classes=10, d=64, nhead=4, num_layers=2, ff=128, dropout=0.1,
                 max_len=512):
        super().__init__()
        self.embed, self.pos = nn.Linear(input_size, d), PositionalEncoding(d, dropout, max_len)
        layer = nn.TransformerEncoderLayer(d, nhead, ff, dropout, "gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d),
                                             enable_nested_tensor=False)
        self.fc = nn.Linear(d, num_classes)

    def forward(self, x):  # (N, T, F) -> (N, num_classes)
        return self.fc(self.encoder(self.pos(self.embed(x))).mean(dim=1))


def twin_of(model_name, model):
    """The torch twin of the npnet zoo model ``model`` (named ``model_name``), with its weights."""
    F = model.rnn.input_size if model_name != "transformer-rows" else model.input_size
    twin = TransformerTwin(F) if model_name == "transformer-rows" else RecurrentTwin(model_name.split("-")[0], F)
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    return twin


def accuracy(twin, x, y):
    """Accuracy of ``twin`` on ``x``, ``y`` in eval mode, EVAL_BATCH at a time (as npnet's)."""
    twin.eval()
    with torch.no_grad():
        pred = np.concatenate([twin(torch.from_numpy(x[i:i + EVAL_BATCH])).argmax(1).numpy()
                               for i in range(0, len(x), EVAL_BATCH)])
    twin.train()
    return float(np.mean(pred == y))


def train_step(twin, opt, xb, yb):
    """One step as npnet's train_step with clip_before_step: the batch's mean loss (a float)."""
    opt.zero_grad()
    loss = nn.functional.cross_entropy(twin(torch.from_numpy(xb)), torch.from_numpy(yb))
    loss.backward()
    nn.utils.clip_grad_norm_(twin.parameters(), CLIP)
    opt.step()
    return loss.item()


def main():
    args = parse_args(__doc__, "out/compare_sequence_models_torch", tune=False)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    data, x_train, x_val, x_test, epochs = load_sequences(args)
    results = []
    for name in args.models:
        model_name = MODELS[name]
        twin = twin_of(model_name, build_model(model_name, x_train.shape[1:], 10, rng=args.seed))
        opt = torch.optim.Adam(twin.parameters(), lr=LR)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
        loader = DataLoader(x_train, data.y_train, BATCH, seed=args.seed)
        params = sum(p.numel() for p in twin.parameters())
        print(f"{name} ({model_name} in torch {torch.__version__}, {params:,} parameters): {epochs} epochs")
        start, val_accs = time.perf_counter(), []
        twin.train()
        for epoch in range(1, epochs + 1):
            losses = [train_step(twin, opt, xb, yb) for xb, yb in loader]
            val_accs.append(accuracy(twin, x_val, data.y_val))
            print(f"  epoch {epoch}/{epochs}: lr {sched.get_last_lr()[0]:g}, mean batch loss "
                  f"{np.mean(losses):.4f}, val accuracy {100 * val_accs[-1]:.2f}%")
            sched.step()
        seconds = time.perf_counter() - start
        test_acc = accuracy(twin, x_test, data.y_test)
        results.append((name, params, epochs, max(val_accs), test_acc, seconds))
        print(f"  {name:12s} test accuracy {test_acc:.4f}  ({seconds:.1f} s)")
    publish(args.out, results_table(data, results))
    print(f"\nresults.md in {args.out}/")


if __name__ == "__main__":
    run(main)
