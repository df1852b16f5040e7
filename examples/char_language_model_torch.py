"""The PyTorch twin of char_language_model.py, for RESULTS.md: the same recipe in torch.

Same data (npnet's corpus, split and windows), the same batches in the same order (npnet's
DataLoader with the same seed), the same initial weights (npnet's seeded model, its state dict
loaded into the torch modules, whose names it shares), the same optimizer, clipping and cosine
schedule. What differs: the dropout masks of the Transformer (torch draws its own) and float32
rounding. PyTorch (``pip install torch==2.13.0``) is a reference here, never a dependency of npnet.

    python examples/char_language_model_torch.py [--epochs 3] [--dataset python-source]
"""
import argparse
import math

import numpy as np
import torch
from torch import nn

from npnet.data import DataLoader, load_char_corpus, token_windows
from npnet.models import build_model

from char_language_model import BATCH, CLIP, RUNS, SEED, SEQ_LEN, VAL_FRACTION


class LSTMLM(nn.Module):
    def __init__(self, V):
        super().__init__()
        self.embedding, self.lstm = nn.Embedding(V, 64), nn.LSTM(64, 256, 2, batch_first=True)
        self.fc = nn.Linear(256, V)

    def forward(self, ids):
        return self.fc(self.lstm(self.embedding(ids))[0]).transpose(1, 2)  # (N, V, T)


class CausalLM(nn.Module):
    def __init__(self, V, d=128, max_len=256):
        super().__init__()
        self.embedding, self.fc = nn.Embedding(V, d), nn.Linear(d, V)
        layer = nn.TransformerEncoderLayer(d, 4, 512, 0.1, "gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        pos, div = torch.arange(max_len)[:, None], torch.exp(torch.arange(0, d, 2) * (-math.log(1e4) / d))
        pe = torch.zeros(max_len, d, dtype=torch.float64)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
        self.register_buffer("pe", pe.float(), persistent=False)
        self.dropout = nn.Dropout(0.1)

    def forward(self, ids):
        T = ids.shape[1]
        x = self.dropout(self.embedding(ids) + self.pe[:T])
        mask = nn.Transformer.generate_square_subsequent_mask(T)
        return self.fc(self.encoder(x, mask=mask, is_causal=True)).transpose(1, 2)


def mean_loss(model, x, y):
    model.eval()
    with torch.no_grad():
        losses = [nn.functional.cross_entropy(model(torch.from_numpy(np.array(x[i:i + 128]))),
                                              torch.from_numpy(np.array(y[i:i + 128])),
                                              reduction="sum").item() for i in range(0, len(x), 128)]
    model.train()
    return sum(losses) / y.size


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--dataset", default="python-source-mini")
    args = p.parse_args()
    torch.manual_seed(SEED)
    corpus = load_char_corpus(args.dataset)
    train, val, test = (token_windows(ids, SEQ_LEN) for ids in corpus.split(VAL_FRACTION))
    V = len(corpus.vocab)
    for name, (model_name, options, opt_class, lr, decay) in RUNS.items():
        twin = (LSTMLM if model_name == "char-lstm" else CausalLM)(V)
        state = build_model(model_name, (SEQ_LEN,), V, rng=SEED, **options).state_dict()
        twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
        torch_opt = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}[opt_class.__name__]
        opt = torch_opt(twin.parameters(), lr=lr, weight_decay=decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
        loader = DataLoader(*train, BATCH, seed=SEED)
        for epoch in range(1, args.epochs + 1):
            for xb, yb in loader:
                opt.zero_grad()
                loss = nn.functional.cross_entropy(twin(torch.from_numpy(xb)), torch.from_numpy(yb))
                loss.backward()
                nn.utils.clip_grad_norm_(twin.parameters(), CLIP)
                opt.step()
            sched.step()
            print(f"{name} epoch {epoch}: val perplexity {math.exp(mean_loss(twin, *val)):.3f}", flush=True)
        test_loss = mean_loss(twin, *test)
        print(f"{name} (torch {torch.__version__}): test perplexity {math.exp(test_loss):.3f}, "
              f"{test_loss / math.log(2):.3f} bits/char")


if __name__ == "__main__":
    main()
