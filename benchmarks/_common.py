"""Helpers shared by the benchmark scripts: thread pinning, timing, FLOP counting, peak memory, tables.

Import order matters: call :func:`pin_threads` *before* anything imports NumPy, Numba or PyTorch,
because OpenBLAS and the OpenMP runtimes read their thread counts from the environment when they load.
This module imports nothing heavy at the top for that reason.
"""
import gc
import os
import statistics
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")


# -- threads and imports ---------------------------------------------------------------------------
def pin_threads(n):
    """Put the thread count into the environment (inherited by subprocesses) and make the repo's
    ``npnet`` importable without installing it."""
    for var in THREAD_VARS:
        os.environ[var] = str(n)
    if REPO not in sys.path:
        sys.path.insert(0, REPO)


ISAS = ("native", "avx2")


def emulate_isa(isa):
    """``--isa avx2``: run every library's AVX2 code on this (AVX-512) CPU, as on an AVX2-only machine
    (AMD Zen 2/3, Intel Haswell to Skylake client parts): SciPy's OpenBLAS with its Haswell kernels,
    Numba compiling for Zen 3 with no AVX-512 instruction, PyTorch's ATen at AVX2, oneDNN at AVX2 and
    MKL at AVX2. The clock, caches and memory stay this machine's: a model of an AVX2 CPU's code
    paths, not a measurement of such a CPU. Sets environment variables, so call it, like
    :func:`pin_threads`, before NumPy, Numba or PyTorch is imported; returns a line for the report."""
    if isa == "native":
        return "ISA: native (every library picks its own kernels for this CPU)"
    if isa != "avx2":
        raise ValueError(f"--isa must be one of {ISAS}, got {isa!r}")
    import llvmlite.binding as ll
    wide = ("avx512", "evex512", "amx", "avx10", "avxvnni", "avxifma", "avxneconvert")
    features = ",".join(("+" if on and not name.startswith(wide) else "-") + name
                        for name, on in ll.get_host_cpu_features().items())
    os.environ.update(OPENBLAS_CORETYPE="Haswell", NUMBA_CPU_NAME="znver3", NUMBA_CPU_FEATURES=features,
                      ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2")
    return ("ISA: AVX2 emulated on this CPU (OPENBLAS_CORETYPE=Haswell, NUMBA_CPU_NAME=znver3 without "
            "AVX-512 features, ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2, MKL_ENABLE_INSTRUCTIONS=AVX2)")


def load_frameworks(n, want_torch=True):
    """Import npnet (and PyTorch if wanted and installed) with ``n`` threads everywhere.

    Returns the torch module or None. Call after :func:`pin_threads`, whose ``NUMBA_NUM_THREADS``
    gives npnet's kernels their n workers. Not ``numba.set_num_threads(n)``: it starts Numba's
    OpenMP pool (which npnet never uses), and with that pool started before PyTorch loads its own
    OpenMP runtime PyTorch's Transformer train step took 7.9 s instead of 0.23 s (7 December).
    """
    import npnet  # noqa: F401  (loads the kernels, which pin SciPy's BLAS to one thread per worker)
    from npnet.kernels._threads import num_threads
    if num_threads() != n:
        raise RuntimeError(f"npnet's kernels would run {num_threads()} workers, not {n}: call "
                           "pin_threads before anything imports Numba")
    if not want_torch:
        return None
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(n)
    return torch


def thread_report(torch):
    """One line saying which thread pools run with how many threads (after a kernel has run)."""
    from npnet import kernels
    from npnet.kernels._threads import num_threads
    setup = getattr(kernels, "blas_setup", None)     # the kernels are being tuned: do not insist
    blas = setup().get("threads", "?") if setup else "?"
    t = f"torch {torch.__version__} {torch.get_num_threads()} threads" if torch else "torch: not used"
    return (f"npnet {num_threads()} kernel workers (Python threads), SciPy OpenBLAS inside them "
            f"{blas} thread per worker, NumPy OpenBLAS {os.environ.get('OPENBLAS_NUM_THREADS')}; {t}")


def openblas_report():
    """Which kernel set SciPy's OpenBLAS (the one npnet's kernels call) runs, and whether the
    environment forced it: OPENBLAS_CORETYPE=Haswell on an AVX-512 CPU halves its small GEMMs."""
    try:
        from threadpoolctl import threadpool_info
        import scipy.linalg  # noqa: F401  (loads SciPy's OpenBLAS so that threadpoolctl sees it)
        cores = [i.get("architecture") for i in threadpool_info()
                 if "scipy" in i.get("filepath", "") and "numpy" not in i.get("filepath", "")]
    except ImportError:
        cores = []
    return (f"SciPy OpenBLAS kernels: {cores[0] if cores else 'unknown'} "
            f"(OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')})")


class BusyLoop:
    """A competing process for the duration of a ``with`` block: one Python busy loop, i.e. one
    core's worth of someone else's work, started before and killed after the timing."""

    def __enter__(self):
        import subprocess
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)  # let it get going before anything is timed
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def load_report():
    """The 1/5/15-minute load averages: on a shared machine, anything above 0 is someone else."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average: unknown"
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} CPUs"


def cpu_busy(interval=1.0):
    """Fraction of all CPUs busy during ``interval`` seconds (from /proc/stat), or None off Linux.
    Called while this process idles, it measures everyone else."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]                       # total, idle + iowait
    try:
        t0, i0 = snap()
        time.sleep(interval)
        t1, i1 = snap()
    except OSError:
        return None
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


