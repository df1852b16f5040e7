"""Numba's disk cache never runs old compiled code after an edit of a kernel file (``npnet.kernels._jit``).

Numba keys a cached function by its own file only: a kernel calling an ``@njit`` helper of another file
would keep the helper's old code after that file is edited. The end-to-end test copies the npnet
package into a temporary folder, adds a caller / callee pair of tiny kernels in two files (declared as
``im2col.py`` declares its kernels), and runs them in fresh processes.
"""
import importlib
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import npnet
from npnet import kernels

_RUN = """
import sys
import npnet
import pytest
from npnet.kernels._probe_caller import twice
assert npnet.__file__.startswith(sys.argv[1]), npnet.__file__
print(twice(), sum(twice.stats.cache_hits.values()))
"""


def _kernel_header():
    """The lines by which ``im2col.py`` imports ``njit`` and ``CACHE``: the probes use npnet's real way."""
    source = (Path(kernels.__file__).parent / "im2col.py").read_text()
    lines = [line for line in source.splitlines() if re.match(r"from (numba|\._jit) import", line)]
    assert any("njit" in line for line in lines) and any("CACHE" in line for line in lines), lines
    return "\n".join(lines) + "\n\n"


def _write_probes(folder, value):
    """``_probe_callee.value()`` returns ``value``; ``_probe_caller.twice()`` returns ``2 * value()``."""
    header = _kernel_header()
    (folder / "_probe_callee.py").write_text(header + f"@njit(cache=CACHE)\ndef value():\n    return {value}\n")
    (folder / "_probe_caller.py").write_text(header + "from ._probe_callee import value\n\n\n"
                                             "@njit(cache=CACHE)\ndef twice():\n    return 2 * value()\n")


def _run(root):
    """(result of ``twice()``, cache hits) in a fresh process importing npnet from ``root``."""
    env = {k: v for k, v in os.environ.items() if k not in ("NPNET_NUMBA_CACHE", "NUMBA_DISABLE_JIT")}
    env["PYTHONPATH"] = str(root)
    out = subprocess.run([sys.executable, "-c", _RUN, str(root)], cwd=root, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result, hits = out.stdout.split()
    return int(result), int(hits)


def test_editing_a_callee_file_recompiles_its_cached_callers(tmp_path):
    package = tmp_path / "npnet"
    shutil.copytree(Path(npnet.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    _write_probes(package / "kernels", value=1)
    assert _run(tmp_path) == (2, 0)                   # compiled and saved
    assert _run(tmp_path) == (2, 1)                   # a warm start loads from the cache
    _write_probes(package / "kernels", value=5)       # only the callee's file changes
    assert _run(tmp_path) == (10, 0)                  # the caller compiled afresh with the new callee
    assert _run(tmp_path) == (10, 1)


def _kernel_modules():
    """Every module of ``npnet.kernels``, including those imported only lazily."""
    for info in pkgutil.iter_modules(kernels.__path__):
        yield importlib.import_module(f"npnet.kernels.{info.name}")


def test_every_cached_kernel_uses_the_cache_keyed_by_all_kernel_sources():
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher
    from npnet.kernels._jit import CACHE, KernelCache
    cached = {}
    for module in _kernel_modules():
        for name, obj in vars(module).items():
            if isinstance(obj, Dispatcher) and obj.py_func.__module__ == module.__name__:
                cached[f"{module.__name__}.{name}"] = type(obj._cache)
    assert "npnet.kernels.im2col.im2col_image" in cached
    wanted = KernelCache if CACHE else NullCache
    assert {k: v for k, v in cached.items() if v is not wanted} == {}


def test_the_stamp_changes_with_any_kernel_file(tmp_path):
    from npnet.kernels._jit import sources_digest
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 1\n")
    (tmp_path / "notes.txt").write_text("not a source\n")
    before = sources_digest(str(tmp_path))
    sources_digest.cache_clear()
    (tmp_path / "notes.txt").write_text("edited\n")
    assert sources_digest(str(tmp_path)) == before
    sources_digest.cache_clear()
    (tmp_path / "b.py").write_text("y = 2\n")
    assert sources_digest(str(tmp_path)) != before


def test_njit_keeps_numbas_forms_and_refuses_eager_signatures_with_cache():
    from npnet.kernels._jit import njit

    def add_one(a):
        return a + 1
    assert njit(add_one)(1) == 2 and njit(fastmath=True)(add_one)(2.0) == 3.0
    with pytest.raises(TypeError, match="explicit signatures"):
        njit("float64(float64)", cache=True)
