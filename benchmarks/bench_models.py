"""Whole-model benchmark: npnet vs PyTorch CPU, train step and inference, same process, same threads.

    python benchmarks/bench_models.py [--models cnn-bn resnet32 cnn-small mlp] [--steps 7]
        [--warmup 2] [--threads N] [--markdown] [--no-torch] [--no-memory | --memory-only]
        [--wait-quiet SECONDS] [--json FILE]
    python benchmarks/bench_models.py --merge A.json B.json [--markdown]

A default run takes ~4 minutes on an idle 2-core machine (about half of it the memory subprocesses).

Models (from ``npnet.models.build_model``), float32, random data and labels, 10 classes:
cnn-bn, resnet32 and cnn-small on (128, 3, 32, 32); mlp (3072-200-10 sigmoid) on (500, 3072).

* Train step = ``npnet.train.train_step`` (the Trainer's step): zero_grad -> forward ->
  CrossEntropyLoss -> backward without the input gradient -> SGD(momentum=0.9).step; PyTorch's
  the same (autograd computes no gradient for an input that does not require one).
  For the record, the row "train, plain loop" times the loop a user writes by hand: zero_grad ->
  model(x) -> criterion -> model.backward(criterion.backward()) -> step, whose backward also
  computes the gradient of the images that nobody reads (its torch columns are the train row's).
  Inference = forward in eval mode, under ``npnet.no_grad()`` / ``torch.no_grad()``.
* The PyTorch twin is built from the npnet model layer by layer with the same nesting
  (``_twin.py``) and loads npnet's ``state_dict()`` with strict=True; before timing, the logits,
  the loss and the weight gradients of both are compared.
* Speed passes (``--passes``, default ``fuse+tune``, as the docs tell users): before the train
  rows ``npnet.fuse(model)`` and ``npnet.tune(model, x)``; before the inference rows
  ``npnet.fuse(model.eval(), inference=True)`` and ``npnet.tune(model, x, train=False)``.
  ``--passes none`` times the model as built (every layer on its own, the fixed algorithm rule).
  The twin is built, and the check below made, before the passes.
* Time: median of the timed steps after warm-up; npnet and PyTorch alternate in blocks
  (``_common.time_interleaved``). GFLOP/s counts Conv2d/Linear MACs from the layer shapes
  (``_common.forward_flops``): 2*MACs per forward; a train step adds the weight and input
  gradients, less the first layer's input gradient, which neither side computes
  (``_common.train_flops``).
* Peak memory: each (framework, model, pass) runs in a fresh subprocess, which imports its
  framework, warms its kernels on a tiny copy of the model, then resets the kernel's peak-RSS mark
  (``/proc/self/clear_refs``) and records the RSS. It then builds the model, optimizer and data and
  runs ``--mem-steps`` steps; the figure is peak RSS (VmHWM) minus that baseline: parameters,
  gradients, optimizer state, activations, work buffers and allocator overhead, for both sides alike.
  The npnet child also reports tracemalloc's peak (NumPy registers its array buffers there).
"""
import argparse
import contextlib
import json
import os
import sys
import time

import _common