class OtherLoad:
    """Context manager: the share of the machine's CPU time that *other* processes used while it
    was open (0.5 = one of two cores busy elsewhere), from /proc/stat minus this process's own CPU
    time. None off Linux. Printed next to results so that a noisy row can be recognised."""

    def __enter__(self):
        self.share = None
        self._start = self._sample()
        return self

    def __exit__(self, *exc):
        end = self._sample()
        if self._start and end:
            wall = end[0] - self._start[0]
            busy = end[1] - self._start[1]
            own = end[2] - self._start[2]
            self.share = max(0.0, (busy - own) / max(wall * (os.cpu_count() or 1), 1e-9))
        return False

    @staticmethod
    def _sample():
        import resource
        try:
            with open("/proc/stat") as f:
                v = [int(t) for t in f.readline().split()[1:]]
        except OSError:
            return None
        busy = (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")    # all CPUs, seconds
        me = resource.getrusage(resource.RUSAGE_SELF)
        return time.perf_counter(), busy, me.ru_utime + me.ru_stime


def wait_until_quiet(max_wait, max_busy=0.15):
    """Waits (up to ``max_wait`` seconds) until other processes use less than ``max_busy`` of the
    CPUs; returns a sentence saying how busy the machine was when we started."""
    deadline = time.time() + max_wait
    busy = cpu_busy()
    while busy is not None and busy > max_busy and time.time() < deadline:
        busy = cpu_busy(5.0)
    return "unknown" if busy is None else f"{busy * 100:.0f}% of the CPUs busy with other work"


def machine_state(wait=0):
    """Waits up to ``wait`` seconds for a quiet machine, then describes how busy it is."""
    return f"{wait_until_quiet(wait)}; {load_report()}"


# -- timing ----------------------------------------------------------------------------------------
def time_interleaved(fns, steps, warmup, rounds=3, min_time=0.3, pause=0.05, block_warmup=1):
    """Seconds per call of each function in ``fns`` (name -> zero-argument callable).

    Each function is called ``warmup`` times first (compilation, first-touch page faults, PyTorch's
    kernel selection). The timed calls then run in ``rounds`` blocks that alternate between the
    functions, so that load from other processes on a shared machine hits every side alike, in an
    order that is reversed every other round (ABBA...), so that a side is not always the one that
    follows another (an A/B of two npnet versions with the same order every round moved from 0.86
    to 1.05 when the order was swapped, on 6 December; with the order alternating, the first- and
    second-position medians agreed within 2-3 %); a short
    pause before each block lets the previous side's spinning OpenMP threads go to sleep, and
    ``block_warmup`` untimed calls open each block: the first step after another side's block was
    measured up to 2x slower than the next on the big models (npnet cnn-bn: 580-695 ms, then
    ~300 ms; cause not established, no swap here), and a training loop runs step after step. Each side
    gets at least ``steps`` timed calls, more for fast functions (until ~``min_time`` seconds).
    Returns name -> list of per-call seconds (take the median).
    """
    per_call = {}
    for name, f in fns.items():
        t0 = time.perf_counter()
        for _ in range(max(warmup, 1)):
            f()
        per_call[name] = (time.perf_counter() - t0) / max(warmup, 1)
    times = {name: [] for name in fns}
    for r in range(rounds):
        for name, f in (list(fns.items()) if r % 2 == 0 else list(fns.items())[::-1]):
            n = max(steps, int(min_time / max(per_call[name], 1e-6)))
            n = n // rounds + (1 if r < n % rounds else 0)
            time.sleep(pause)
            for _ in range(block_warmup):
                f()
            for _ in range(n):
                t0 = time.perf_counter()
                f()
                times[name].append(time.perf_counter() - t0)
    return times


def median(xs):
    return statistics.median(xs)


def spread(xs):
    """Relative half-width of the inter-quartile range, a rough noise figure (0.05 = +-5%)."""
    if len(xs) < 4:
        return (max(xs) - min(xs)) / 2 / statistics.median(xs)
    q = statistics.quantiles(xs, n=4)
    return (q[2] - q[0]) / 2 / statistics.median(xs)


# -- the npnet train step ---------------------------------------------------------------------------
def train_setup(model, lr=1e-3):
    """(criterion, optimizer) of every npnet train step timed here: cross-entropy and
    SGD(momentum=0.9). ``lr`` is small so that many steps on random labels stay finite."""
    from npnet import losses, optim
    return losses.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def npnet_train_step(model, x, y, lr=1e-3):
    """A zero-argument callable running ``npnet.train.train_step`` (the step the Trainer takes:
    zero_grad, forward, loss, backward without the input gradient, SGD step) on ``x``, ``y``."""
    from npnet.train import train_step
    criterion, optimizer = train_setup(model, lr)
    return lambda: train_step(model, criterion, optimizer, x, y)


# -- FLOP counting ---------------------------------------------------------------------------------
def layer_macs(module, in_shape):
    """Multiply-accumulates of one sample through a Conv2d or Linear (0 for any other module).

    in_shape: the input shape without the batch dim. Bias additions and the element-wise layers
    (BatchNorm, ReLU, pooling, ...) are not counted: they are memory-bound and < 1% of the work.
    """
    from npnet import nn
    if isinstance(module, nn.Conv2d):
        _, oh, ow = module.output_shape(in_shape)
        kh, kw = module.kernel_size
        return module.out_channels * oh * ow * module.in_channels * kh * kw
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


def record_layer_inputs(model, x):
    """Runs ``model`` on ``x`` once in eval mode and returns ``[(module, input shape)]`` for every
    call of a leaf module (one without children), in call order. Each leaf gets a forward hook (the
    public API; a hooked layer runs unfused, so every leaf is called through ``Module.__call__``
    even where a Sequential fuses neighbours); the hooks are removed, the model's mode restored
    and its caches cleared afterwards."""
    seen = []
    leaves = [m for m in model.modules() if not m._modules]
    handles = [m.register_forward_hook(lambda mod, inp, out: seen.append((mod, inp[0].shape))) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        for m in model.modules():
            m.cache = None
    return seen


def sgemm_peak_gflops(threads, n=2048, repeats=5):
    """The best float32 GEMM rate of this machine at ``threads`` threads: NumPy's BLAS on two
    (n, n) matrices, limited to ``threads`` through threadpoolctl; best of ``repeats``."""
    import numpy as np
    from threadpoolctl import threadpool_limits
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    best = float("inf")
    with threadpool_limits(limits=threads, user_api="blas"):
        a @ b
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def _macs_in_call_order(model, in_shape):
    import numpy as np
    x = np.zeros((1,) + tuple(in_shape), dtype=model.dtype)
    return [layer_macs(m, shape[1:]) for m, shape in record_layer_inputs(model, x)]


def forward_flops(model, in_shape):
    """FLOPs (2 * MACs) of one sample's forward pass through ``model`` with input shape ``in_shape``
    (without the batch dim), counted from the shapes each Conv2d / Linear actually sees."""
    return 2 * sum(_macs_in_call_order(model, in_shape))


def train_flops(model, in_shape):
    """FLOPs of one sample's train step: per Conv2d / Linear a forward product, a weight-gradient
    product and an input-gradient product, each as many MACs as the forward, except the input
    gradient of the first such layer: the images need no gradient, so neither npnet
    (``train_step``: ``backward(..., input_grad=False)``) nor PyTorch (inputs without
    ``requires_grad``) computes it. For the mlp that layer is 99.7 % of the work: counting it,
    as "3x the forward" did, put the mlp's train step above the SGEMM peak."""
    macs = _macs_in_call_order(model, in_shape)
    return 2 * (3 * sum(macs) - next((m for m in macs if m), 0))


# -- peak memory -----------------------------------------------------------------------------------
def _proc_status(key):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss():
    """Resets the kernel's peak-RSS mark (VmHWM) to the current RSS; True if it worked (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_now():
    return _proc_status("VmRSS")


def rss_peak():
    """Peak RSS in bytes: VmHWM if available (honours :func:`reset_peak_rss`), else ru_maxrss."""
    peak = _proc_status("VmHWM")
    if peak is None:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return peak


def memory_baseline():
    """Collects garbage, resets the peak mark and returns the current RSS: the zero of a measurement."""
    gc.collect()
    if not reset_peak_rss():
        return rss_peak()       # without a reset, all we can subtract is the peak so far
    return rss_now()


def peak_memory(run, trace=False):
    """The peak-memory figure of a benchmark's child process (a fresh process whose framework is
    imported and warmed already): garbage collected and the peak-RSS mark reset, ``run()`` (build the
    model, optimizer and data, run the steps) is called; returns ``{"baseline_mb", "peak_mb",
    "delta_mb": peak RSS minus the baseline, "traced_mb": tracemalloc's peak if ``trace`` (NumPy
    registers its array buffers there) else None}``."""
    import tracemalloc
    base = memory_baseline()
    if trace:
        tracemalloc.start()
    run()
    peak = rss_peak()
    traced = tracemalloc.get_traced_memory()[1] if tracemalloc.is_tracing() else None
    return {"baseline_mb": base / 2**20, "peak_mb": peak / 2**20, "delta_mb": (peak - base) / 2**20,
            "traced_mb": None if traced is None else traced / 2**20}


def memory_in_children(cmd, repeats=1, what="memory"):
    """Runs ``cmd`` (a benchmark's child, which prints the JSON of :func:`peak_memory` on its last
    line) ``repeats`` times, each a fresh process; the run of median ``delta_mb``, with
    ``all_delta_mb`` of every run, or None if a child failed (its stderr is printed). The median:
    PyTorch's figure varies by tens of MB from run to run with how its allocator and thread arenas
    happen to reuse memory; npnet's hardly."""
    import json
    import subprocess
    runs = []
    for _ in range(repeats):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"  {what} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            return None
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    runs.sort(key=lambda r: r["delta_mb"])
    result = dict(runs[len(runs) // 2])
    result["all_delta_mb"] = [r["delta_mb"] for r in runs]
    return result


# -- tables ----------------------------------------------------------------------------------------
def fmt(value, digits=1):
    """A table cell: '-' for None, numbers with ``digits`` decimals, anything else as str."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def print_table(headers, rows, markdown=False, file=None):
    """Prints rows of already formatted cells, as aligned text or as a GitHub markdown table
    (first column left-aligned, the others right-aligned)."""
    file = file or sys.stdout
    rows = [[str(c) for c in row] for row in rows]
    if markdown:
        print("| " + " | ".join(headers) + " |", file=file)
        print("|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|", file=file)
        for row in rows:
            print("| " + " | ".join(row) + " |", file=file)
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))
    print(line, file=file)
    print("-" * len(line), file=file)
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths))), file=file)
