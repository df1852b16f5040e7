"""Time npnet's conv (and pooling) kernels next to PyTorch's, in one process, with the same thread count.

    python benchmarks/bench_conv.py [--threads 2] [--repeat 9] [--rounds 3] [--cases resnet32 ...]
        [--algorithms im2col winograd] [--clock wall|cpu] [--no-torch] [--no-pool]

Cases (float32, batch 128): the 3x3 layers of ResNet-32 (16, 32, 64 channels, stride 1 and 2) and of
cnn-small (32->64 on 16x16, 64->64 on 8x8), a wide layer Conv2d(64, 128, 3, padding=1) on 32x32 and
a first layer Conv2d(3, 32, 3, padding=1); MaxPool2d(2) and AvgPool2d(2) on (128, 64, 32, 32).
Each convolution runs with every algorithm of ``kernels.CONV_ALGORITHMS`` that applies to it (Winograd:
3x3 stride 1) and marks the one ``kernels.conv_algorithm`` picks with ``*``. Conv forward is
``conv2d_forward`` against ``F.conv2d``; backward is ``conv2d_backward`` (dx, dw, db; and without dx, as
a first layer needs) against ``torch.ops.aten.convolution_backward`` asked for the same outputs. Results
are checked against torch first.

Each side is warmed up, then timed in ``rounds`` alternating blocks of ``repeat`` calls; the median and
the minimum are reported, and the npnet/torch ratios of both (on a shared machine the minimum is the
steadier figure: other processes only ever add time). With ``--threads 1 --clock cpu`` each call is
timed by the CPU time of the calling thread (where Numba's, OpenBLAS's and PyTorch's single-threaded
work all runs), which leaves out the time other processes held the core: on a busy machine the
steadiest comparison there is (caches and memory bandwidth are still shared). A block during which other processes kept more
than ``--max-load`` of a core busy (Linux /proc/stat) is re-run, up to ``--retries`` times; a row still
marked "(busy machine)" is noisy.
"""
import argparse
import os

import _common  # imports nothing heavy: the thread settings below still come first

_ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
_ap.add_argument("--threads", type=int, default=2)
_ap.add_argument("--isa", choices=_common.ISAS, default="native",
                 help="avx2: run every library's AVX2 code paths on this CPU (see _common.emulate_isa)")
_ap.add_argument("--repeat", type=int, default=9, help="timed calls per block")
_ap.add_argument("--rounds", type=int, default=3, help="alternating npnet/torch blocks")
_ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                 help="cpu: time each call by the calling thread's CPU time (with --threads 1 only): on a "
                      "shared machine it leaves out the time other processes held the core")
_ap.add_argument("--max-load", type=float, default=0.15,
                 help="re-run a block if other processes used more than this many cores meanwhile")
_ap.add_argument("--retries", type=int, default=10, help="re-runs of a block on a busy machine")
_ap.add_argument("--cases", nargs="+", default=None, help="keep conv cases whose name contains one of these")
_ap.add_argument("--algorithms", nargs="+", default=None, help="conv algorithms to time (default: all)")
_ap.add_argument("--no-torch", action="store_true")
_ap.add_argument("--no-pool", action="store_true")
ARGS = _ap.parse_args()
if ARGS.clock == "cpu" and ARGS.threads != 1:
    _ap.error("--clock cpu needs --threads 1 (with more threads the work is not all on the calling thread)")
# thread counts must be in the environment before NumPy, Numba or PyTorch start their thread pools
_common.pin_threads(ARGS.threads)        # also puts the repository on sys.path
ISA = _common.emulate_isa(ARGS.isa)      # also before the libraries load

import time  # noqa: E402

import numpy as np  # noqa: E402

from npnet import kernels  # noqa: E402


torch = None  # npnet's workers: NUMBA_NUM_THREADS (pin_threads), not numba.set_num_threads (_common)
if not ARGS.no_torch:
    try:
        import torch
        torch.set_num_threads(ARGS.threads)
    except ImportError:
        pass

CONV_CASES = [  # name, (N, C, H, W), (O, kh, kw), stride, padding
    ("resnet32 16->16", (128, 16, 32, 32), (16, 3, 3), (1, 1), (1, 1)),
    ("resnet32 16->32 stride 2", (128, 16, 32, 32), (32, 3, 3), (2, 2), (1, 1)),
    ("resnet32 32->32", (128, 32, 16, 16), (32, 3, 3), (1, 1), (1, 1)),
    ("resnet32 32->64 stride 2", (128, 32, 16, 16), (64, 3, 3), (2, 2), (1, 1)),
    ("resnet32 64->64, cnn-small 64->64", (128, 64, 8, 8), (64, 3, 3), (1, 1), (1, 1)),
    ("cnn-small 32->64", (128, 32, 16, 16), (64, 3, 3), (1, 1), (1, 1)),
    ("wide 64->128", (128, 64, 32, 32), (128, 3, 3), (1, 1), (1, 1)),
    ("first layer 3->32", (128, 3, 32, 32), (32, 3, 3), (1, 1), (1, 1)),
]


