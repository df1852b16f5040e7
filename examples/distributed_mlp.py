"""Your own training loop on several processes: an MLP on the embedded Fashion-MNIST mini set,
data-parallel over MPI, in the few lines that differ from a one-process loop (marked ``# MPI``).

Every process runs this same script. Each takes its slice of every global batch of 128 (the same
shuffled order on every process), computes the gradient of its slice, and
``DistributedDataParallel`` sums the gradients over the processes, weighted by the slices'
sizes, so that every replica takes the same step the one-process run would. Rank 0 prints.

    mpiexec -n 2 python examples/distributed_mlp.py [--epochs 5] [--quick] [--out FOLDER]
    python examples/distributed_mlp.py              # one process: the same numbers

Rank 0 prints a line per epoch and writes the epoch table to ``--out``/results.md (default
``out/distributed_mlp``, ``out/distributed_mlp-quick`` with ``--quick``: 2 epochs on a tenth of
the images).

Threads: each process starts as many Numba and BLAS threads as the machine has cores; with as
many processes as cores, give each one (``NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 mpiexec ...``),
as ``npnet train --nproc N`` does by itself.

Needs the MPI extra (pip install -e ".[mpi]") when run under mpiexec.
"""
import os

import npnet
import npnet.distributed as dist
from npnet import losses, optim
from npnet.data import DataLoader, Normalize, load_dataset, train_val_split
from npnet.models import build_model
from npnet.train import train_step

from _common import make_parser, markdown_table, publish, run

# -- settings --------------------------------------------------------------------------------------
BATCH_SIZE = 128  # the global batch, whatever the number of processes
LR, MOMENTUM, SEED = 0.1, 0.9, 0


EPOCHS = 5


def main():
    args = make_parser(__doc__, "out/distributed_mlp", "a few seconds: a tenth of the images, "
                       "2 epochs", dataset=False, epochs=EPOCHS).parse_args()
    epochs = 2 if args.quick else args.epochs
    if dist.launched_size() > 1:
        dist.init()  # MPI: rank(), world_size()                                          # MPI
    npnet.manual_seed(SEED)
    x, y, x_test, y_test = load_dataset("fashion-mnist-mini")
    if args.quick:  # smoke run: every tenth image (all classes kept)
        x, y, x_test, y_test = x[::10], y[::10], x_test[::10], y_test[::10]
    x_train, y_train, _, _ = train_val_split(x, y, 0.1, seed=SEED)
    normalize = Normalize.for_dataset("fashion-mnist")

    model = build_model("mlp", x_train.shape[1:], 10, rng=SEED)
    ddp = dist.DistributedDataParallel(model) if dist.world_size() > 1 else model          # MPI
    criterion = losses.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), LR, momentum=MOMENTUM)
    loader = DataLoader(x_train, y_train, BATCH_SIZE, transform=normalize, seed=SEED)
    dist.shard(loader)  # this process's part of every global batch                      # MPI

    processes = f"{dist.world_size()} process" + ("es" if dist.world_size() > 1 else "")
    rows = []
    for epoch in range(1, epochs + 1):
        loss_sum = correct = seen = 0
        for xb, yb in loader:
            loss, right = train_step(ddp, criterion, optimizer, xb, yb)
            loss_sum, correct, seen = loss_sum + loss * len(yb), correct + right, seen + len(yb)
        loss_sum, correct, seen, _ = dist.sum_counts(loss_sum, correct, seen)  # every rank's  # MPI
        test = accuracy(model, x_test, y_test, normalize)
        rows.append((str(epoch), f"{loss_sum / seen:.4f}", f"{100 * correct / seen:.2f}%",
                     f"{100 * test:.2f}%"))
        if dist.rank() == 0:
            print(f"epoch {epoch}: train loss {loss_sum / seen:.4f} acc {correct / seen:.4f}  "
                  f"test acc {test:.4f}  ({processes})")
    if dist.rank() == 0:  # one process writes                                               # MPI
        os.makedirs(args.out, exist_ok=True)
        table = markdown_table(["epoch", "train loss", "train accuracy", "test accuracy"], rows)
        publish(args.out, [f"mlp on fashion-mnist-mini, global batch {BATCH_SIZE}, {processes} "
                           f"({len(y_train)} train / {len(y_test)} test images)", table])


def accuracy(model, x, y, transform):
    """Test accuracy, each process counting its share of the images (the counts summed)."""
    loader = dist.shard(DataLoader(x, y, 1000, shuffle=False, transform=transform),    # MPI
                        training=False)
    model.eval()
    correct = seen = 0
    with npnet.no_grad():
        for xb, yb in loader:
            correct, seen = correct + int((model(xb).argmax(axis=1) == yb).sum()), seen + len(yb)
    model.train()
    _, correct, seen, _ = dist.sum_counts(0.0, correct, seen)                              # MPI
    return correct / seen


if __name__ == "__main__":
    run(main)
