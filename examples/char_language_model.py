"""Character language models on Python's own sources: an LSTM and a small causal Transformer.

The text is the corpus embedded in npnet (19 modules of CPython 3.11.7's standard library,
292 kB, PSF licence); ``--dataset python-source`` reads every ``Lib/*.py`` of the Python running
this script (about 4.7 MB). It is cut into consecutive train / validation / test pieces (90 / 5 /
5 %) and windows of 128 characters; each target is the next character. Models from the zoo:
1. char-lstm         Embedding(V, 64) -> LSTM(64, 256, 2 layers) -> Linear(256, V)
2. char-transformer  Embedding(V, 128), sinusoidal positions, 2 pre-norm layers under a causal
                     mask (4 heads, feed-forward 512, GELU) -> LayerNorm -> Linear(128, V)
Both: Adam (lr 2e-3) / AdamW (lr 1e-3, weight decay 0.01), cosine schedule, gradients clipped to
norm 1, batch 32, cross-entropy over (N, V, T). After every epoch a sample is printed, drawn at
temperature 0.8 from the same prompt. Perplexity is exp(mean cross-entropy per character).

Prints the samples and a results table, and writes to ``--out`` (default
``out/char_language_model``, ``out/char_language_model-quick`` with ``--quick``):
  perplexity.png   training and validation perplexity per epoch, both models
  results.md       the printed table and the last samples

    python examples/char_language_model.py [--dataset python-source] [--epochs 5] [--quick]
"""
import math
import os
import time

from threadpoolctl import threadpool_limits

import npnet
from npnet import losses, optim
from npnet.data import DataLoader, load_char_corpus, token_windows
from npnet.models import build_model
from npnet.plots._figure import _figure, save_figure
from npnet.run.experiment import clip_before_step
from npnet.run.sample import sample_text
from npnet.train import Callback, Trainer

from _common import exit_if_interrupted, make_parser, markdown_table, publish, run

# -- settings --------------------------------------------------------------------------------------
SEED = 0
SEQ_LEN, BATCH, CLIP = 128, 32, 1.0
VAL_FRACTION = 0.05  # and as much for test, at the end of the text
PROMPT, SAMPLE_LENGTH, TEMPERATURE = "def ", 200, 0.8
# name: (model, options, optimizer, learning rate, weight decay)
RUNS = {"LSTM": ("char-lstm", {}, optim.Adam, 2e-3, 0.0),
        "Transformer": ("char-transformer", {}, optim.AdamW, 1e-3, 0.01)}
BLAS_THREADS = 1  # NumPy's BLAS at one thread: see examples/compare_sequence_models.py


class PrintSample(Callback):
    """After every epoch: a sample from ``PROMPT``, printed and kept in ``self.last``."""

    def __init__(self, vocab, length):
        self.vocab, self.length, self.last = vocab, length, ""

    def on_epoch_end(self, trainer, epoch, logs):
        self.last = sample_text(trainer.model, self.vocab, PROMPT, self.length, TEMPERATURE, SEED, SEQ_LEN)
        print(f"--- sample after epoch {epoch} (val perplexity {math.exp(logs['val_loss']):.2f}):\n"
              f"{self.last}\n---")


def parse_args():
    p = make_parser(__doc__, "out/char_language_model", "seconds: 48 windows of 32 characters, 1 epoch",
                    dataset=False, epochs=5)
    p.add_argument("--dataset", default="python-source-mini", choices=["python-source-mini", "python-source"],
                   help="python-source-mini is embedded in npnet; python-source is this Python's stdlib")
    return p.parse_args()


def windows(ids, seq_len, limit):
    x, y = token_windows(ids, seq_len)
    return (x, y) if limit is None else (x[:limit], y[:limit])


def plot_perplexity(histories, path):
    fig = _figure(6, 4)
    ax = fig.subplots()
    for i, (name, h) in enumerate(histories.items()):
        epochs = h["epoch"]
        ax.plot(epochs, [math.exp(v) for v in h["train_loss"]], "--", color=f"C{i}", label=f"{name} train")
        ax.plot(epochs, [math.exp(v) for v in h["val_loss"]], "-o", color=f"C{i}", label=f"{name} validation")
    ax.set(xlabel="epoch", ylabel="perplexity (per character)", yscale="log",
           title="character language models")
    ax.legend()
    save_figure(fig, path)


def main():
    args = parse_args()
    npnet.manual_seed(SEED)
    os.makedirs(args.out, exist_ok=True)
    corpus = load_char_corpus(args.dataset)
    vocab = corpus.vocab
    seq_len, limit = (32, 48) if args.quick else (SEQ_LEN, None)
    train, val, test = corpus.split(VAL_FRACTION)
    (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = (windows(p, seq_len, limit) for p in (train, val, test))
    epochs = 1 if args.quick else args.epochs
    print(f"{corpus}: {len(x_tr)} train / {len(x_val)} val / {len(x_te)} test windows of {seq_len}")

    results, histories, samples = [], {}, {}
    for name, (model_name, options, opt_class, lr, decay) in RUNS.items():
        model = build_model(model_name, in_shape=(seq_len,), num_classes=len(vocab), rng=SEED, **options)
        optimizer = clip_before_step(opt_class(model.parameters(), lr=lr, weight_decay=decay), CLIP)
        printer = PrintSample(vocab, 60 if args.quick else SAMPLE_LENGTH)
        trainer = Trainer(model, losses.CrossEntropyLoss(), optimizer,
                          optim.CosineAnnealingLR(optimizer, epochs), callbacks=[printer])
        print(f"{name} ({model_name}, {model.num_parameters():,} parameters): {epochs} epochs")
        start = time.perf_counter()
        with threadpool_limits(BLAS_THREADS, user_api="blas"):
            histories[name] = trainer.fit(DataLoader(x_tr, y_tr, BATCH, seed=SEED),
                                          DataLoader(x_val, y_val, 4 * BATCH, shuffle=False), epochs)
            exit_if_interrupted(histories[name])
            seconds = time.perf_counter() - start
            test_loss = trainer.evaluate(DataLoader(x_te, y_te, 4 * BATCH, shuffle=False))["loss"]
        samples[name] = printer.last
        results.append((name, model.num_parameters(), epochs, math.exp(histories[name]["val_loss"][-1]),
                        math.exp(test_loss), test_loss / math.log(2), seconds))

    plot_perplexity(histories, os.path.join(args.out, "perplexity.png"))
    table = markdown_table(["model", "parameters", "epochs", "val perplexity", "test perplexity",
                            "test bits/char", "train time (s)"],
                           [(n, f"{p:,}", str(e), f"{v:.3f}", f"{t:.3f}", f"{b:.3f}", f"{s:.1f}")
                            for n, p, e, v, t, b, s in results])
    blocks = [f"Results on {corpus.name} ({len(x_te)} test windows of {seq_len} characters, "
              f"vocabulary of {len(vocab)})", table]
    blocks += [f"Last sample of the {n} (prompt {PROMPT!r}, temperature {TEMPERATURE}):\n\n    "
               + text.replace("\n", "\n    ") for n, text in samples.items()]
    publish(args.out, blocks)
    print(f"\nfigures and results.md in {args.out}/")


if __name__ == "__main__":
    run(main)