# ------------------------------------------------------------------------------------------ timing

def _others_busy_seconds():
    """CPU seconds used by all processes (Linux), or None where /proc/stat does not exist."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")     # all but idle and iowait


CLOCK = time.thread_time if ARGS.clock == "cpu" else time.perf_counter


def _timed_block(f, repeat):
    """Seconds per call of ``repeat`` calls, and how many cores other processes used meanwhile."""
    busy0, mine0, wall0 = _others_busy_seconds(), sum(os.times()[:2]), time.perf_counter()
    ts = []
    for _ in range(repeat):
        t0 = CLOCK()
        f()
        ts.append(CLOCK() - t0)
    if busy0 is None:
        return ts, 0.0
    others = (_others_busy_seconds() - busy0) - (sum(os.times()[:2]) - mine0)
    return ts, max(others, 0.0) / (time.perf_counter() - wall0)


def timed(fns):
    """``{name: median seconds per call}`` and whether a block could not get a quiet machine."""
    for f in fns.values():                                  # compile, first touch, autotune
        f(), f()
    times, noisy = {k: [] for k in fns}, False
    for _ in range(ARGS.rounds):
        for name, f in fns.items():
            for _attempt in range(max(1, ARGS.retries)):
                time.sleep(0.05)                            # let the other side's spinning threads park
                ts, load = _timed_block(f, ARGS.repeat)
                if load <= ARGS.max_load:
                    break
                time.sleep(1.0)
            else:
                noisy = True
            times[name] += ts
    return {k: (float(np.median(v)), float(np.min(v))) for k, v in times.items()}, noisy


def report(title, ours, theirs, work):
    """Print one table: a row per pass (and algorithm), npnet next to torch, median and minimum ms,
    GFLOP/s of the median where ``work`` gives FLOPs. ``ours``: {label: fn}; the pass is the label's
    last part after ": " and keys ``theirs`` and ``work``."""
    print(f"\n{title}")
    print(f"  {'pass':<30}{'npnet ms':>9}{'(min)':>8}{'GFLOP/s':>8}{'torch ms':>9}{'(min)':>8}{'GFLOP/s':>8}"
          f"{'npnet/torch':>12}{'(of min)':>9}")
    for label, f in ours.items():
        k = label.split(": ")[-1]
        rate = (lambda s: f"{work[k] / s / 1e9:8.0f}") if work else (lambda s: f"{'':8}")
        t, noisy = timed({"npnet": f, **({"torch": theirs[k]} if theirs else {})})
        (med, low) = t["npnet"]
        row = f"  {label:<30}{med * 1e3:9.2f}{low * 1e3:8.2f}{rate(med)}"
        if theirs:
            tmed, tlow = t["torch"]
            row += f"{tmed * 1e3:9.2f}{tlow * 1e3:8.2f}{rate(tmed)}{med / tmed:12.2f}{low / tlow:9.2f}"
        print(row + ("  (busy machine)" if noisy else ""), flush=True)


def check(name, ours, theirs, labels=("y", "dx", "dw", "db")):
    """npnet and torch must agree before their times mean anything."""
    for label, a, r in zip(labels, ours, theirs):
        if a is None:
            continue
        r = r.numpy()
        err = np.abs(a - r).max() / max(np.abs(r).max(), 1e-30)
        if err > 1e-4:
            raise SystemExit(f"{name}: {label} differs from torch (max error {err:.2e} of max |value|)")


# ------------------------------------------------------------------------------------------- cases

def conv_case(name, xshape, wshape, stride, padding):
    rng = np.random.default_rng(0)
    (N, C, H, W), (O, kh, kw), (sh, sw), (ph, pw) = xshape, wshape, stride, padding
    x = rng.standard_normal(xshape, dtype=np.float32)
    w = rng.standard_normal((O, C, kh, kw), dtype=np.float32) * np.float32((C * kh * kw) ** -0.5)
    b = rng.standard_normal(O, dtype=np.float32)
    y = kernels.conv2d_forward(x, w, b, sh, sw, ph, pw)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    flops = 2.0 * N * O * (C * kh * kw) * y.shape[2] * y.shape[3]   # the direct convolution's
    chosen = kernels.conv_algorithm(C, O, kh, kw, sh, sw)
    ours, results = {}, {}
    for alg in ARGS.algorithms or kernels.CONV_ALGORITHMS:
        if alg.startswith("winograd") and (kh, kw, sh, sw) != (3, 3, 1, 1):
            continue
        tag = f"{alg}{'*' if alg == chosen else ''}: "
        ours[tag + "forward"] = lambda a=alg: kernels.conv2d_forward(x, w, b, sh, sw, ph, pw, algorithm=a)
        ours[tag + "backward"] = lambda a=alg: kernels.conv2d_backward(x, w, dy, sh, sw, ph, pw, algorithm=a)
        ours[tag + "backward, no dx"] = lambda a=alg: kernels.conv2d_backward(x, w, dy, sh, sw, ph, pw,
                                                                             need_dx=False, algorithm=a)
        results[alg] = [ours[tag + "forward"]()] + list(ours[tag + "backward"]())
    theirs = None
    if torch is not None:
        tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))

        def t_forward():
            with torch.no_grad():
                return torch.nn.functional.conv2d(tx, tw, tb, stride, padding)

        def t_backward(mask):
            return lambda: torch.ops.aten.convolution_backward(
                tdy, tx, tw, [O], list(stride), list(padding), [1, 1], False, [0, 0], 1, mask)
        theirs = {"forward": t_forward, "backward": t_backward([True, True, True]),
                  "backward, no dx": t_backward([False, True, True])}
        for alg, got in results.items():
            check(f"{name} ({alg})", got, [theirs["forward"]()] + list(theirs["backward"]()))
    report(f"{name}: x {xshape}, w {(O, C, kh, kw)}, stride {stride}, padding {padding}, float32",
           ours, theirs, {"forward": flops, "backward": 2 * flops, "backward, no dx": flops})


def pool_case(xshape=(128, 64, 32, 32), k=2):
    x = np.random.default_rng(0).standard_normal(xshape, dtype=np.float32)
    H, W = xshape[2:]
    y, arg = kernels.maxpool2d_forward(x, k, k, k, k, 0, 0)
    dy = np.random.default_rng(1).standard_normal(y.shape, dtype=np.float32)
    ours = {"max forward": lambda: kernels.maxpool2d_forward(x, k, k, k, k, 0, 0),
            "max backward": lambda: kernels.maxpool2d_backward(dy, arg, H, W),
            "avg forward": lambda: kernels.avgpool2d_forward(x, k, k, k, k, 0, 0),
            "avg backward": lambda: kernels.avgpool2d_backward(dy, H, W, k, k, k, k, 0, 0)}
    theirs = None
    if torch is not None:
        F, tx, tdy = torch.nn.functional, torch.from_numpy(x), torch.from_numpy(dy)
        _, tidx = F.max_pool2d(tx, k, return_indices=True)
        theirs = {"max forward": lambda: F.max_pool2d(tx, k, return_indices=True),
                  "max backward": lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                      tdy, tx, [k, k], [k, k], [0, 0], [1, 1], False, tidx),
                  "avg forward": lambda: F.avg_pool2d(tx, k),
                  "avg backward": lambda: torch.ops.aten.avg_pool2d_backward(
                      tdy, tx, [k, k], [k, k], [0, 0], False, True, None)}
        first = (lambda out: out[0] if isinstance(out, tuple) else out)     # max forward: (y, indices)
        check("pooling", [first(f()) for f in ours.values()], [first(f()) for f in theirs.values()], list(ours))
    report(f"pooling {k}x{k} stride {k}: x {xshape}, float32", ours, theirs, None)


def main():
    from npnet.kernels._threads import num_threads
    print(f"threads: npnet {num_threads()} kernel workers, "
          f"torch {torch.get_num_threads() if torch else '-'}, SciPy BLAS inside Numba workers "
          f"{kernels.blas_setup()['threads']}; max other load per block {ARGS.max_load} cores")
    print(ISA)
    print(f"{_common.openblas_report()}; clock: "
          f"{'CPU time of the calling thread' if ARGS.clock == 'cpu' else 'wall time'}")
    for case in CONV_CASES:
        if ARGS.cases is None or any(c in case[0] for c in ARGS.cases):
            conv_case(*case)
    if not ARGS.no_pool:
        pool_case()


if __name__ == "__main__":
    main()