SPECS = {  # name -> batch, in_shape for build_model, data shape per sample, tiny in_shape to warm up
    "cnn-bn": dict(batch=128, in_shape=(3, 32, 32), data=(3, 32, 32), tiny=(3, 4, 4)),
    "resnet32": dict(batch=128, in_shape=(3, 32, 32), data=(3, 32, 32), tiny=(3, 8, 8)),
    "cnn-small": dict(batch=128, in_shape=(3, 32, 32), data=(3, 32, 32), tiny=(3, 8, 8)),
    "mlp": dict(batch=500, in_shape=(3, 32, 32), data=(3072,), tiny=(3, 2, 2)),
}
LOAD_AT_START = None
LR = 1e-3          # small, so that many steps on random labels stay finite; speed does not depend on it
PLAIN = "train, plain loop"  # the pass name of the hand-written loop's row


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(SPECS),
                    help=f"models to run (space or comma separated; default: {' '.join(SPECS)})")
    ap.add_argument("--steps", type=int, default=7, help="timed steps per side (at least)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per side first")
    ap.add_argument("--rounds", type=int, default=3, help="alternating npnet/torch blocks")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every side")
    ap.add_argument("--isa", choices=_common.ISAS, default="native",
                    help="avx2: run every library's AVX2 code paths on this CPU (see _common.emulate_isa)")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                    help="first wait up to this long for other processes to leave the CPUs idle")
    ap.add_argument("--passes", choices=("fuse+tune", "fuse", "none"), default="fuse+tune",
                    help="the speed passes applied to the npnet model (default fuse+tune)")
    ap.add_argument("--markdown", action="store_true", help="print markdown tables")
    ap.add_argument("--no-torch", action="store_true", help="npnet's figures alone")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--memory-only", action="store_true", help="skip the timing, measure peak memory")
    ap.add_argument("--mem-steps", type=int, default=3, help="steps per peak-memory subprocess")
    ap.add_argument("--mem-repeats", type=int, default=1,
                    help="subprocesses per peak-memory figure (the median is reported)")
    ap.add_argument("--busy", action="store_true",
                    help="time beside a competing process (a Python busy loop: one core's worth of other "
                         "work), for both frameworks alike")
    ap.add_argument("--json", help="also write the raw results (every timed step) to this file")
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="measure nothing: re-print saved --json runs as one table, each row from the "
                         "run with the least load from other processes")
    ap.add_argument("--child", nargs=3, metavar=("FRAMEWORK", "MODEL", "PASS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.models = [m for item in args.models for m in item.split(",") if m]
    unknown = [m for m in args.models if m not in SPECS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(SPECS)}")
    return args


ARGS = parse_args()
_common.pin_threads(ARGS.threads)   # before NumPy, Numba or PyTorch load their thread pools
ISA = _common.emulate_isa(ARGS.isa)  # likewise (the memory children inherit both)
torch = _common.load_frameworks(ARGS.threads, want_torch=not ARGS.no_torch)

import numpy as np  # noqa: E402

import npnet  # noqa: E402
from npnet import losses, no_grad  # noqa: E402
from npnet.models import build_model  # noqa: E402

if torch is not None:
    import _twin  # noqa: E402


# -- the steps -------------------------------------------------------------------------------------
def make_data(name, batch, tiny=False, seed=0):
    spec = SPECS[name]
    shape = spec["data"] if not tiny else ((int(np.prod(spec["tiny"])),) if name == "mlp" else spec["tiny"])
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch,) + tuple(shape), dtype=np.float32), rng.integers(0, 10, batch)


def npnet_step(model, x, y, mode):
    """A zero-argument callable running one npnet train step (``train_step``), one step of the
    plain hand-written loop (``"plain"``) or one inference forward."""
    if mode == "infer":
        model.eval()

        def infer():
            with no_grad():
                return model(x)
        return infer
    model.train()
    if mode == "train":
        return _common.npnet_train_step(model, x, y, LR)
    criterion, opt = _common.train_setup(model, LR)

    def plain():
        opt.zero_grad()
        criterion(model(x), y)
        model.backward(criterion.backward())
        opt.step()
    return plain


def torch_step(twin, x, y, mode):
    """The same step for the PyTorch twin."""
    tx, ty = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    if mode == "infer":
        twin.eval()

        def infer():
            with torch.no_grad():
                return twin(tx)
        return infer
    twin.train()
    criterion = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(twin.parameters(), lr=LR, momentum=0.9)

    def step():
        opt.zero_grad()
        criterion(twin(tx), ty).backward()
        opt.step()
    return step


def check_same_function(model, twin, x, y):
    """Relative differences of logits, loss and every weight gradient after one forward/backward in
    train mode. Leaves both models' gradients zeroed (BatchNorm running stats move by one batch)."""
    model.train(), twin.train()
    criterion = losses.CrossEntropyLoss()
    out = model(x)
    loss = criterion(out, y)
    model.backward(criterion.backward())
    tout = twin(torch.from_numpy(x))
    tloss = torch.nn.functional.cross_entropy(tout, torch.from_numpy(y.astype(np.int64)))
    tloss.backward()
    tout = tout.detach().numpy()
    grad_err = 0.0
    tparams = dict(twin.named_parameters())
    for key, p in model.named_parameters():
        ref = tparams[key].grad.numpy()
        grad_err = max(grad_err, float(np.abs(p.grad - ref).max() / max(np.abs(ref).max(), 1e-30)))
    model.zero_grad()
    twin.zero_grad()
    return {"logits": float(np.abs(out - tout).max() / np.abs(tout).max()),
            "loss": abs(loss - tloss.item()) / abs(tloss.item()), "grads": grad_err}


