"""Floor 0 plumbing shared by every package: atomic file writes and JSON-in-array encoding
(random-generator states, configs) so that nothing npnet writes needs pickle.

Imports nothing from npnet.
"""
import contextlib
import json
import os
import tempfile

import numpy as np


def atomic_write(path, write):
    """Calls ``write(binary_file)`` on a temporary file beside ``path``, then renames it to
    ``path``. A failure at any point (even Ctrl-C) leaves the previous ``path`` as it was and
    removes the temporary file. Returns ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    return path


def remove_stale_temporaries(folder):
    """Removes the temporary files ``atomic_write`` left in ``folder`` when a process was killed
    in the middle of a write (SIGKILL, a crash: nothing could clean up); returns their names.
    Call it only where no other process is writing, e.g. a run folder being resumed."""
    import glob
    stale = glob.glob(os.path.join(os.fspath(folder), ".*.tmp"))
    for path in stale:
        with contextlib.suppress(OSError):
            os.remove(path)
    return [os.path.basename(p) for p in stale]


def atomic_write_text(path, text):
    """``atomic_write`` of a UTF-8 string."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def check_writable_folder(path, keep=False):
    """Raises ``ValueError`` saying why files cannot be written in the folder ``path`` (a file in
    the way, no permission, a read-only file system), found by trying: the missing folders are
    made and a temporary file written and removed, since permission bits do not tell (root).
    ``keep`` False removes the folders this made, leaving the disk as it was; True keeps them
    (safe when several processes check the same path at once)."""
    path = os.path.abspath(os.fspath(path))
    missing, existing = [], path
    while not os.path.lexists(existing):
        missing.append(existing)
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{existing} is a file, not a folder" if existing == path else
                         f"{existing} is a file, so no folder {path} can be made in it")
    made = []
    try:
        for folder in reversed(missing):
            os.makedirs(folder, exist_ok=keep)
            made.append(folder)
        fd, probe = tempfile.mkstemp(prefix=".npnet-write-test.", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"cannot write in {path} ({e.strerror or e})") from None
    finally:
        for folder in [] if keep else reversed(made):
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def to_json_array(obj):
    """A JSON string of ``obj`` in a 0-d unicode array (floats round-trip exactly; arrays become
    lists)."""
    return np.array(json.dumps(obj, sort_keys=True, default=lambda a: np.asarray(a).tolist()))


def from_json_array(array):
    """The object stored by ``to_json_array``."""
    return json.loads(str(np.asarray(array)[()]))


def rng_state(rng):
    """A Generator's bit-generator state as a 0-d str array (JSON: PCG64's 128-bit integers do
    not fit int64)."""
    return to_json_array(rng.bit_generator.state)


def set_rng_state(rng, array, owner="RNG"):
    """Restores a state produced by ``rng_state``; ``owner`` names the generator in errors."""
    state = from_json_array(array)
    expected = rng.bit_generator.state["bit_generator"]
    if state.get("bit_generator") != expected:
        raise ValueError(f"{owner}: saved state is for {state.get('bit_generator')}, the "
                         f"generator is {expected}")
    rng.bit_generator.state = state
