"""Cold start: how long a fresh Python process takes to import npnet, build cnn-small and finish
its first train step (``npnet.train.train_step``, batch 128, SGD momentum), run as ``python -c``
subprocesses.

    python benchmarks/bench_startup.py [--runs 3] [--threads N] [--model cnn-small] [--default-cache]

Run 1 starts as on a fresh machine: an empty Numba cache (a fresh temporary NUMBA_CACHE_DIR), so it
compiles every kernel and writes the cache, and an empty autotuner cache (NPNET_AUTOTUNE_CACHE in
the same folder), so the tuner times every candidate of each 3x3 layer; runs 2.. find both warm
("a fresh process with a warm Numba cache reaches its first train step in under 3 s"). With
``--default-cache`` both usual caches (``npnet/kernels/__pycache__``, ``~/.cache/npnet/autotune``)
are used as they are.

"to first step" is wall clock from just before the subprocess is spawned to the end of its first
train step (interpreter start-up included); the child also reports its own phases.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import _common

CHILD = r"""
import time
t0 = time.perf_counter()
import numpy as np
t_numpy = time.perf_counter()
import npnet
from npnet import losses, optim
from npnet.models import build_model
from npnet.train import train_step
t_import = time.perf_counter()
model = build_model({model!r}, (3, 32, 32), 10, rng=0)
rng = np.random.default_rng(0)
x = rng.standard_normal(({batch}, 3, 32, 32), dtype=np.float32)
y = rng.integers(0, 10, {batch})
crit = losses.CrossEntropyLoss()
opt = optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
t_build = time.perf_counter()

def step():
    train_step(model, crit, opt, x, y)

step()
t_step = time.perf_counter()
done = time.time()
step()
t_second = time.perf_counter()
import json
print(json.dumps(dict(end_of_first_step=done, numpy=t_numpy - t0, npnet=t_import - t_numpy,
                      build=t_build - t_import, first_step=t_step - t_build,
                      second_step=t_second - t_step)))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--isa", choices=_common.ISAS, default="native",
                    help="avx2: run every library's AVX2 code paths on this CPU (see _common.emulate_isa)")
    ap.add_argument("--model", default="cnn-small")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--default-cache", action="store_true",
                    help="use Numba's usual cache next to the kernels and the tuner's usual cache instead of fresh "
                         "temporary ones")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    _common.pin_threads(args.threads)          # the children inherit the thread settings
    isa = _common.emulate_isa(args.isa)        # and these
    env = dict(os.environ, PYTHONPATH=_common.REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = CHILD.format(model=args.model, batch=args.batch)
    machine = _common.machine_state()
    rows = []
    with tempfile.TemporaryDirectory(prefix="npnet-numba-cache-") as cache:
        if not args.default_cache:
            env["NUMBA_CACHE_DIR"] = cache
            env["NPNET_AUTOTUNE_CACHE"] = os.path.join(cache, "autotune")
        for run in range(1, args.runs + 1):
            start = time.time()
            proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                  cwd=tempfile.gettempdir())
            wall = time.time() - start
            if proc.returncode != 0:
                raise SystemExit(f"run {run} failed:\n{proc.stderr}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            kind = "cold cache (compiles)" if run == 1 and not args.default_cache else "warm cache"
            rows.append([run, kind, f"{r['end_of_first_step'] - start:.2f}", f"{wall:.2f}",
                         f"{r['numpy']:.2f}", f"{r['npnet']:.2f}", f"{r['build']:.2f}",
                         f"{r['first_step']:.2f}", f"{r['second_step']:.2f}"])
            print("  " + "  ".join(map(str, rows[-1])), file=sys.stderr, flush=True)
    print(f"command: python benchmarks/bench_startup.py {' '.join(sys.argv[1:])}")
    print(f"{args.model}, batch {args.batch}, {args.threads} threads; seconds")
    print(f"machine at start: {machine}")
    print(isa)
    print()
    _common.print_table(["run", "numba cache", "to first step", "process wall", "import numpy",
                         "import npnet", "build", "first step", "second step"], rows, args.markdown)


if __name__ == "__main__":
    main()
