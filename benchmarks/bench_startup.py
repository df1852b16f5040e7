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

# With --compile-profile: each compiled function's own wall time (Numba's compile events, minus the
# functions compiled inside it), summed over its signatures.
LISTENER = r"""
import collections, time
from numba.core import event
compile_own, compile_count, _open = collections.defaultdict(float), collections.Counter(), []

class _Own(event.Listener):
    def on_start(self, ev):
        _open.append([time.perf_counter(), 0.0])

    def on_end(self, ev):
        start, inner = _open.pop()
        took = time.perf_counter() - start
        f = ev.data["dispatcher"].py_func
        name = f.__module__ + "." + f.__qualname__
        compile_own[name] += took - inner
        compile_count[name] += 1
        if _open:
            _open[-1][1] += took

event.register("numba:compile", _Own())
"""

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
                      second_step=t_second - t_step,
                      compile={{k: [v, compile_count[k]] for k, v in compile_own.items()}})))
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
    ap.add_argument("--compile-profile", type=int, default=0, metavar="N",
                    help="after the table, the N functions whose compiling took longest in the cold run (Numba is "
                         "then imported before the child's clock starts: 'import numpy' reads ~0)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    _common.pin_threads(args.threads)          # the children inherit the thread settings
    isa = _common.emulate_isa(args.isa)        # and these
    env = dict(os.environ, PYTHONPATH=_common.REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    listener = LISTENER if args.compile_profile else "compile_own, compile_count = {}, {}\n"
    code = listener + CHILD.format(model=args.model, batch=args.batch)
    machine = _common.machine_state()
    rows, compiled = [], []
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
            if run == 1:
                compiled = sorted(r["compile"].items(), key=lambda kv: -kv[1][0])
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
    if args.compile_profile:
        print_compile_profile(compiled, args.compile_profile, args.markdown)


def print_compile_profile(compiled, n, markdown):
    """The n functions of run 1 whose compiling took longest, after the totals."""
    own = sum(seconds for _, (seconds, _) in compiled)
    ours = sum(seconds for name, (seconds, _) in compiled if name.startswith("npnet."))
    signatures = sum(count for _, (_, count) in compiled)
    print(f"\nrun 1 compiled {len(compiled)} functions in {signatures} signatures: {own:.1f} s of own "
          f"compile time, {ours:.1f} s of it npnet's\n")
    _common.print_table(["function", "signatures", "own compile s"],
                        [[name, count, f"{seconds:.2f}"] for name, (seconds, count) in compiled[:n]], markdown)


if __name__ == "__main__":
    main()
