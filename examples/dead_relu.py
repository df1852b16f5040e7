"""Is the dead-ReLU problem a big problem in practice? Measured, layer by layer, with LayerStats.

A ReLU unit is *dead* when it outputs 0 for every sample of an epoch: no gradient reaches its
weights, so nothing can revive it. The same ReLU MLP (784 -> 256 -> 256 -> 256 -> 10, SGD with
momentum 0.9, batch 128, cross-entropy) is trained five times on the embedded Fashion-MNIST subset:

  sane lr          lr 0.02, PyTorch's default initialisation
  lr too high      lr 0.3: large updates push pre-activations negative for good
  bias -3          lr 0.02, every hidden bias initialised to -3 (the pre-activations start near -3
                   while their spread is ~0.6: almost every unit starts dead)
  BN, lr too high  Linear -> BatchNorm1d -> ReLU, lr 0.3
  BN, bias -3      Linear -> BatchNorm1d -> ReLU, lr 0.02, bias -3 (BatchNorm subtracts it again)

``npnet.train.LayerStats`` records, for every hidden ReLU, the fraction of dead units after each
epoch and the fraction of zero outputs every few steps. Prints a results table (also written to
``results.md``) and writes to ``--out``:
  dead_relu.png       dead units per layer over training, the runs side by side
  zero_fraction.png   the share of zero outputs per layer over training
  <run>/layer_stats.csv, <run>/layer_stats.png   every statistic of each run

    python examples/dead_relu.py [--epochs 10] [--quick]
"""
import os
import time

import numpy as np

import npnet
from npnet import losses, nn, optim, plots
from npnet.data import DataLoader
from npnet.train import LayerStats, NonFiniteLossError, Trainer

from _common import eval_loader, exit_if_interrupted, load_data, make_parser, markdown_table, publish, run

# -- settings --------------------------------------------------------------------------------------
HIDDEN = (256, 256, 256)
EPOCHS, BATCH_SIZE, MOMENTUM = 10, 128, 0.9
SANE_LR, HIGH_LR, BIAS = 0.02, 0.3, -3.0  # lr 0.5 diverges (NaN) within the first epoch
# name: (learning rate, initial hidden bias or None for PyTorch's default, BatchNorm)
RUNS = {
    "sane lr": (SANE_LR, None, False),
    "lr too high": (HIGH_LR, None, False),
    "bias -3": (SANE_LR, BIAS, False),
    "BN, lr too high": (HIGH_LR, None, True),
    "BN, bias -3": (SANE_LR, BIAS, True),
}


def mlp(in_features, num_classes, bias, batchnorm, rng):
    """Flatten -> [Linear -> (BatchNorm1d) -> ReLU] x len(HIDDEN) -> Linear."""
    layers, width = [nn.Flatten()], in_features
    for h in HIDDEN:
        linear = nn.Linear(width, h, rng=rng)
        if bias is not None:
            linear.bias.data[...] = bias
        layers += [linear] + ([nn.BatchNorm1d(h)] if batchnorm else []) + [nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, num_classes, rng=rng))


def relu_names(model):
    return [name for name, m in model.named_modules() if isinstance(m, nn.ReLU)]


def main():
    args = make_parser(__doc__, "out/dead_relu", "a few seconds: tiny data, 2 epochs",
                       dataset=False, epochs=EPOCHS, seed=0).parse_args()
    start = time.perf_counter()
    quick = dict(per_class=30, test_size=200) if args.quick else {}
    data = load_data("fashion-mnist-mini", seed=args.seed, **quick)
    epochs = 2 if args.quick else args.epochs
    every = max(1, len(data.x_train) // BATCH_SIZE // 4)  # about 4 samples per epoch

    stats, rows = {}, []
    for name, (lr, bias, batchnorm) in RUNS.items():
        npnet.manual_seed(args.seed)
        model = mlp(int(np.prod(data.in_shape)), len(data.classes), bias, batchnorm,
                    np.random.default_rng(args.seed))
        folder = os.path.join(args.out, name.replace(", ", "-").replace(" ", "-"))
        watch = LayerStats(every=every, folder=folder, layers=relu_names(model))
        trainer = Trainer(model, losses.CrossEntropyLoss(),
                          optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM),
                          callbacks=[watch], progress=False)
        loader = DataLoader(data.x_train, data.y_train, BATCH_SIZE, shuffle=True, seed=args.seed)
        outcome = "trained"
        try:
            exit_if_interrupted(trainer.fit(loader, epochs=epochs))
            test = trainer.evaluate(eval_loader(data.x_test, data.y_test))["accuracy"]
        except NonFiniteLossError as e:
            outcome, test = f"diverged in epoch {e.epoch}", float("nan")
            watch.remove()
        plots.plot_layer_stats(watch.stats, os.path.join(folder, "layer_stats.png"), title=name)
        stats[name] = watch.stats
        dead = [watch.stats[k]["dead_fraction"] for k in relu_names(model) if "dead_fraction" in watch.stats.get(k, {})]
        rows.append((name, f"{lr:g}", "default" if bias is None else f"{bias:g}",
                     "yes" if batchnorm else "no", outcome, f"{100 * test:.2f}%",
                     " / ".join(f"{100 * d[0][1]:.0f}%" for d in dead) or "-",
                     " / ".join(f"{100 * d[-1][1]:.0f}%" for d in dead) or "-"))
        print(f"  {name:16s} {outcome}, test accuracy {100 * test:.2f}%")

    plots.plot_statistic_by_run(stats, "dead_fraction", os.path.join(args.out, "dead_relu.png"),
                                title="Dead ReLU units (zero for every sample of the epoch)",
                                ylabel="fraction of dead units")
    plots.plot_statistic_by_run(stats, "zero_fraction", os.path.join(args.out, "zero_fraction.png"),
                                title="Share of zero ReLU outputs", ylabel="fraction of zeros")
    table = markdown_table(["run", "lr", "hidden bias init", "BatchNorm", "outcome", "test accuracy",
                            "dead units after epoch 1 (layers 1/2/3)", "dead units at the end"], rows)
    publish(args.out, [f"Dead ReLUs on {data.name} ({epochs} epochs, MLP {HIDDEN})", table])
    print(f"\nwall time {time.perf_counter() - start:.1f} s; figures in {args.out}/")


if __name__ == "__main__":
    run(main)
