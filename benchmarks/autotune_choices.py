"""What ``npnet.tune`` chooses, layer by layer, and what its choices buy over the fixed rule.

    python benchmarks/autotune_choices.py [--models resnet32 cnn-small] [--threads 2] [--steps 6]

For each model (batch 128, 3x32x32, float32, fused with ``npnet.fuse``): an empty tune cache of its
own, ``npnet.tune`` for training (forward + backward timed) and for inference (forward alone),
each with its table of choices and times and the seconds it took; then train steps and inference
with the tuned algorithms against the fixed rule (``Conv2d(algorithm=None)``), interleaved, medians.
"""
import argparse
import sys
import tempfile
import time

import _common

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--models", nargs="+", default=["resnet32", "cnn-small"])
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--isa", choices=_common.ISAS, default="native",
               help="avx2: run every library's AVX2 code paths on this CPU (see _common.emulate_isa)")
ap.add_argument("--steps", type=int, default=6)
ap.add_argument("--rounds", type=int, default=3)
ARGS = ap.parse_args()
_common.pin_threads(ARGS.threads)
ISA = _common.emulate_isa(ARGS.isa)
_common.load_frameworks(ARGS.threads, want_torch=False)

import os  # noqa: E402

os.environ["NPNET_AUTOTUNE_CACHE"] = tempfile.mkdtemp(prefix="npnet-autotune-")

import numpy as np  # noqa: E402

import npnet  # noqa: E402
from npnet.models import build_model  # noqa: E402
from npnet.nn.tuning import algorithms, set_algorithms  # noqa: E402


def tuned(model, x, train):
    """``{layer: algorithm}`` that tune picks for ``model`` in this mode, and the seconds it took."""
    t0 = time.perf_counter()
    report = npnet.tune(model, x, train=train)
    print(f"npnet.tune(..., train={train}): {time.perf_counter() - t0:.1f} s")
    print(report)
    return algorithms(model)


def main():
    print(f"threads: {_common.thread_report(None)}")
    print(_common.openblas_report())
    print(ISA)
    print(f"machine at start: {_common.machine_state()}")
    for name in ARGS.models:
        x = np.random.default_rng(0).standard_normal((128, 3, 32, 32)).astype(np.float32)
        y = np.random.default_rng(1).integers(0, 10, 128)
        model = npnet.fuse(build_model(name, (3, 32, 32), 10, rng=0))
        print(f"\n{name}")
        fixed = algorithms(model)
        choice = {"train": tuned(model, x, True)}
        set_algorithms(model, fixed)
        infer_model = npnet.fuse(build_model(name, (3, 32, 32), 10, rng=0).eval(), inference=True)
        choice["infer"] = tuned(infer_model, x, False)
        set_algorithms(infer_model, fixed)
        step = _common.npnet_train_step(model, x, y)
        fns = {}
        for mode in ("train", "infer"):
            for how in ("tuned", "fixed rule"):
                fns[f"{mode}, {how}"] = _timed(model if mode == "train" else infer_model, x, step, mode,
                                               choice[mode] if how == "tuned" else fixed)
        times = _common.time_interleaved(fns, ARGS.steps, warmup=1, rounds=ARGS.rounds)
        _common.print_table(["pass", "ms (median)", "spread"],
                            [[k, f"{_common.median(v) * 1e3:.1f}", f"±{_common.spread(v) * 100:.0f}%"]
                             for k, v in times.items()], markdown=True)


def _timed(model, x, step, mode, choices):
    def run():
        set_algorithms(model, choices)
        if mode == "train":
            step()
        else:
            with npnet.no_grad():
                model(x)
    return run


if __name__ == "__main__":
    sys.exit(main())
