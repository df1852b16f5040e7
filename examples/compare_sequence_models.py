"""RNN vs LSTM vs GRU vs Transformer on Fashion-MNIST read row by row (sequential Fashion-MNIST).

Every image becomes a sequence of its 28 rows, 28 pixels each (``npnet.data.Rows`` after the
usual normalisation): a model sees one row per step and must remember the earlier ones. Models
from the zoo, each ending in Linear(., 10):
1. rnn-rows          RNN(28, 128), tanh, the last hidden state
2. lstm-rows         LSTM(28, 128), the last hidden state
3. gru-rows          GRU(28, 128), the last hidden state
4. transformer-rows  Linear(28, 64) per row, sinusoidal positions, 2 pre-norm encoder layers
                     (4 heads, feed-forward 128, GELU), the mean over the rows
All four: Adam (lr 1e-3), cosine schedule, gradients clipped to norm 1, batch 128, cross-entropy.

Runs on the Fashion-MNIST subset embedded in npnet; ``--dataset fashion-mnist`` uses the full
60k/10k set. Prints a results table and writes to ``--out`` (default ``out/compare_sequence_models``,
``out/compare_sequence_models-quick`` with ``--quick``):
  learning_curves.png   the four learning curves side by side
  results.md            the printed table

    python examples/compare_sequence_models.py [--dataset fashion-mnist] [--epochs 10] [--quick]
                                               [--models RNN GRU] [--seed 0]

``compare_sequence_models_torch.py`` is its PyTorch twin (same data, batches, initial weights).
"""
import os
import time

from threadpoolctl import threadpool_limits

import npnet
from npnet import losses, optim, plots
from npnet.data import DataLoader, Rows
from npnet.models import build_model
from npnet.run.experiment import clip_before_step
from npnet.train import Trainer

from _common import (eval_loader, exit_if_interrupted, load_data, make_parser, markdown_table,
                     publish, results_on, run)

# -- settings --------------------------------------------------------------------------------------
SEED = 0
VAL_FRACTION = 0.1
BATCH, LR, CLIP = 128, 1e-3, 1.0
MODELS = {"RNN": "rnn-rows", "LSTM": "lstm-rows", "GRU": "gru-rows", "Transformer": "transformer-rows"}
# NumPy's own BLAS at one thread: the recurrent and attention layers multiply with NumPy, between
# npnet's Numba kernels, and NumPy's idle BLAS workers spin and take the cores from them (on a
# shared 2-core EPYC, 7 December: lstm-rows' train step 144 ms at one thread, 3,228 ms at two)
BLAS_THREADS = 1


def parse_args(doc=__doc__, out="out/compare_sequence_models", tune=True):
    """The command line, shared with the PyTorch twin (which has no --tune)."""
    p = make_parser(doc, out, "seconds: 300 images, 1 epoch each", epochs=10, seed=SEED, tune=tune)
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS),
                   help="which models to train, in the table's order (default all four)")
    args = p.parse_args()
    args.models = [m for m in MODELS if m in args.models]
    return args


def load_sequences(args):
    """The images of ``args.dataset`` (a subset with ``--quick``) as row sequences:
    (data, x_train, x_val, x_test), each x (N, 28, 28), and the number of epochs."""
    quick = dict(per_class=30, test_size=200) if args.quick else {}
    data = load_data(args.dataset, val_fraction=VAL_FRACTION, seed=args.seed, **quick)
    rows = Rows()  # (N, 1, 28, 28) -> (N, 28, 28): 28 steps of 28 pixels
    x_train, x_val, x_test = rows(data.x_train), rows(data.x_val), rows(data.x_test)
    print(f"sequences of {x_train.shape[1]} steps x {x_train.shape[2]} features")
    return data, x_train, x_val, x_test, 1 if args.quick else args.epochs


def results_table(data, results):
    """The printed and written results: a title and the table of (name, parameters, epochs,
    best val accuracy, test accuracy, seconds) rows."""
    return [f"Results on {data.name} read row by row ({len(data.y_test)} test images)",
            markdown_table(["model", "parameters", "epochs", "best val accuracy", "test accuracy",
                            "train time (s)"],
                           [(name, f"{params:,}", str(ep), f"{100 * val:.2f}%", f"{100 * acc:.2f}%",
                             f"{sec:.1f}") for name, params, ep, val, acc, sec in results])]


def main():
    args = parse_args()
    npnet.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    data, x_train, x_val, x_test, epochs = load_sequences(args)

    results, histories = [], {}
    for name in args.models:
        model_name = MODELS[name]
        model = build_model(model_name, in_shape=x_train.shape[1:], num_classes=10, rng=args.seed)
        optimizer = clip_before_step(optim.Adam(model.parameters(), lr=LR), CLIP)
        scheduler = optim.CosineAnnealingLR(optimizer, epochs)
        loader = DataLoader(x_train, data.y_train, BATCH, seed=args.seed)
        print(f"{name} ({model_name}, {model.num_parameters():,} parameters): {epochs} epochs")
        start = time.perf_counter()
        trainer = Trainer(model, losses.CrossEntropyLoss(), optimizer, scheduler)
        with threadpool_limits(BLAS_THREADS, user_api="blas"):
            histories[name] = trainer.fit(loader, eval_loader(x_val, data.y_val), epochs)
            exit_if_interrupted(histories[name])
            seconds = time.perf_counter() - start
            _, test_acc, _ = results_on(trainer, x_test, data.y_test)
        best_val = max(histories[name]["val_accuracy"])
        results.append((name, model.num_parameters(), epochs, best_val, test_acc, seconds))
        print(f"  {name:12s} test accuracy {test_acc:.4f}  ({seconds:.1f} s)")

    plots.plot_learning_curves(histories, path=os.path.join(args.out, "learning_curves.png"),
                               title=f"{data.name} read row by row", side_by_side=True)
    publish(args.out, results_table(data, results))
    print(f"\nfigures and results.md in {args.out}/")


if __name__ == "__main__":
    run(main)
