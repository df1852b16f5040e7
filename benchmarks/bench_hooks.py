"""What hooks cost: the per-call overhead of Module's hook dispatch with no hook registered, and a
train step with no hook vs with ``LayerStats`` watching every layer.

1. Dispatch: ``module(x)`` + ``module.backward(d)`` of a tiny ReLU through the Module machinery
   (the forward-hook test in ``__call__``, the backward wrapper) against calling the layer's own
   ``forward`` and unwrapped ``backward`` directly; min over repeats of ``timeit`` (stable under
   load). Times the number of layers in a step gives the overhead per step.
2. Train steps (``npnet.train.train_step``, batch 128, 1x28x28) of the given models: no hook,
   no hook after ``npnet.fuse(model)`` (what fusion saves; the watched layers below run unfused,
   as a hooked layer is never fused), then ``LayerStats(every=1)`` (every statistic at every step)
   and ``LayerStats(every=50)`` (hooks registered; statistics on one step in 50), interleaved in
   rounds, median per variant.

    python benchmarks/bench_hooks.py [--models cnn-small cnn-bn mlp] [--steps 20] [--rounds 3]
"""
import argparse
import statistics
import time
import timeit

import numpy as np

import npnet
from npnet import losses, nn, optim
from npnet.models import build_model
from npnet.train import LayerStats, Trainer, train_step


def dispatch_overhead_us():
    relu, x = nn.ReLU(), np.ones((2, 2), np.float32)
    raw_backward = type(relu).backward.__wrapped__

    def through_module():
        relu(x)
        relu.backward(x)

    def direct():
        relu.forward(x)
        raw_backward(relu, x, True)

    best = {f.__name__: min(timeit.repeat(f, number=20000, repeat=7)) / 20000 * 1e6
            for f in (through_module, direct, through_module, direct)}
    return best["through_module"], best["direct"]


def step_ms(model_name, watch_every, steps):
    """Median train-step time; ``watch_every``: 0 no hook, -1 no hook and fused, else LayerStats."""
    return _step_ms(model_name, max(watch_every, 0), steps, fuse=watch_every == -1)


def _step_ms(model_name, watch_every, steps, fuse=False):
    model = build_model(model_name, (1, 28, 28), 10, rng=0)
    if fuse:
        npnet.fuse(model)
    x = np.random.default_rng(0).standard_normal((128, 1, 28, 28)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 10, 128)
    criterion = losses.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    trainer = Trainer(model, criterion, opt, callbacks=[LayerStats(watch_every)] if watch_every else [])
    for cb in trainer.callbacks:
        cb.on_fit_begin(trainer)
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        train_step(model, criterion, opt, x, y)
        for cb in trainer.callbacks:
            trainer.global_step += 1
            cb.on_batch_end(trainer, i + 1, {})
        if i >= 3:
            times.append(time.perf_counter() - t0)
    for cb in trainer.callbacks:
        cb.on_fit_end(trainer)
    return statistics.median(times) * 1000


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["cnn-small", "cnn-bn", "mlp"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    wrapped, direct = dispatch_overhead_us()
    print(f"dispatch: {wrapped:.2f} us through Module vs {direct:.2f} us direct per forward+backward "
          f"of one layer: {wrapped - direct:.2f} us of hook machinery per layer and step")
    variants = {"no hook": 0, "no hook, npnet.fuse": -1, "LayerStats(every=50)": 50, "LayerStats(every=1)": 1}
    for name in args.models:
        results = {v: [] for v in variants}
        for _ in range(args.rounds):
            for v, every in variants.items():
                results[v].append(step_ms(name, every, args.steps))
        base = statistics.median(results["no hook"])
        for v, ts in results.items():
            med = statistics.median(ts)
            print(f"{name:10s} {v:22s} {med:8.2f} ms per step  ({med / base:.2f}x)")


if __name__ == "__main__":
    main()
