"""ResNet-32 (He et al. 2016) with random-crop and horizontal-flip augmentation.

Model: ``resnet32``, 3 stages of 5 basic blocks (16/32/64 channels, option-A shortcuts),
464k parameters. Augmentation, drawn anew for every image of every batch: pad 4 pixels of zeros
on each side, crop back to the original size at a random place (``RandomCrop(size, padding=4)``),
mirror left-right with probability 0.5 (``RandomHorizontalFlip``), then normalise. Validation
and test images are only normalised.

Schedule: He et al.'s CIFAR recipe scaled to ``--epochs``: SGD with momentum 0.9, weight decay
1e-4, batch 128, lr 0.1 multiplied by 0.1 after 50 % and after 75 % of the epochs (their 32k and
48k of 64k iterations). They train 64k iterations (~160 epochs of CIFAR-10); the default here is
10 epochs of the embedded Fashion-MNIST mini set (9,000 training images), which already takes a
good while on 2 cores (an epoch is ~9,000 images x 3 x 53M multiply-adds); ``--epochs 4`` is shorter.

Shows a progress bar per epoch in a terminal (one line per epoch otherwise); prints the
accuracies of every epoch and a results table, and writes to ``--out`` (default ``out/resnet32``,
``out/resnet32-quick`` with ``--quick``):
  learning_curves.png   training (augmented) and validation loss and accuracy per epoch
  confusion.png         the test confusion matrix
  augmentation.png      a few training images and three random augmentations of each
  results.md            the printed tables

    python examples/resnet32.py [--epochs 10] [--dataset cifar10] [--quick]
"""
import os
import time

import numpy as np
from matplotlib.figure import Figure

import npnet
from npnet import losses, optim, plots
from npnet.data import Compose, DataLoader, RandomCrop, RandomHorizontalFlip
from npnet.models import build_model
from npnet.train import Trainer

from _common import eval_loader, exit_if_interrupted, load_data, make_parser, report_run, run

# -- settings --------------------------------------------------------------------------------------
MODEL = "resnet32"
EPOCHS = 10
BATCH_SIZE = 128
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-4
DECAY_AT, LR_DECAY = (0.5, 0.75), 0.1  # fractions of the epochs after which lr is multiplied
PADDING = 4


def parse_args():
    return make_parser(__doc__, "out/resnet32", "a few seconds: tiny data, 2 epochs",
                       epochs=EPOCHS, seed=0).parse_args()


def plot_augmentation(x, y, augment, path, n=6, copies=3):
    """Row c: the first training image of class c, then ``copies`` independent augmentations."""
    x = x[[np.flatnonzero(y == c)[0] for c in range(n)]]  # (n, C, H, W) uint8
    fig = Figure(figsize=(1.5 * (copies + 1), 1.5 * n), layout="constrained")
    axes = fig.subplots(n, copies + 1)
    views = [x] + [augment(x) for _ in range(copies)]  # each (n, C, H, W) uint8
    for i in range(n):
        for j, v in enumerate(views):
            img = v[i, 0] if v.shape[1] == 1 else np.transpose(v[i], (1, 2, 0))
            axes[i, j].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
            axes[i, j].set_axis_off()
    axes[0, 0].set_title("original", fontsize="small")
    for j in range(1, copies + 1):
        axes[0, j].set_title(f"augmented {j}", fontsize="small")
    plots.save_figure(fig, path)


def main():
    args = parse_args()
    start = time.perf_counter()
    npnet.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    quick = dict(per_class=10, test_size=100) if args.quick else {}  # smoke run: tiny data
    data = load_data(args.dataset, seed=args.seed, normalize=False, **quick)  # uint8 images
    data.x_val, data.x_test = data.norm(data.x_val), data.norm(data.x_test)  # float32
    epochs = 2 if args.quick else args.epochs
    milestones = sorted({max(1, round(f * epochs)) for f in DECAY_AT})

    # crop and flip the uint8 batch (zero padding = black, as in the paper), then normalise
    rng = np.random.default_rng(args.seed)
    augment = Compose([RandomCrop(data.in_shape[1:], padding=PADDING, rng=rng),
                       RandomHorizontalFlip(rng=rng)])
    plot_augmentation(data.x_train, data.y_train, augment, os.path.join(args.out, "augmentation.png"))

    model = npnet.fuse(build_model(MODEL, data.in_shape, len(data.classes), rng=args.seed))  # fused neighbours
    if args.tune:  # time each 3x3 convolution's algorithms on a batch of this shape, keep the fastest
        npnet.tune(model, data.x_train[:BATCH_SIZE])
    criterion = losses.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    scheduler = optim.MultiStepLR(optimizer, milestones, gamma=LR_DECAY)
    loader = DataLoader(data.x_train, data.y_train, BATCH_SIZE, shuffle=True, seed=args.seed,
                        transform=Compose([augment, data.norm]))
    print(f"{MODEL}: {model.num_parameters():,} parameters; {epochs} epochs, lr {LR} x{LR_DECAY} "
          f"after epochs {milestones}")

    t0 = time.perf_counter()
    trainer = Trainer(model, criterion, optimizer, scheduler)
    history = trainer.fit(loader, eval_loader(data.x_val, data.y_val), epochs)
    exit_if_interrupted(history)
    seconds = time.perf_counter() - t0

    report_run(MODEL, trainer, data, seconds, args.out,
               curve_title=f"{MODEL} on {data.name}, crop + flip: SGD momentum {MOMENTUM}, "
                           f"lr {LR}, weight decay {WEIGHT_DECAY}, batch {BATCH_SIZE}",
               epochs_note=" (training accuracy on augmented images)",
               extra=[("augmentation", f"crop (pad {PADDING}) + flip")])
    print(f"\nwall time {time.perf_counter() - start:.1f} s; figures and results.md in {args.out}/")


if __name__ == "__main__":
    run(main)