# -- timing ----------------------------------------------------------------------------------------
def describe_model(name, model=None):
    """The result record of a model before anything is timed."""
    spec = SPECS[name]
    if model is None:
        model = build_model(name, spec["in_shape"], 10, rng=0)
    flops = _common.forward_flops(model, spec["in_shape"]) * spec["batch"]
    train = _common.train_flops(model, spec["in_shape"]) * spec["batch"]
    return {"model": name, "batch": spec["batch"], "params": model.num_parameters(),
            "forward_gflop": flops / 1e9, "train_gflop": train / 1e9, "check": None, "passes": {}}


def time_model(name):
    spec = SPECS[name]
    batch = spec["batch"]
    model = build_model(name, spec["in_shape"], 10, rng=0)
    x, y = make_data(name, batch)
    result = describe_model(name, model)
    twin = None
    if torch is not None:
        twin = _twin.to_torch(model)
        result["check"] = check_same_function(model, twin, x, y)
    for mode in ("train", "infer"):
        apply_passes(model, x, mode)
        fns = {"npnet": npnet_step(model, x, y, mode)}
        if mode == "train":  # the plain loop, timed in the same blocks
            fns[PLAIN] = npnet_step(model, x, y, "plain")
        if twin is not None:
            fns["torch"] = torch_step(twin, x, y, mode)
        with _common.OtherLoad() as load:
            times = _common.time_interleaved(fns, ARGS.steps, ARGS.warmup, ARGS.rounds)
        result.setdefault("other_load", {})[mode] = load.share
        stats = {side: _stats(t, batch) for side, t in times.items()}
        plain = stats.pop(PLAIN, None)
        result["passes"][mode] = stats
        if plain is not None:
            result["passes"][PLAIN] = {"npnet": plain, **({"torch": stats["torch"]} if twin else {})}
            result["other_load"][PLAIN] = load.share
        print(f"  {name} {mode}: " + ", ".join(f"{s} {r['ms']:.1f} ms" for s, r in stats.items()) +
              (f", {PLAIN} {result['passes'][PLAIN]['npnet']['ms']:.1f} ms" if mode == "train" else ""),
              file=sys.stderr, flush=True)
    return result


def apply_passes(model, x, mode):
    """The ``--passes`` of the run on ``model`` for ``mode`` ("train" or "infer"), in place."""
    npnet.unfuse(model)
    if ARGS.passes == "none":
        return
    if mode == "infer":
        npnet.fuse(model.eval(), inference=True)
    else:
        npnet.fuse(model.train())
    if ARGS.passes == "fuse+tune":
        npnet.tune(model, x, train=mode == "train")


def _stats(t, batch):
    """The record of one side's per-step times ``t`` (seconds)."""
    return {"ms": _common.median(t) * 1e3, "min_ms": min(t) * 1e3, "spread": _common.spread(t), "n": len(t),
            "images_per_s": batch / _common.median(t), "samples_ms": [v * 1e3 for v in t]}


def gflops(record, mode, side):
    """GFLOP/s of one side's median step: the pass's FLOPs from the layer shapes over its time
    (computed when reporting, so that ``--merge`` of older ``--json`` files counts alike)."""
    if "train_gflop" not in record:   # a --json file written before train_gflop was recorded
        record["train_gflop"] = describe_model(record["model"])["train_gflop"]
    work = record["forward_gflop"] if mode == "infer" else record["train_gflop"]
    return work / (side["ms"] / 1e3)


