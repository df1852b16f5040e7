import os

os.environ.setdefault("MPLBACKEND", "Agg")
# the suite runs the fixed per-shape rule: bit-reproducible, and no timing decides a result;
# tests/test_autotune.py switches autotuning on where it is the subject
os.environ.setdefault("NPNET_AUTOTUNE", "0")

from hypothesis import settings  # noqa: E402

# Numba compiles on first call: no per-example deadline; few examples keep the suite fast on 2 cores.
settings.register_profile("npnet", deadline=None, max_examples=25, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "npnet"))


import pytest  # noqa: E402

from npnet import kernels  # noqa: E402


@pytest.fixture(params=["numba", "reference"])
def kernel_mode(request):
    """Runs a test twice: on the Numba kernels and on their NumPy twins (``kernels.use_reference``).
    Layer test files opt in with ``pytestmark = pytest.mark.usefixtures("kernel_mode")``."""
    with kernels.use_reference(request.param == "reference"):
        yield request.param


@pytest.fixture
def tuning(tmp_path, monkeypatch):
    """Autotuning on (the suite runs the fixed rule), with an empty cache folder of its own and no
    choices in memory."""
    from npnet.kernels import autotune
    monkeypatch.setenv("NPNET_AUTOTUNE_CACHE", str(tmp_path))
    monkeypatch.setitem(autotune._state, "choices", {})
    monkeypatch.setitem(autotune._state, "used", {})
    monkeypatch.setitem(autotune._state, "loaded", None)
    previous = autotune.set_enabled(True)
    yield tmp_path
    autotune.set_enabled(previous)
