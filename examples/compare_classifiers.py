"""Four classifiers on Fashion-MNIST, from a linear model to a CNN, each trained by the loop below.

1. linear classifier, MSE on one-hot targets, full-batch gradient descent
2. 2-layer network (200 sigmoid units), MSE, full-batch gradient descent
3. the same network, MSE, mini-batch SGD (batch 500)
4. cnn-small (3 x [conv3x3 -> ReLU -> max-pool], Linear 64 sigmoid, Linear 10), cross-entropy,
   SGD with momentum

Runs on the Fashion-MNIST subset embedded in npnet (no download, a few minutes on 2 cores);
``--dataset fashion-mnist`` uses the full 60k/10k set, ``--dataset cifar10`` CIFAR-10.
The mini-batch runs show their progress per epoch; the full-batch runs (hundreds of one-step
epochs) only their result. Prints a results table and writes to ``--out`` (default
``out/compare_classifiers``, ``out/compare_classifiers-quick`` with ``--quick``):
  learning_curves.png   the four learning curves side by side
  linear_weights.png    the linear classifier's weights, one image per class
  confusion_cnn.png     the CNN's test confusion matrix
  results.md            the printed table

    python examples/compare_classifiers.py [--dataset fashion-mnist] [--epochs-scale 2] [--quick]
"""
import os
import time

import npnet
from npnet import losses, metrics, optim, plots
from npnet.data import DataLoader
from npnet.models import build_model
from npnet.train import Trainer

from _common import (eval_loader, exit_if_interrupted, load_data, make_parser, markdown_table,
                     publish, results_on, run)

# -- settings --------------------------------------------------------------------------------------
SEED = 0
VAL_FRACTION = 0.1
# name: (model, model options, loss, optimizer settings, batch size (None = full batch), epochs)
RUNS = {  # learning rates tuned on the embedded subset (MSE is a mean over N x 10 entries)
    "linear (MSE, GD)": ("linear", {}, "mse", dict(lr=0.03), None, 600),
    "2-layer (MSE, GD)": ("mlp", dict(hidden=(200,), activation="sigmoid"), "mse", dict(lr=0.1), None, 400),
    "2-layer (MSE, SGD b500)": ("mlp", dict(hidden=(200,), activation="sigmoid"), "mse", dict(lr=0.2), 500, 30),
    "cnn-small (CE, momentum)": ("cnn-small", {}, "ce", dict(lr=0.05, momentum=0.9), 128, 10),
}


def parse_args():
    p = make_parser(__doc__, "out/compare_classifiers", "a few seconds: tiny data, 2 epochs each")
    p.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every run's epochs")
    return p.parse_args()


def main():
    args = parse_args()
    npnet.manual_seed(SEED)
    os.makedirs(args.out, exist_ok=True)
    quick = dict(per_class=100, test_size=500) if args.quick else {}  # smoke run: tiny data
    data = load_data(args.dataset, val_fraction=VAL_FRACTION, seed=SEED, **quick)
    in_shape = data.in_shape
    val_loader = eval_loader(data.x_val, data.y_val)

    results, histories = [], {}
    for name, (model_name, options, loss_name, opt, batch, epochs) in RUNS.items():
        epochs = 2 if args.quick else max(1, round(epochs * args.epochs_scale))
        model = npnet.fuse(build_model(model_name, in_shape=in_shape, num_classes=10, rng=SEED, **options))
        if args.tune:  # time each 3x3 convolution's algorithms on a batch of this shape, keep the fastest
            npnet.tune(model, data.x_train[:batch or len(data.x_train)])
        if model_name == "linear":  # start from zero, so that the learned weights show the class
            for p in model.parameters():  # templates rather than the random initialisation
                p.data[...] = 0
        criterion = losses.MSELoss() if loss_name == "mse" else losses.CrossEntropyLoss()
        optimizer = optim.SGD(model.parameters(), **opt)
        loader = DataLoader(data.x_train, data.y_train, batch_size=batch, shuffle=batch is not None,
                            seed=SEED)
        print(f"{name}: {epochs} epochs")
        start = time.perf_counter()
        trainer = Trainer(model, criterion, optimizer, progress=None if batch else False)
        histories[name] = trainer.fit(loader, val_loader, epochs)
        exit_if_interrupted(histories[name])
        seconds = time.perf_counter() - start
        _, test_acc, pred = results_on(trainer, data.x_test, data.y_test)
        results.append((name, test_acc, seconds, model.num_parameters(), epochs))
        print(f"  {name:26s} test accuracy {test_acc:.4f}  ({seconds:.1f} s)")
        if model_name == "linear":
            plots.plot_linear_weights(model[-1].weight.data, in_shape, data.classes,
                                      path=os.path.join(args.out, "linear_weights.png"))
        if model_name == "cnn-small":
            cm = metrics.confusion_matrix(data.y_test, pred, 10)
            plots.plot_confusion_matrix(cm, data.classes, path=os.path.join(args.out, "confusion_cnn.png"))

    plots.plot_learning_curves(histories, path=os.path.join(args.out, "learning_curves.png"),
                               title=f"{data.name}: four classifiers", side_by_side=True)
    publish(args.out, [f"Results on {data.name} ({len(data.x_test)} test images)",
                       markdown_table(["model", "test accuracy", "train time (s)", "parameters", "epochs"],
                                      [(name, f"{100 * acc:.2f}%", f"{seconds:.1f}", f"{params:,d}",
                                        str(epochs)) for name, acc, seconds, params, epochs in results])])
    print(f"\nfigures and results.md in {args.out}/")


if __name__ == "__main__":
    run(main)
