"""Choosing a convolution's algorithm by measurement, as cuDNN's benchmark mode does.

The first time a 3x3 stride-1 convolution of a given shape runs (the one case with several
algorithms: im2col, Winograd F(2x2, 3x3) and F(4x4, 3x3)), each pass is timed with every algorithm
and the fastest is kept, since no fixed rule picked the best one on every layer and BLAS kernel set
(benchmarks/README.md). The passes are chosen separately: the forward; the backward with both
gradients (timed as one call, since both share the transform of dy); the input gradient alone (a
frozen weight) and the weight gradient alone (a first layer, whose input needs no gradient). Every
later call of that shape uses the choice at once.

* **Where choices live.** In memory, and in one JSON file per machine setting under
  ``~/.cache/npnet/autotune/`` (``$NPNET_AUTOTUNE_CACHE`` to move it), named by a hash of what the
  timing depends on: CPU model (with its family, model and stepping: "AMD EPYC" alone names Zen 3, 4
  and 5 alike), SciPy's BLAS kernel set, the CPU Numba compiles for, Numba's thread count, npnet's
  version and the algorithms (all written inside the file too). The file is rewritten whole through a temporary file and a
  rename, merged with what other processes wrote meanwhile, so that concurrent processes (sweep
  trials, data-parallel ranks) never read half a file; two processes tuning the same shape at once
  both measure it and the last write wins.
* **Visible.** :func:`choices` returns them; each new choice is logged on the ``npnet.autotune``
  logger (INFO) with both times.
* **The switch.** ``NPNET_AUTOTUNE=0`` in the environment, :func:`set_enabled` or ``with
  autotune.disabled():`` keep the fixed rule of :func:`conv.conv_algorithm` (bit-reproducible runs).
* **The candidates.** ``NPNET_AUTOTUNE_ALGORITHMS=im2col,winograd`` or :func:`set_algorithms` /
  ``with autotune.only(...)`` limit what the tuner may choose from (one name: that algorithm wherever
  it applies, unmeasured). Different algorithms round differently: against the exact result, the
  float32 error of im2col and of Winograd F(2x2, 3x3) is ~2-6e-7 of the largest output, that of
  F(4x4, 3x3) ("winograd4") ~2-8e-6 (``winograd.py``). So a run with autotuning can differ from one
  without in the last bits, and across machines whose choices differ; leaving "winograd4" out keeps
  every convolution at the smaller error.
"""
import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import threading
import time

from .._io import atomic_write_text
from .._switch import Switch

PASSES = ("forward", "backward", "input_grad", "weight_grad")
#: the convolution algorithms (``conv.py``); part of the setting, so that a cache measured before an
#: algorithm existed is not read as if it had been measured against it
ALGORITHMS = ("im2col", "winograd", "winograd4")
#: timed calls per candidate, taken in turns; the fastest of each counts. With two calls one after the
#: other per candidate, a 20-50 ms slow spell of this virtual machine during one candidate's calls
#: made the tuner pick im2col for ResNet-32's 16->16 backward inside a model run (13 ms per call
#: instead of 7) on 6 December.
ROUNDS = 3
_log = logging.getLogger("npnet.autotune")
_lock = threading.Lock()
_enabled = Switch(os.environ.get("NPNET_AUTOTUNE", "1").strip().lower() not in ("0", "false", "no", "off"))
_state = {"choices": {}, "used": {}, "loaded": None}


def _parse_algorithms(names):
    names = tuple(n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip())
    unknown = [n for n in names if n not in ALGORITHMS]
    if not names or unknown:
        raise ValueError(f"autotune: algorithms must be a non-empty selection of {ALGORITHMS}, got {names!r}")
    return tuple(a for a in ALGORITHMS if a in names)


_algorithms = [_parse_algorithms(os.environ.get("NPNET_AUTOTUNE_ALGORITHMS") or ALGORITHMS)]


def algorithms():
    """The algorithms the tuner chooses from (all of ``ALGORITHMS`` unless limited)."""
    return _algorithms[0]


def set_algorithms(names):
    """Limits the tuner to ``names`` (a sequence, or a comma-separated string); returns the previous
    selection. Each selection has a cache file of its own."""
    previous, _algorithms[0] = _algorithms[0], _parse_algorithms(names)
    return previous


@contextlib.contextmanager
def only(*names):
    """``with autotune.only("im2col", "winograd"):`` the tuner chooses among these inside the block."""
    previous = set_algorithms(names)
    try:
        yield
    finally:
        set_algorithms(previous)


def is_enabled():
    """False with ``NPNET_AUTOTUNE=0``, after ``set_enabled(False)`` or inside ``disabled()``."""
    return _enabled.on


