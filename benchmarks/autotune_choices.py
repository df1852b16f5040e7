"""What the autotuner chooses, layer by layer, and what its choices buy over the fixed rule.

    python benchmarks/autotune_choices.py [--models resnet32 cnn-small] [--threads 2] [--steps 6]

For each model (batch 128, 3x32x32, float32): an empty autotune cache of its own, one train step and
one ``no_grad`` forward with autotuning on, then a table of every 3x3 stride-1 convolution with the
algorithm chosen for its forward and its backward (both gradients in one call; a first layer needs
only the weight gradient), and every algorithm's time measured;
then train steps and inference with the choices against the fixed rule (``kernels.conv_algorithm``),
interleaved, medians. The first-step cost of measuring is printed too.
"""
import argparse
import contextlib
import logging
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
from npnet.kernels import autotune  # noqa: E402
from npnet.models import build_model  # noqa: E402


class Measured(logging.Handler):
    """Keeps the autotuner's log lines: "key: winner (im2col 1.23 ms, winograd 0.98 ms)"."""

    def __init__(self):
        super().__init__()
        self.lines = {}

    def emit(self, record):
        key, rest = record.getMessage().split(": ", 1)
        self.lines[key] = rest


def layer_rows(model, x, measured):
    rows = []
    for m, shape in _common.record_layer_inputs(model, x[:1]):
        if type(m).__name__ != "Conv2d" or m.kernel_size != (3, 3) or m.stride != (1, 1):
            continue
        full = (x.shape[0],) + tuple(shape[1:])
        probe = np.empty(full, np.float32)
        keys = [autotune.shape_key(p, probe, m.weight.data, *m.padding) for p in ("forward", "backward", "weight_grad")]
        rows.append([f"{shape[1]}->{m.out_channels} on {shape[2]}x{shape[3]}"] +
                    [measured.lines.get(k, autotune.choices().get(k, "-")) for k in keys])
    unique = []
    for r in rows:
        if r not in unique:
            unique.append(r)
    return unique


def main():
    measured = Measured()
    logging.getLogger("npnet.autotune").addHandler(measured)
    logging.getLogger("npnet.autotune").setLevel(logging.INFO)
    print(f"threads: {_common.thread_report(None)}")
    print(_common.openblas_report())
    print(ISA)
    print(f"machine at start: {_common.machine_state()}")
    for name in ARGS.models:
        x = np.random.default_rng(0).standard_normal((128, 3, 32, 32)).astype(np.float32)
        y = np.random.default_rng(1).integers(0, 10, 128)
        model = build_model(name, (3, 32, 32), 10, rng=0)
        step = _common.npnet_train_step(model, x, y)
        t0 = time.perf_counter()
        step()
        with npnet.no_grad():
            model.eval()(x)
        model.train()
        first = time.perf_counter() - t0
        print(f"\n{name}: first train step + inference with measuring: {first:.1f} s")
        _common.print_table(["layer (batch 128)", "forward", "backward (both gradients)", "weight gradient only"],
                            layer_rows(model, x, measured), markdown=True)
        fns = {}
        for mode in ("train", "infer"):
            for tuned in (True, False):
                fns[f"{mode}, {'autotuned' if tuned else 'fixed rule'}"] = _timed(model, x, step, mode, tuned)
        times = _common.time_interleaved(fns, ARGS.steps, warmup=1, rounds=ARGS.rounds)
        _common.print_table(["pass", "ms (median)", "spread"],
                            [[k, f"{_common.median(v) * 1e3:.1f}", f"±{_common.spread(v) * 100:.0f}%"]
                             for k, v in times.items()], markdown=True)


def _timed(model, x, step, mode, tuned):
    def run():
        with autotune.disabled() if not tuned else contextlib.nullcontext():
            if mode == "train":
                model.train()
                step()
            else:
                with npnet.no_grad():
                    model.eval()(x)
                model.train()
    return run


if __name__ == "__main__":
    sys.exit(main())
