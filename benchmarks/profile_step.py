"""Where npnet's train step spends its time: wall time per layer type and pass, then cProfile.

    python benchmarks/profile_step.py [--models cnn-bn resnet32] [--steps 5] [--threads N]
        [--markdown] [--cprofile 25]

The step is ``npnet.train.train_step`` (the Trainer's), with cross-entropy and SGD(momentum=0.9).
Part 1 wraps ``forward`` and ``backward`` of every leaf layer instance (and the loss, zero_grad and
the optimizer step) with a perf_counter timer and sums per layer type over ``--steps`` train steps
after one warm-up step; "other" is the step time not inside any of them (container overhead and
the step's finiteness check).
Part 2 runs the same steps under cProfile and lists the functions with the most own time (time in
a Numba kernel counts as own time of the Python function that calls it). npnet only; no PyTorch.
"""
import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from collections import defaultdict

import _common


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["cnn-bn", "resnet32"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--isa", choices=_common.ISAS, default="native",
                    help="avx2: run every library's AVX2 code paths on this CPU (see _common.emulate_isa)")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                    help="first wait up to this long for other processes to leave the CPUs idle")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--cprofile", type=int, default=25, help="rows of the cProfile listing (0: skip)")
    return ap.parse_args()


ARGS = parse_args()
_common.pin_threads(ARGS.threads)
ISA = _common.emulate_isa(ARGS.isa)
_common.load_frameworks(ARGS.threads, want_torch=False)

import numpy as np  # noqa: E402

from npnet.models import build_model  # noqa: E402
from npnet.train import train_step  # noqa: E402

BATCH = {"mlp": 500}


def make_step(name):
    model = build_model(name, (3, 32, 32), 10, rng=0)
    batch = BATCH.get(name, 128)
    rng = np.random.default_rng(0)
    shape = (3072,) if name == "mlp" else (3, 32, 32)
    x = rng.standard_normal((batch,) + shape, dtype=np.float32)
    y = rng.integers(0, 10, batch)
    crit, opt = _common.train_setup(model)
    return model, crit, opt, x, y


def timed(totals, key, f):
    def wrapper(*a):
        t0 = time.perf_counter()
        out = f(*a)
        totals[key] += time.perf_counter() - t0
        return out
    return wrapper


def layer_breakdown(name):
    model, crit, opt, x, y = make_step(name)
    totals = defaultdict(float)
    for m in model.modules():
        if m._modules:
            continue
        kind = type(m).__name__
        # instance attributes shadow the class methods; object.__setattr__ skips Module's registry
        object.__setattr__(m, "forward", timed(totals, (kind, "forward"), m.forward))
        object.__setattr__(m, "backward", timed(totals, (kind, "backward"), m.backward))
    # the loss's __call__ calls its forward; train_step calls these by attribute
    crit.forward = timed(totals, ("CrossEntropyLoss", "forward"), crit.forward)
    crit.backward = timed(totals, ("CrossEntropyLoss", "backward"), crit.backward)
    opt.zero_grad = timed(totals, ("SGD", "zero_grad"), opt.zero_grad)
    opt.step = timed(totals, ("SGD", "step"), opt.step)

    def step():
        train_step(model, crit, opt, x, y)

    step()
    totals.clear()
    t0 = time.perf_counter()
    for _ in range(ARGS.steps):
        step()
    wall = (time.perf_counter() - t0) / ARGS.steps
    per = {k: v / ARGS.steps for k, v in totals.items()}
    per[("other (containers, Python)", "")] = wall - sum(per.values())
    return wall, per


def print_breakdown(name, wall, per):
    by_type = defaultdict(float)
    for (kind, _), v in per.items():
        by_type[kind] += v
    rows = []
    for kind in sorted(by_type, key=by_type.get, reverse=True):
        f, b = per.get((kind, "forward")), per.get((kind, "backward"))
        if kind == "SGD":
            f, b = per.get((kind, "zero_grad")), per.get((kind, "step"))
        rows.append([kind, _common.fmt(f and f * 1e3), _common.fmt(b and b * 1e3),
                     f"{by_type[kind] * 1e3:.1f}", f"{by_type[kind] / wall * 100:.0f}%"])
    print(f"\n{name}: train step {wall * 1e3:.0f} ms (mean of {ARGS.steps}), per layer type:\n")
    _common.print_table(["layer type", "forward ms", "backward ms", "total ms", "share"], rows,
                        ARGS.markdown)
    print("(SGD: forward = zero_grad, backward = step)")


def cprofile_top(name):
    model, _, _, x, y = make_step(name)
    step = _common.npnet_train_step(model, x, y)
    step()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(ARGS.steps):
        step()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).strip_dirs().sort_stats("tottime")
    stats.print_stats(ARGS.cprofile)
    text = out.getvalue()
    print(f"\n{name}: cProfile over {ARGS.steps} steps, by own time\n")
    print(text[text.index("   ncalls"):].rstrip() if "   ncalls" in text else text)


def main():
    print(f"threads: {_common.thread_report(None)}")
    print(ISA)
    print(f"machine at start: {_common.machine_state(ARGS.wait_quiet)}")
    for name in ARGS.models:
        wall, per = layer_breakdown(name)
        print_breakdown(name, wall, per)
        if ARGS.cprofile:
            cprofile_top(name)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
