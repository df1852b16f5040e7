import os

os.environ.setdefault("MPLBACKEND", "Agg")

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


@pytest.fixture(autouse=True)
def tune_cache(tmp_path_factory, monkeypatch):
    """Every test's tune pass (``npnet.tune``, the runner's ``speed.tune``) writes its timings to a
    folder of the test session, never to the user's ~/.cache; no choices are kept in memory."""
    from npnet.kernels import autotune
    folder = tmp_path_factory.getbasetemp() / "autotune"
    monkeypatch.setenv("NPNET_AUTOTUNE_CACHE", str(folder))
    monkeypatch.setitem(autotune._state, "choices", {})
    monkeypatch.setitem(autotune._state, "loaded", None)
    return folder
