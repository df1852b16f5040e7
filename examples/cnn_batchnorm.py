"""A 3-layer CNN with BatchNorm (``cnn-bn``) trained with the course's hyper-parameters.

Model: 3 x [Conv 3x3 same -> ReLU -> BatchNorm2d] with 32/64/128 channels, MaxPool 2x2,
Linear(., 256) -> ReLU -> Linear(256, 10) (6.5M parameters on 28x28 images, 8.5M on CIFAR-10).
Training: SGD with momentum 0.94, lr 0.01, weight decay ("reg") 5e-4, batch 128, 20 epochs, the
rate multiplied by 0.1 after epochs 12 and 18 (MultiStepLR). ``--epochs N`` shortens the run and
scales the two steps with it (to round(0.6 N) and round(0.9 N)). Cross-entropy loss.

The default run trains on the embedded Fashion-MNIST mini set (9,000 images) and takes long on 2
cores (an epoch is about 9,000 images x 3 x 79M multiply-adds, most of them in the 64->128
convolution at full 28x28 resolution); ``--epochs 5`` gives a shorter run with the same schedule shape.

Shows a progress bar per epoch in a terminal (one line per epoch otherwise); prints the learning
rate and accuracies of every epoch and a results table, and writes to ``--out`` (default
``out/cnn_batchnorm``, ``out/cnn_batchnorm-quick`` with ``--quick``):
  learning_curves.png   training and validation loss and accuracy per epoch
  confusion.png         the test confusion matrix
  results.md            the printed tables

    python examples/cnn_batchnorm.py [--dataset fashion-mnist] [--epochs 20] [--quick]
"""
import os
import time

import npnet
from npnet import losses, optim
from npnet.data import DataLoader
from npnet.models import build_model
from npnet.train import Trainer

from _common import eval_loader, exit_if_interrupted, load_data, make_parser, report_run, run

# -- settings --------------------------------------------------------------------------------------
MODEL = "cnn-bn"
EPOCHS = 20
MILESTONES = (12, 18)  # of EPOCHS; scaled when --epochs differs
BATCH_SIZE = 128
LR, MOMENTUM, WEIGHT_DECAY, LR_DECAY = 0.01, 0.94, 5e-4, 0.1


def parse_args():
    return make_parser(__doc__, "out/cnn_batchnorm", "a few seconds: tiny data, 2 epochs",
                       epochs=EPOCHS, seed=0).parse_args()


def main():
    args = parse_args()
    start = time.perf_counter()
    npnet.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    quick = dict(per_class=10, test_size=100) if args.quick else {}  # smoke run: tiny data
    data = load_data(args.dataset, seed=args.seed, **quick)
    epochs = 2 if args.quick else args.epochs
    milestones = [round(m * epochs / EPOCHS) for m in MILESTONES]

    model = npnet.fuse(build_model(MODEL, data.in_shape, len(data.classes), rng=args.seed))  # fused neighbours
    if args.tune:  # time each 3x3 convolution's algorithms on a batch of this shape, keep the fastest
        npnet.tune(model, data.x_train[:BATCH_SIZE])
    criterion = losses.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    scheduler = optim.MultiStepLR(optimizer, milestones, gamma=LR_DECAY)
    loader = DataLoader(data.x_train, data.y_train, BATCH_SIZE, shuffle=True, seed=args.seed)
    print(f"{MODEL}: {model.num_parameters():,} parameters; {epochs} epochs, lr x{LR_DECAY} after "
          f"epochs {milestones}")

    t0 = time.perf_counter()
    trainer = Trainer(model, criterion, optimizer, scheduler)
    history = trainer.fit(loader, eval_loader(data.x_val, data.y_val), epochs)
    exit_if_interrupted(history)
    seconds = time.perf_counter() - t0

    report_run(MODEL, trainer, data, seconds, args.out,
               curve_title=f"{MODEL} on {data.name}: SGD momentum {MOMENTUM}, lr {LR}, "
                           f"batch {BATCH_SIZE}, weight decay {WEIGHT_DECAY}")
    print(f"\nwall time {time.perf_counter() - start:.1f} s; figures and results.md in {args.out}/")


if __name__ == "__main__":
    run(main)
