"""Cold start: how long a fresh Python process takes to import npnet, build cnn-small and finish
its first train step (``npnet.train.train_step``, batch 128, SGD momentum), run as ``python -c``
subprocesses.

    python benchmarks/bench_startup.py [--runs 3] [--threads N] [--model cnn-small] [--default-cache] [--speed]

``--speed``: before the first step, the passes the runner's ``speed:`` section runs by default
(``npnet.run.speed.apply_speed``: ``npnet.fuse``, then ``npnet.tune`` on the batch's shape, train=True,
the config's default candidates), timed as their own phase ("speed passes"); without it the plain
model runs the fixed rule. Each phase is reported in wall seconds and in the child's CPU seconds
(``time.process_time``: compiling is single-threaded, so on a shared machine CPU time is the steadier
measure), and "(compiling)" is the CPU time of Numba's top-level compile events within the speed
passes and within the first step (the rest of "speed passes" is the tuner's timing runs).

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

# Each compiled function's own CPU time (Numba's compile events, minus the functions compiled inside
# it; ``time.thread_time`` of the compiling thread: compiling is single-threaded, and on a shared
# machine wall time counts the others' work), summed over its signatures, and the CPU time of the
# outermost compiles (compile_top). Registered
# after ``import npnet`` (which compiles nothing), so the import is timed as a user meets it.
LISTENER = r"""
import collections, time
from numba.core import event
compile_own, compile_count, _open, compile_top = collections.defaultdict(float), collections.Counter(), [], [0.0]

class _Own(event.Listener):
    def on_start(self, ev):
        _open.append([time.thread_time(), 0.0])

    def on_end(self, ev):
        start, inner = _open.pop()
        took = time.thread_time() - start
        f = ev.data["dispatcher"].py_func
        name = f.__module__ + "." + f.__qualname__
        compile_own[name] += took - inner
        compile_count[name] += 1
        if _open:
            _open[-1][1] += took
        else:
            compile_top[0] += took

event.register("numba:compile", _Own())
"""

CHILD = r"""
import time
clock = lambda: (time.perf_counter(), time.process_time())
t0 = clock()
import numpy as np
t_numpy = clock()
import npnet
from npnet import losses, optim
from npnet.models import build_model
from npnet.train import train_step
t_import = clock()
exec(LISTENER)
model = build_model({model!r}, (3, 32, 32), 10, rng=0)
rng = np.random.default_rng(0)
x = rng.standard_normal(({batch}, 3, 32, 32), dtype=np.float32)
y = rng.integers(0, 10, {batch})
crit = losses.CrossEntropyLoss()
opt = optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
t_build = clock()
if {speed!r}:
    from npnet.run.config import SCHEMA
    from npnet.run.speed import apply_speed
    speed = {{"fuse": True, "tune": True, "algorithms": SCHEMA["speed"]["algorithms"].default}}
    apply_speed(model, speed, x.shape, log=lambda *a: None)
t_speed = clock()
compile_speed = compile_top[0]

def step():
    train_step(model, crit, opt, x, y)

step()
t_step = clock()
done = time.time()
step()
t_second = clock()
import json
d = lambda a, b: [b[0] - a[0], b[1] - a[1]]
print(json.dumps(dict(end_of_first_step=done, numpy=d(t0, t_numpy), npnet=d(t_numpy, t_import),
                      build=d(t_import, t_build), speed=d(t_build, t_speed), first_step=d(t_speed, t_step),
                      second_step=d(t_step, t_second), cpu_total=t_step[1], compile_speed=compile_speed,
                      compile_total=compile_top[0],
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
    ap.add_argument("--speed", action="store_true",
                    help="fuse and tune before the first step, as the runner's speed: section does by default")
    ap.add_argument("--compile-profile", type=int, default=0, metavar="N",
                    help="after the table, the N functions whose compiling took longest in the cold run")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    _common.pin_threads(args.threads)          # the children inherit the thread settings
    isa = _common.emulate_isa(args.isa)        # and these
    env = dict(os.environ, PYTHONPATH=_common.REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = f"LISTENER = {LISTENER!r}\n" + CHILD.format(model=args.model, batch=args.batch, speed=args.speed)
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
            kind = "cold (compiles)" if run == 1 and not args.default_cache else "warm"
            wc = lambda k: f"{r[k][0]:.2f} / {r[k][1]:.2f}"
            rows.append([run, kind, f"{r['end_of_first_step'] - start:.2f}", f"{r['cpu_total']:.2f}", f"{wall:.2f}",
                         wc("numpy"), wc("npnet"), wc("build"), wc("speed"), f"{r['compile_speed']:.2f}",
                         wc("first_step"), f"{r['compile_total'] - r['compile_speed']:.2f}", wc("second_step")])
            print("  " + "  ".join(map(str, rows[-1])), file=sys.stderr, flush=True)
    print(f"command: python benchmarks/bench_startup.py {' '.join(sys.argv[1:])}")
    print(f"{args.model}, batch {args.batch}, {args.threads} threads, "
          f"{'fused and tuned (the runner' + chr(39) + 's speed: defaults)' if args.speed else 'plain model (fixed rule)'}; "
          "seconds, wall / CPU of the child")
    print(f"machine at start: {machine}")
    print(isa)
    print()
    _common.print_table(["run", "caches", "to first step", "child CPU", "process wall", "import numpy",
                         "import npnet", "build", "speed passes", "(compiling)", "first step", "(compiling)",
                         "second step"], rows, args.markdown)
    if args.compile_profile:
        print_compile_profile(compiled, args.compile_profile, args.markdown)


def print_compile_profile(compiled, n, markdown):
    """The n functions of run 1 whose compiling took longest, after the totals."""
    own = sum(seconds for _, (seconds, _) in compiled)
    ours = sum(seconds for name, (seconds, _) in compiled if name.startswith("npnet."))
    signatures = sum(count for _, (_, count) in compiled)
    print(f"\nrun 1 compiled {len(compiled)} functions in {signatures} signatures: {own:.1f} s of own "
          f"compile time (CPU), {ours:.1f} s of it npnet's\n")
    _common.print_table(["function", "signatures", "own compile CPU s"],
                        [[name, count, f"{seconds:.2f}"] for name, (seconds, count) in compiled[:n]], markdown)


if __name__ == "__main__":
    main()
