import os

os.environ.setdefault("MPLBACKEND", "Agg")

from hypothesis import settings  # noqa: E402

# Numba compiles on first call: no per-example deadline; few examples keep the suite fast on 2 cores.
settings.register_profile("npnet", deadline=None, max_examples=25, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "npnet"))
