"""Run by tests/test_distributed.py, under ``mpiexec -n N`` or alone: ``python _mpi_job.py MODE OUT``.

Modes:
  bn-sync   a small BatchNorm net (SyncBatchNorm) trained by the Trainer for one epoch on a batch
            that does not split evenly; every rank writes its weights and buffers to OUT/rank<r>.npz
  overlap   one step of DistributedDataParallel with overlap=False and overlap=True on a ResNet-ish
            and a cnn-small model; rank 0 writes both gradients to OUT/rank0.npz
  algorithms  every rank sets other Conv2d algorithms, then wraps the model in
            DistributedDataParallel; every rank writes the algorithms it ends with to OUT/rank<r>.json
  cli-fail  ``npnet train`` (the arguments after cli-fail) in which rank FAIL_RANK raises at its
            FAIL_STEP-th step: the failure of one rank in the middle of an epoch. ``inject()`` does
            the same from a sitecustomize, for the ranks that ``npnet train --nproc`` starts.
"""
import os
import sys

import numpy as np


def bn_sync(out):
    from npnet import distributed as dist, losses, nn, optim
    from npnet.data import DataLoader
    from npnet.train import Trainer
    rng = np.random.default_rng(0)
    x = rng.normal(size=(52, 3, 6, 6)).astype(np.float32)  # batches 16, 16, 16, 4
    y = rng.integers(0, 4, size=52)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, rng=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Flatten(), nn.Linear(144, 8, rng=2), nn.BatchNorm1d(8), nn.ReLU(),
                          nn.Linear(8, 4, rng=3))
    if dist.launched_size() > 1:
        dist.init()
    dist.convert_sync_batchnorm(model)
    opt = optim.SGD(model.parameters(), 0.1, momentum=0.9)
    trainer = Trainer(model, losses.CrossEntropyLoss(), opt, progress=False)
    trainer.fit(DataLoader(x, y, 16, seed=4), DataLoader(x[:10], y[:10], 4, shuffle=False), epochs=2)
    state = {k: np.asarray(v) for k, v in model.state_dict().items()}
    state["val_loss"] = np.array(trainer.history.epochs[-1]["val_loss"])
    np.savez(os.path.join(out, f"rank{dist.rank()}.npz"), **state)


def overlap(out):
    from npnet import distributed as dist, losses
    from npnet.models import build_model
    from npnet.train import train_step
    dist.init()
    grads = {}
    for name, shape in (("cnn-small", (1, 28, 28)), ("resnet32", (3, 16, 16))):
        rng = np.random.default_rng(dist.rank())  # other images on every rank
        x = rng.normal(size=(4 + dist.rank(), *shape)).astype(np.float32)
        y = rng.integers(0, 10, size=len(x))
        for mode in (False, True):
            model = build_model(name, shape, 10, rng=5)
            from npnet import optim
            opt = optim.SGD(model.parameters(), 0.0)  # lr 0: the step leaves the gradients
            ddp = dist.DistributedDataParallel(model, overlap=mode, bucket_cap_mb=0.05)
            train_step(ddp, losses.CrossEntropyLoss(), opt, x, y)
            ddp.remove_hooks()
            for k, p in model.named_parameters():
                grads[f"{name}/{mode}/{k}"] = p.grad.copy()
    if dist.rank() == 0:
        np.savez(os.path.join(out, "rank0.npz"), **grads)


def algorithms(out):
    import json
    from npnet import distributed as dist
    from npnet.models import build_model
    from npnet.nn.tuning import algorithms as of, set_algorithms
    dist.init()
    model = build_model("resnet32", (3, 8, 8), 10, rng=0)
    pick = ("winograd4", "im2col", "winograd")[dist.rank() % 3]
    set_algorithms(model, {name: pick for name, a in of(model).items() if a != "im2col" or name == "0"})
    dist.DistributedDataParallel(model)
    with open(os.path.join(out, f"rank{dist.rank()}.json"), "w") as f:
        json.dump(of(model), f)


def inject():
    """Makes rank FAIL_RANK raise at its FAIL_STEP-th training step (nothing on other ranks)."""
    rank = os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    if rank != os.environ.get("FAIL_RANK"):
        return
    import npnet.train.trainer as trainer_module
    real, calls = trainer_module.train_step, [0]

    def failing(*args):
        calls[0] += 1
        if calls[0] == int(os.environ["FAIL_STEP"]):
            raise RuntimeError("injected failure for the test")
        return real(*args)
    trainer_module.train_step = failing


def cli_fail(argv):
    from npnet.run.cli import main
    inject()
    sys.exit(main(argv))


if __name__ == "__main__":
    mode, target = sys.argv[1], sys.argv[2]
    if mode == "cli-fail":
        cli_fail(sys.argv[2:])
    else:
        {"bn-sync": bn_sync, "overlap": overlap, "algorithms": algorithms}[mode](target)
