"""Where a data-parallel run and one process part ways, and the event that makes them part.

    python benchmarks/ddp_drift.py [--config configs/fashion_mnist/cnn_small.yaml] [--max-train 10000]
        [--out /tmp/ddp_drift]

Trains the config's recipe (one epoch, the embedded ``fashion-mnist-mini`` set, its first
``--max-train`` images) with ``npnet train`` three times: one process with 2 threads (the
reference), one process with 1 thread, and ``--nproc 2`` (1 thread per rank). Each run keeps
every step's parameters: this script wraps ``Trainer``'s ``train_step`` inside its own runs only.
It prints each run's drift from the reference (max |difference| / max |weight|, every 10 steps),
the first step where the drift jumps out of rounding (10x the step before), and, for that step,
the kinks behind the jump: the activations of the batch that take another branch in the two runs
(a ReLU's input on the other side of 0, another maximum of a max-pool window), computed layer by
layer from both runs' weights before the step.

The model must be a ``Sequential`` without dropout (the cnn-small recipe is): the diagnosis
re-runs its forward outside the runner.
"""
import argparse
import glob
import os
import subprocess
import sys

import _common

RUNS = {"1 thread": ("t1", 1, None), "2 ranks": ("r2", 1, 2)}  # label: (tag, threads, nproc)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=os.path.join(_common.REPO, "configs/fashion_mnist/cnn_small.yaml"))
    ap.add_argument("--max-train", type=int, default=10000)
    ap.add_argument("--out", default="/tmp/ddp_drift")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)  # config, trace prefix
    return ap.parse_args(argv)


# -- inside a run ----------------------------------------------------------------------------------
def worker(config, prefix):
    """``npnet train config`` with every step's parameters (and, on one process, batches) saved."""
    import numpy as np
    import npnet.train.trainer as trainer
    from npnet import distributed
    from npnet.run.cli import main
    plain, params, batches = trainer.train_step, [], []

    def traced(model, criterion, optimizer, x, y):
        out = plain(model, criterion, optimizer, x, y)
        params.append(np.concatenate([p.data.ravel() for p in model.parameters()]))
        batches.append((x.copy(), y))
        return out

    trainer.train_step = traced
    code = main(["train", config, "--out", prefix + "_run", "--quiet"])
    if distributed.rank() == 0:
        np.save(prefix + "_params.npy", np.stack(params))
        if distributed.world_size() == 1:
            np.savez(prefix + "_batches.npz", **{f"x{i}": x for i, (x, _) in enumerate(batches)})
    sys.exit(code)


def launch(args, config, tag, threads, nproc):
    prefix = os.path.join(args.out, tag)
    if glob.glob(prefix + "_params.npy"):
        return prefix
    env = dict(os.environ, PYTHONPATH=_common.REPO, **{v: str(threads) for v in _common.THREAD_VARS})
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", config, prefix]
    if nproc:
        from npnet.run.launch import find_mpiexec
        cmd = [find_mpiexec(), "-n", str(nproc), "-host", "localhost"] + cmd
    subprocess.run(cmd, check=True, env=env)
    return prefix


# -- the diagnosis ---------------------------------------------------------------------------------
def write_config(args):
    import yaml
    with open(args.config) as f:
        cfg = yaml.safe_load(f)
    cfg["train"]["epochs"] = 1
    cfg["network"]["save_best"] = False
    cfg["data"].update(dataset="fashion-mnist-mini", max_train=args.max_train, max_test=200)
    path = os.path.join(args.out, "config.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path, cfg["network"]["model"]


def drift(ref, other):
    import numpy as np
    return np.abs(other - ref).max(axis=1) / np.abs(ref).max()


def first_jump(d):
    """The first step whose drift is 10x the step before's and above 3e-7 (rounding: 1e-8 to 1e-7)."""
    for j in range(1, len(d)):
        if d[j] > 3e-7 and d[j] > 10 * d[j - 1]:
            return j
    return None


def activations(model_name, flat, x):
    """Every layer's output of the model with parameters ``flat``, in training mode."""
    from npnet.models import build_model
    model, at = build_model(model_name, x.shape[1:], 10, rng=0), 0
    for p in model.parameters():
        p.data[...] = flat[at:at + p.data.size].reshape(p.data.shape)
        at += p.data.size
    model.train()
    outs = [x]
    for layer in model:
        outs.append(layer(outs[-1]))
    return model, outs


def kinks(model_name, before_ref, before_other, x):
    """(layer, index, value in the reference, value in the other run) of each activation that
    takes the other branch of a kink in the two runs: a ReLU input on the other side of 0, or a
    max-pool window whose maximum is another element (found as the positions its backward routes
    a gradient of ones to)."""
    import numpy as np
    (model, a), (other, b) = activations(model_name, before_ref, x), activations(model_name, before_other, x)
    found = []
    for i, (layer, twin) in enumerate(zip(model, other)):
        kind = type(layer).__name__
        if kind == "ReLU":
            differ = (a[i] > 0) != (b[i] > 0)
        elif kind == "MaxPool2d":
            ones = np.ones_like(a[i + 1])
            differ = (layer.backward(ones) != 0) != (twin.backward(ones) != 0)
        else:
            continue
        for idx in np.argwhere(differ)[:4]:
            found.append((f"{i} ({type(model[i - 1]).__name__} -> {kind})", tuple(int(k) for k in idx),
                          float(a[i][tuple(idx)]), float(b[i][tuple(idx)])))
    return found


def report(args, model_name, ref):
    import numpy as np
    params = np.load(ref + "_params.npy")
    batches = np.load(ref + "_batches.npz")
    for label, (tag, _, _) in RUNS.items():
        other = np.load(os.path.join(args.out, tag) + "_params.npy")
        d = drift(params, other)
        print(f"\n{label} vs 1 process, 2 threads ({len(d)} steps): drift at step "
              + ", ".join(f"{s + 1}: {d[s]:.1e}" for s in list(range(0, len(d), 10)) + [len(d) - 1]))
        j = first_jump(d)
        if j is None:
            print("  no step jumps out of rounding")
            continue
        print(f"  first jump: step {j + 1} ({d[j - 1]:.1e} -> {d[j]:.1e}); the layer inputs that take "
              "another branch of a kink (its ReLU's side of 0, its max-pool window's maximum):")
        for where, idx, va, vb in kinks(model_name, params[j - 1], other[j - 1], batches[f"x{j}"]):
            print(f"    layer {where}, (image, channel, ...) {idx}: {va:+.8e} vs {vb:+.8e}")


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(*args.worker)
    os.makedirs(args.out, exist_ok=True)
    _common.pin_threads(2)
    config, model_name = write_config(args)
    ref = launch(args, config, "t2", 2, None)
    for tag, threads, nproc in RUNS.values():
        launch(args, config, tag, threads, nproc)
    report(args, model_name, ref)


if __name__ == "__main__":
    main()
