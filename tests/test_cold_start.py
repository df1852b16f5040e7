"""Cold start: what a fresh process compiles, and that a warm one compiles nothing (no timing asserted).

Two fresh processes share one empty Numba cache folder (``NUMBA_CACHE_DIR``): the first runs a small
model's float32 train step (a 3x3 convolution on F(2x2) and one on F(4x4), a 3-channel one on
im2col, ReLU, 2x2 max pooling, Linear) and compiles its kernels; the second runs the same step and
must load every kernel from the cache: no Numba compile event, no cache miss, no new cache file.
The first also reports every npnet kernel's compiled signatures: one each, float32 (a float32 step
never compiles a float64 or a literal-specialised copy of a kernel).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import npnet

_STEP = r"""
import importlib, json, pkgutil
import numpy as np
import npnet
from npnet import kernels, losses, nn, optim
from npnet.train import train_step
from numba.core import event
from numba.core.dispatcher import Dispatcher

compiled = []


class Compiles(event.Listener):
    def on_start(self, ev):
        f = ev.data["dispatcher"].py_func
        compiled.append(f.__module__ + "." + f.__qualname__)

    def on_end(self, ev):
        pass


event.register("numba:compile", Compiles())
model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, rng=0), nn.ReLU(),
                      nn.Conv2d(16, 16, 3, padding=1, rng=1, algorithm="winograd4"), nn.ReLU(),
                      nn.Conv2d(16, 16, 3, padding=1, rng=2), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(16 * 4 * 4, 10, rng=3))
rng = np.random.default_rng(0)
x = rng.standard_normal((4, 3, 8, 8), dtype=np.float32)
y = rng.integers(0, 10, 4)
train_step(model, losses.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), x, y)
signatures, misses = {}, 0
for info in pkgutil.iter_modules(kernels.__path__):
    module = importlib.import_module("npnet.kernels." + info.name)
    for name, obj in vars(module).items():
        if isinstance(obj, Dispatcher) and obj.py_func.__module__ == module.__name__ and obj.signatures:
            signatures[module.__name__ + "." + name] = [str(s) for s in obj.signatures]
            misses += sum(obj.stats.cache_misses.values())
print(json.dumps({"compiled": compiled, "signatures": signatures, "cache_misses": misses}))
"""


def _step(cache):
    """The report of ``_STEP`` run in a fresh process on the Numba cache folder ``cache``."""
    env = {k: v for k, v in os.environ.items() if k not in ("NPNET_NUMBA_CACHE", "NUMBA_DISABLE_JIT")}
    env.update(NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(Path(npnet.__file__).parent.parent))
    out = subprocess.run([sys.executable, "-c", _STEP], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cache_files(cache):
    return sorted(str(p.relative_to(cache)) for p in Path(cache).rglob("*") if p.is_file())


def test_a_warm_process_compiles_nothing_and_a_float32_step_compiles_one_float32_version(tmp_path):
    cold = _step(tmp_path)
    assert any(name.startswith("npnet.kernels.winograd._forward") for name in cold["compiled"])
    files = _cache_files(tmp_path)
    assert any(f.endswith(".nbi") for f in files)
    many = {k: v for k, v in cold["signatures"].items() if len(v) != 1}
    assert many == {}, f"kernels compiled more than once in one float32 step: {many}"
    f64 = {k: v for k, v in cold["signatures"].items() if "Array(float64" in v[0] and "Array(float32" not in v[0]}
    assert f64 == {}, f"kernels compiled for float64 data in a float32 step: {f64}"

    warm = _step(tmp_path)
    assert warm["compiled"] == [], f"a warm process compiled {warm['compiled']}"
    assert warm["cache_misses"] == 0
    # the kernels the layers call were loaded from the cache (helpers compiled into them are not loaded)
    assert "npnet.kernels.winograd._forward2" in warm["signatures"]
    assert set(warm["signatures"]) <= set(cold["signatures"])
    assert _cache_files(tmp_path) == files             # nothing new written