# -- peak memory (subprocess) ----------------------------------------------------------------------
def memory_child(framework, name, mode):
    """Runs in a fresh process; prints one JSON line with the peak-RSS growth of ``--mem-steps`` steps."""
    spec = SPECS[name]
    if framework == "torch" and torch is None:
        raise SystemExit("torch is not installed")
    skeleton = None
    if framework == "torch":                 # the twin's structure, without allocating its weights
        with torch.device("meta"):
            skeleton = _twin.build_twin(build_model(name, spec["in_shape"], 10, rng=0))
    # warm the framework's kernels on a tiny copy of the model (compiled code loaded, pools created)
    tiny = build_model(name, spec["tiny"], 10, rng=0)
    tx, ty = make_data(name, 4, tiny=True)
    for m in ("train", "infer"):
        if framework == "npnet":
            npnet_step(tiny, tx, ty, m)()
        else:
            torch_step(_twin.to_torch(tiny), tx, ty, m)()
    del tiny, tx, ty

    def run():
        if framework == "npnet":
            model = build_model(name, spec["in_shape"], 10, rng=0)
            if ARGS.passes != "none":  # fused as timed; tuning is left out (it would allocate its own data here)
                npnet.fuse(model.eval(), inference=True) if mode == "infer" else npnet.fuse(model)
            x, y = make_data(name, spec["batch"])
            step = npnet_step(model, x, y, mode)
        else:
            twin = skeleton.to_empty(device="cpu")
            for m in twin.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
            x, y = make_data(name, spec["batch"])
            step = torch_step(twin, x, y, mode)
        for _ in range(ARGS.mem_steps):
            step()
    mem = _common.peak_memory(run, trace=framework == "npnet")
    print(json.dumps({"framework": framework, "model": name, "pass": mode, **mem}))