def set_enabled(flag):
    """Turns autotuning on or off for the process; returns the previous setting."""
    return _enabled.set(flag)


def disabled():
    """``with autotune.disabled():`` convolutions use the fixed rule inside the block."""
    return _enabled.turned(False)


def choices():
    """``{"forward (N, C, H, W) -> O 3x3 pad (ph, pw) float32": "winograd", ...}``: the choice of
    every convolution this process ran with autotuning, measured now or read from the cache."""
    with _lock:
        return dict(_state["used"])


def shape_key(pass_, x, w, ph, pw):
    N, C, H, W = x.shape
    return f"{pass_} ({N}, {C}, {H}, {W}) -> {w.shape[0]} 3x3 pad ({ph}, {pw}) {x.dtype}"


@functools.lru_cache(maxsize=None)
def _fixed_setting():
    """The parts of the setting that cannot change in a process, read once (reading them took
    ~0.5 ms: too much for every convolution call)."""
    from numba import config
    from ._threads import blas_architecture
    target = "host" if config.CPU_NAME is None else config.CPU_NAME + ("" if config.CPU_FEATURES is None else "+set features")
    return (("cpu", _cpu_model()), ("blas", blas_architecture()), ("npnet", _npnet_version()), ("numba_cpu", target))


def machine_setting():
    """What a measured choice depends on: ``{"cpu", "blas", "numba_cpu", "threads", "npnet",
    "algorithms"}`` (``numba_cpu``: "host", or the target NUMBA_CPU_NAME sets)."""
    from numba import get_num_threads
    return dict(_fixed_setting(), threads=get_num_threads(), algorithms=list(algorithms()))


def cache_file():
    """The cache file of the current setting (Numba's thread count can change in a process)."""
    from numba import get_num_threads
    folder = os.environ.get("NPNET_AUTOTUNE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "npnet",
                                                                     "autotune")
    return _cache_file(folder, get_num_threads(), algorithms())


@functools.lru_cache(maxsize=None)
def _cache_file(folder, threads, names):
    setting = json.dumps(dict(_fixed_setting(), threads=threads, algorithms=list(names)), sort_keys=True)
    return os.path.join(folder, hashlib.sha256(setting.encode()).hexdigest()[:16] + ".json")


def choose(pass_, key, candidates):
    """``(name, result or None)``: the chosen algorithm for ``key``; when it was measured now, also
    the winner's result, so the call that measures does not compute it again.
    ``candidates``: ``{name: function of no arguments}``, each computing the same pass; a single
    candidate is returned at once, unmeasured and not written to the cache."""
    if len(candidates) == 1:
        name = next(iter(candidates))
        with _lock:
            _state["used"][key] = name
        return name, None
    with _lock:
        if _state["loaded"] != cache_file():
            _load()
        known = _state["choices"].get(key)
        if known in candidates:
            _state["used"][key] = known
    if known in candidates:
        return known, None
    results = {name: run() for name, run in candidates.items()}  # first calls compile, touch new buffers
    times = {name: float("inf") for name in candidates}
    for _ in range(ROUNDS):                        # round-robin: a slow spell of the machine hits all alike
        for name, run in candidates.items():
            times[name] = min(times[name], _timed(run))
    best = min(times, key=times.get)
    _log.info("%s: %s (%s)", key, best, ", ".join(f"{n} {t * 1e3:.2f} ms" for n, t in times.items()))
    with _lock:
        _state["choices"][key] = _state["used"][key] = best
        _save(key, best)
    return best, results[best]


def _timed(run):
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def _read(path):
    try:
        with open(path) as f:
            data = json.load(f)
        return dict(data.get("choices", {}))
    except (OSError, ValueError, AttributeError):
        return {}  # no file yet, or one we cannot read: measure again


def _load():
    """The choices of the current setting's file replace those in memory (another thread count's
    choices must not be used for this one)."""
    path = cache_file()
    _state["choices"] = _read(path)
    _state["loaded"] = path


def _save(key, name):
    """Merges this choice into the cache file, written whole to a temporary file and renamed."""
    path = cache_file()
    merged = _read(path)
    merged[key] = name
    try:
        atomic_write_text(path, json.dumps({"setting": machine_setting(), "choices": merged}, indent=1,
                                           sort_keys=True))
    except OSError as e:  # a read-only home: the choice still holds for this process
        _log.warning("autotune: could not write %s (%s); choices are kept in memory only", path, e)


def _cpu_model():
    """The CPU's model name with its family, model and stepping where /proc/cpuinfo has them."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break                                   # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    ids = [f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields]
    return f"{name} ({', '.join(ids)})" if ids else name


def _npnet_version():
    try:
        from importlib.metadata import version
        return version("npnet")
    except Exception:  # not installed (run from a source tree)
        return "unknown"
