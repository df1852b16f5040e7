"""Measuring convolution algorithms and remembering the fastest, for ``npnet.tune`` (``nn/tuning.py``).

Nothing here runs by itself: a layer runs the algorithm its ``algorithm`` attribute names, and only
the tune pass, called by the user or by the runner from a config's ``speed:`` section, measures.
:func:`measure` times each candidate of one layer shape in turns and keeps the fastest, as cuDNN's
benchmark mode does.

* **Where choices live.** In one JSON file per machine setting under ``~/.cache/npnet/autotune/``
  (``$NPNET_AUTOTUNE_CACHE`` to move it), named by a hash of what the ranking depends on: the CPU
  model (with its family, model and stepping: "AMD EPYC" alone names Zen 3, 4 and 5 alike), SciPy's
  BLAS kernel set, the CPU Numba compiles for, npnet's version and the candidate algorithms (all
  written inside the file too). Not the thread count: a run on one process and the same run on two
  data-parallel ranks (one thread each) on this machine then read the same choices and compute the
  same function. The file is rewritten whole through a temporary file and a rename, merged with what
  other processes wrote meanwhile, so that concurrent processes never read half a file.
* **Rounding.** Algorithms round differently: against the exact result, the float32 error of im2col
  and of Winograd F(2x2, 3x3) is ~2-6e-7 of the largest output, that of F(4x4, 3x3) ("winograd4")
  ~2-8e-6 (``winograd.py``). A tuned model can differ from an untuned one in the last bits.
"""
import functools
import hashlib
import json
import logging
import os
import platform
import threading
import time

from .._io import atomic_write_text

#: the convolution algorithms (``conv.py``)
ALGORITHMS = ("im2col", "winograd", "winograd4")
#: timed calls per candidate, taken in turns; the fastest of each counts. With two calls one after the
#: other per candidate, a 20-50 ms slow spell of this virtual machine during one candidate's calls
#: made the tuner pick im2col for ResNet-32's 16->16 backward inside a model run (13 ms per call
#: instead of 7) on 6 December.
ROUNDS = 3
_log = logging.getLogger("npnet.autotune")
_lock = threading.Lock()
_state = {"choices": {}, "loaded": None}


@functools.lru_cache(maxsize=None)
def _fixed_setting():
    """The parts of the setting that cannot change in a process, read once."""
    from numba import config
    from ._threads import blas_architecture
    target = "host" if config.CPU_NAME is None else config.CPU_NAME + ("" if config.CPU_FEATURES is None else "+set features")
    return (("cpu", _cpu_model()), ("blas", blas_architecture()), ("npnet", _npnet_version()), ("numba_cpu", target))


def machine_setting(candidates=ALGORITHMS):
    """What a measured choice depends on: ``{"cpu", "blas", "numba_cpu", "npnet", "algorithms"}``
    (``numba_cpu``: "host", or the target NUMBA_CPU_NAME sets)."""
    return dict(_fixed_setting(), algorithms=sorted(candidates))


def cache_file(candidates=ALGORITHMS):
    """The cache file of this machine's setting for the algorithms ``candidates``."""
    folder = os.environ.get("NPNET_AUTOTUNE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "npnet",
                                                                     "autotune")
    setting = json.dumps(machine_setting(candidates), sort_keys=True)
    return os.path.join(folder, hashlib.sha256(setting.encode()).hexdigest()[:16] + ".json")


def measure(key, candidates, rounds=ROUNDS):
    """``(best, times)``: the fastest of ``candidates`` (``{name: function of no arguments}``, each
    computing the same thing) for the layer shape ``key``, and ``{name: seconds}`` (the fastest of
    ``rounds`` timed calls, taken in turns; empty when the choice was read from the cache). Each
    candidate is called once untimed first (it compiles, touches new buffers)."""
    with _lock:
        if _state["loaded"] != cache_file(candidates):
            _load(candidates)
        known = _state["choices"].get(key)
    if known in candidates:
        return known, {}
    for run in candidates.values():
        run()
    times = {name: float("inf") for name in candidates}
    for _ in range(rounds):                        # round-robin: a slow spell of the machine hits all alike
        for name, run in candidates.items():
            times[name] = min(times[name], _timed(run))
    best = min(times, key=times.get)
    _log.info("%s: %s (%s)", key, best, ", ".join(f"{n} {t * 1e3:.2f} ms" for n, t in times.items()))
    with _lock:
        _state["choices"][key] = best
        _save(key, best, candidates)
    return best, times


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


def _load(candidates):
    """The choices of this setting's file replace those in memory (another candidate set's
    choices must not be used for this one)."""
    path = cache_file(candidates)
    _state["choices"] = _read(path)
    _state["loaded"] = path


def _save(key, name, candidates):
    """Merges this choice into the cache file, written whole to a temporary file and renamed."""
    path = cache_file(candidates)
    merged = _read(path)
    merged[key] = name
    try:
        atomic_write_text(path, json.dumps({"setting": machine_setting(candidates), "choices": merged},
                                           indent=1, sort_keys=True))
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