def measure_memory(framework, name, mode):
    """Median over ``--mem-repeats`` fresh subprocesses (PyTorch's figure varies by tens of MB from
    run to run with how its allocator and thread arenas happen to reuse memory; npnet's hardly)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", framework, name, mode,
           "--threads", str(ARGS.threads), "--mem-steps", str(ARGS.mem_steps)]
    return _common.memory_in_children(cmd, ARGS.mem_repeats, f"memory {framework} {name} {mode}")


# -- report ----------------------------------------------------------------------------------------
def speed_rows(results, peak=None):
    """One row per model and pass; ``peak``: the measured SGEMM GFLOP/s that "% of peak" divides by."""
    rows = []
    for r in results:
        for mode, sides in r["passes"].items():
            n, t = sides["npnet"], sides.get("torch")
            rate = {"n": gflops(r, mode, n), "t": gflops(r, mode, t) if t else None}

            def pct(which):
                return f"{100 * rate[which] / peak:.0f}%" if peak and rate[which] else "-"
            rows.append([r["model"], r["batch"], mode,
                         f"{n['ms']:.1f} ±{n['spread'] * 100:.0f}%",
                         f"{t['ms']:.1f} ±{t['spread'] * 100:.0f}%" if t else "-",
                         f"{n['ms'] / t['ms']:.2f}" if t else "-",
                         f"{n['min_ms'] / t['min_ms']:.2f}" if t else "-",
                         f"{n['images_per_s']:,.0f}", f"{t['images_per_s']:,.0f}" if t else "-",
                         f"{rate['n']:.1f}", f"{rate['t']:.1f}" if t else "-", pct("n"), pct("t"),
                         _pct(r.get("other_load", {}).get(mode))])
    return rows


def _pct(share):
    return "-" if share is None else f"{share * 100:.0f}%"


def _mb(mem):
    """'461' or, over several subprocesses, 'median (min-max)'."""
    if not mem:
        return "-"
    runs = mem.get("all_delta_mb", [])
    if len(runs) > 1:
        return f"{mem['delta_mb']:.0f} ({min(runs):.0f}-{max(runs):.0f})"
    return f"{mem['delta_mb']:.0f}"


def memory_rows(results):
    rows = []
    for r in results:
        for mode, mem in r.get("memory", {}).items():
            n, t = mem.get("npnet"), mem.get("torch")
            rows.append([r["model"], mode, _mb(n), _common.fmt(n and n["traced_mb"], 0), _mb(t),
                         f"{n['delta_mb'] / t['delta_mb']:.2f}" if n and t else "-"])
    return rows


def report(results, header, peak=None):
    md = ARGS.markdown
    print()
    for line in header:
        print(line)
    for r in results:
        c = r["check"]
        line = f"{r['model']}: {r['params']:,} parameters, {r['forward_gflop']:.2f} GFLOP per forward of the batch"
        if c:
            line += (f"; npnet vs torch relative difference: logits {c['logits']:.1e}, loss {c['loss']:.1e}, "
                     f"weight gradients {c['grads']:.1e}")
        print(line)
    print()
    speed = speed_rows(results, peak)
    if speed:
        _speed_table(speed, md)
    mem = memory_rows(results)
    if mem:
        print()
        print("Peak memory: growth of peak RSS over the warmed-up process, MB (see the docstring)")
        print()
        _common.print_table(["model", "pass", "npnet MB", "npnet traced MB", "torch MB", "npnet/torch"],
                            mem, md)


def _speed_table(rows, md):
    _common.print_table(["model", "batch", "pass", "npnet ms", "torch ms", "npnet/torch", "(of minima)", "npnet img/s",
                         "torch img/s", "npnet GFLOP/s", "torch GFLOP/s", "npnet % of peak", "torch % of peak",
                         "other load"], rows, md)
    print("other load: share of the machine's CPU time used by other processes while that row was timed")


def main():
    if ARGS.child:
        return memory_child(*ARGS.child)
    if ARGS.merge:
        return merge(ARGS.merge)
    global LOAD_AT_START
    LOAD_AT_START = _common.machine_state(ARGS.wait_quiet)
    t0 = time.perf_counter()
    results = []
    with _common.BusyLoop() if ARGS.busy else contextlib.nullcontext():
        for name in ARGS.models:
            results.append(describe_model(name) if ARGS.memory_only else time_model(name))
    if ARGS.memory_only or not ARGS.no_memory:
        sides = ["npnet"] + (["torch"] if torch is not None else [])
        for r in results:
            r["memory"] = {mode: {s: measure_memory(s, r["model"], mode) for s in sides}
                           for mode in ("train", "infer")}
            print(f"  {r['model']} memory: " + "; ".join(
                f"{mode} " + ", ".join(f"{s} {v['delta_mb']:.0f} MB" for s, v in m.items() if v)
                for mode, m in r["memory"].items()), file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0
    peak = _common.sgemm_peak_gflops(ARGS.threads)
    header = [f"command: python benchmarks/bench_models.py {' '.join(sys.argv[1:])}  ({wall:.0f} s)",
              f"threads: {_common.thread_report(torch)}", _common.openblas_report(), ISA,
              f"npnet speed passes: {ARGS.passes}",
              f"machine at start: {LOAD_AT_START}" +
              ("; a competing busy-loop process ran during the timing (--busy)" if ARGS.busy else ""),
              f"FP32 peak as measured: {peak:.0f} GFLOP/s (NumPy's SGEMM, 2048^3, {ARGS.threads} threads, best of 5); "
              "FLOPs = 2 x MACs of every Conv2d and Linear from its shapes; a train step 3x the forward "
              "less the first layer's input gradient (not computed by either side)"]
    report(results, header, peak)
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump({"argv": sys.argv[1:], "threads": ARGS.threads, "wall_s": wall, "header": header, "peak": peak,
                       "results": results}, f, indent=1)


def merge(paths):
    """Re-prints saved runs (``--json`` files) as one report: for every model and pass, the run in
    which other processes used the least CPU; peak memory from the last file that measured it."""
    runs = []
    for path in paths:
        with open(path) as f:
            run = json.load(f)
        run.setdefault("header", [f"command: python benchmarks/bench_models.py {' '.join(run['argv'])}",
                                  f"threads: {run['threads']}"])
        runs.append(run)
    if len({run["threads"] for run in runs}) > 1:
        raise SystemExit("--merge: the runs used different --threads; merge runs of one thread count")
    best, memory, meta = {}, {}, {}
    for run in runs:
        for r in run["results"]:
            meta.setdefault(r["model"], r)
            if r.get("memory"):
                memory[r["model"]] = r["memory"]
            for mode, sides in r["passes"].items():
                load = r.get("other_load", {}).get(mode)
                key = (r["model"], mode)
                if key not in best or (load is not None and (best[key][0] is None or load < best[key][0])):
                    best[key] = (load, sides, run["header"][0].replace("command: ", ""))
    results, used = [], []
    for name in [m for m in SPECS if m in meta]:
        r = dict(meta[name], passes={}, other_load={}, memory=memory.get(name, {}))
        for mode in ("train", PLAIN, "infer"):
            if (name, mode) in best:
                load, sides, cmd = best[(name, mode)]
                r["passes"][mode], r["other_load"][mode] = sides, load
                used.append(f"  {name} {mode}: {cmd}")
        results.append(r)
    header = [f"merged from {len(runs)} runs, each row from the run with the least other load:"] + \
        sorted(set(used)) + [runs[-1]["header"][1]]
    report(results, header, runs[-1].get("peak"))


if __name__ == "__main__":
    main()
