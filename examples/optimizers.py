"""An AlexNet-style CNN trained with SGD, with Adam, and with Adam plus dropout.

Runs (same architecture, same initial weights, same batches):
  SGD             momentum 0.9, lr 0.01, no dropout
  Adam            lr 1e-3 (betas 0.9, 0.999), no dropout
  Adam + dropout  the same Adam with the model's Dropout layers on (``--dropout``, default 0.25)

Model (``--model``). The default is ``cnn-5``, a smaller AlexNet-style net (five same-padded
convolutions 96-96-128-164-196, three max-pools, Dropout before two fully connected layers,
2.4M parameters on 28x28). ``alexnet`` (five convolutions up to 384 channels, two 4096-unit
layers: 35M parameters on 28x28, 46M on CIFAR-10) has 15x the parameters and twice the
multiply-adds per image (330M against 150M on 28x28), so it trains about half as fast; it is an
option, not the default.

Data. So that the default run takes a few minutes on 2 cores, it uses the first 300 training
images of every class of the embedded mini set (2,700 train / 300 validation) for 3 epochs and
the whole test set; ``--train-per-class 0`` uses every training image.

Prints a results table (accuracies and the mean confidence, i.e. the top softmax probability, on
the test set) and writes to ``--out`` (default ``out/optimizers``, ``out/optimizers-quick`` with
``--quick``):
  learning_curves.png         the three runs' loss and accuracy per epoch
  confusion_<run>.png         one test confusion matrix per run
  predictions.png             test images with the best run's prediction and confidence
  results.md                  the printed table

    python examples/optimizers.py [--model alexnet] [--epochs 3] [--dataset fashion-mnist] [--quick]
"""
import os
import time

import npnet
from npnet import losses, metrics, optim, plots
from npnet.functional import softmax
from npnet.data import DataLoader
from npnet.models import build_model
from npnet.train import Trainer

from _common import (eval_loader, exit_if_interrupted, load_data, make_parser, markdown_table,
                     publish, run)

# -- settings --------------------------------------------------------------------------------------
MODEL = "cnn-5"
EPOCHS = 3
TRAIN_PER_CLASS = 300
BATCH_SIZE = 64
DROPOUT = {"cnn-5": 0.25, "alexnet": 0.5}  # the p of each model's own default
# name: (optimizer, its settings, dropout on)
RUNS = {
    "SGD": (optim.SGD, dict(lr=0.01, momentum=0.9), False),
    "Adam": (optim.Adam, dict(lr=1e-3), False),
    "Adam + dropout": (optim.Adam, dict(lr=1e-3), True),
}
GRID = 32  # test images in predictions.png


def parse_args():
    p = make_parser(__doc__, "out/optimizers", "a few seconds: tiny data, 1 epoch per run",
                    epochs=EPOCHS, seed=0)
    p.add_argument("--model", default=MODEL, choices=sorted(DROPOUT))
    p.add_argument("--dropout", type=float, default=None, help="p of the dropout run (default: "
                   + ", ".join(f"{m} {p}" for m, p in DROPOUT.items()) + ")")
    p.add_argument("--train-per-class", type=int, default=TRAIN_PER_CLASS,
                   help=f"training images per class (default {TRAIN_PER_CLASS}; 0: all)")
    return p.parse_args()


def main():
    args = parse_args()
    start = time.perf_counter()
    npnet.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    if args.quick:  # smoke run: tiny data
        subset = dict(per_class=10, test_size=100)
    else:
        subset = dict(per_class=args.train_per_class or None)
    data = load_data(args.dataset, seed=args.seed, **subset)
    epochs = 1 if args.quick else args.epochs
    p_drop = DROPOUT[args.model] if args.dropout is None else args.dropout
    val_loader = eval_loader(data.x_val, data.y_val)

    results, histories, best = [], {}, None
    for name, (optimizer_class, settings, dropout_on) in RUNS.items():
        model = build_model(args.model, data.in_shape, len(data.classes), rng=args.seed,
                            dropout=p_drop if dropout_on else 0.0)
        criterion = losses.CrossEntropyLoss()
        optimizer = optimizer_class(model.parameters(), **settings)
        loader = DataLoader(data.x_train, data.y_train, BATCH_SIZE, shuffle=True, seed=args.seed)
        print(f"{name}:")
        t0 = time.perf_counter()
        trainer = Trainer(model, criterion, optimizer)
        histories[name] = trainer.fit(loader, val_loader, epochs)
        exit_if_interrupted(histories[name])
        seconds = time.perf_counter() - t0
        rows = histories[name].epochs

        probs = softmax(trainer.predict(data.x_test, batch_size=250))  # (N, C)
        pred = probs.argmax(axis=1)
        test_acc = metrics.accuracy(data.y_test, pred)
        results.append((name, optimizer_class.__name__, p_drop if dropout_on else 0.0, rows[-1],
                        test_acc, probs.max(axis=1).mean(), seconds))
        print(f"  {name:16s} test accuracy {test_acc:.4f}  ({seconds:.1f} s)")
        slug = name.lower().replace(" + ", "_").replace(" ", "_")
        plots.plot_confusion_matrix(metrics.confusion_matrix(data.y_test, pred, len(data.classes)),
                                    data.classes, path=os.path.join(args.out, f"confusion_{slug}.png"),
                                    title=f"{args.model}, {name}: test confusion matrix")
        if best is None or rows[-1]["val_accuracy"] > best[1]:
            best = (name, rows[-1]["val_accuracy"], probs[:GRID])

    plots.plot_learning_curves(histories, path=os.path.join(args.out, "learning_curves.png"),
                               title=f"{args.model} on {data.name}: SGD vs Adam vs Adam + dropout")
    grid = 8 if args.quick else GRID
    plots.plot_predictions(data.x_test[:grid], data.y_test[:grid], best[2][:grid], data.classes,
                           path=os.path.join(args.out, "predictions.png"))

    table = markdown_table(["run", "optimizer", "dropout", "train accuracy", "val accuracy",
                            "test accuracy", "mean confidence", "train time (s)"],
                           [(name, opt, f"{p:g}", f"{100 * last['train_accuracy']:.2f}%",
                             f"{100 * last['val_accuracy']:.2f}%", f"{100 * acc:.2f}%", f"{100 * conf:.1f}%",
                             f"{seconds:.1f}") for name, opt, p, last, acc, conf, seconds in results])
    publish(args.out, [f"Results of {args.model} ({model.num_parameters():,} parameters) on {data.name}: "
                       f"{len(data.y_train)} train / {len(data.y_val)} val / {len(data.y_test)} test images, "
                       f"epochs: {epochs}, batch {BATCH_SIZE}", table,
                       f"predictions.png shows the best run on the validation set: {best[0]}"])
    print(f"wall time {time.perf_counter() - start:.1f} s; figures and results.md in {args.out}/")


if __name__ == "__main__":
    run(main)
