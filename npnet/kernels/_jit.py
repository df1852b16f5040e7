"""The Numba settings every kernel shares.

``CACHE``: compiled kernels are kept on disk (``cache=True``, in ``npnet/kernels/__pycache__``) so that a
new process starts in under a second instead of compiling for ~15 s. Numba's cache checks only the file
of the function it caches: after editing ``im2col.py``, ``conv.py``'s cached kernels would keep calling
the old im2col. While editing kernels, set ``NPNET_NUMBA_CACHE=0`` in the environment before npnet is
imported: nothing is read from or written to the cache, every kernel compiles afresh.
"""
import os

CACHE = os.environ.get("NPNET_NUMBA_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")
