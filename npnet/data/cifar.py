"""CIFAR-10: the official python (pickled) and binary versions, extracted or as the .tar.gz.

Python batches are dicts with `data` (10000, 3072) uint8 — the R, G and B planes of a 32x32 image,
one after another, so a row reshapes to (3, 32, 32) — and `labels` (list of 10000 ints). Binary batches
are records of 1 label byte + 3072 pixel bytes in the same plane order.

Archives are read member by member from the .tar.gz (never extracted) and checked against `CIFAR10_MD5`;
extracted folders have no official checksums, so their contents are checked for shape and range.
Tests override `CIFAR10_URLS` / `CIFAR10_MD5` (module-level dicts) to point at a local server.
"""
import tarfile

import numpy as np

from ._base import CLASSES, DatasetNotFoundError, DatasetSplits, resolve_root
from .download import ChecksumError, check_md5, describe_failure, download
from .safe_pickle import safe_loads

#: archive kind ("python", "binary") -> its official download URL.
CIFAR10_URLS = {"python": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "binary": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"}
#: archive kind ("python", "binary") -> the md5 of the official .tar.gz.
CIFAR10_MD5 = {"python": "c58f30108f718f92721af3b95e74349a",
               "binary": "c32a1d4ab5d03f1284b67883e8d87530"}
_FOLDERS = {"python": "cifar-10-batches-py", "binary": "cifar-10-batches-bin"}
_ARCHIVES = {"python": "cifar-10-python.tar.gz", "binary": "cifar-10-binary.tar.gz"}
_BATCHES = {"python": [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
            "binary": [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]}
PIXELS = 3 * 32 * 32


def _parse_python(blob, label):
    """One pickled batch -> x (N, 3, 32, 32) uint8, y (N,) int64."""
    batch = safe_loads(blob, label)
    if not isinstance(batch, dict):
        raise ValueError(f"{label}: expected a pickled dict, received {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    missing = {"data", "labels"} - batch.keys()
    if missing:
        raise ValueError(f"{label}: missing keys {sorted(missing)}; found {sorted(map(str, batch))}")
    x, y = batch["data"], batch["labels"]
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 2 and x.shape[1] == PIXELS):
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{label}: 'data' must be uint8 of shape (N, {PIXELS}), received {got}")
    return x.reshape(-1, 3, 32, 32), _labels(y, len(x), label)


def _parse_binary(blob, label):
    """One binary batch (records of 1 + 3072 bytes) -> x (N, 3, 32, 32) uint8, y (N,) int64."""
    if len(blob) % (PIXELS + 1):
        raise ValueError(f"{label}: size {len(blob)} is not a multiple of the record size {PIXELS + 1}")
    records = np.frombuffer(blob, np.uint8).reshape(-1, PIXELS + 1)
    return records[:, 1:].reshape(-1, 3, 32, 32), _labels(records[:, 0], len(records), label)


def _labels(y, n, label):
    try:
        y = np.asarray(y, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"{label}: labels are not integers ({err})") from None
    if y.shape != (n,) or (n and (y.min() < 0 or y.max() > 9)):
        raise ValueError(f"{label}: expected {n} labels in 0..9, received shape {y.shape}")
    return y


def _read_folder(folder, names):
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DatasetNotFoundError(f"{folder}: incomplete CIFAR-10 folder, missing {missing}")
    return {n: ((folder / n).read_bytes(), str(folder / n)) for n in names}


def _read_archive(path, kind, names):
    check_md5(path, CIFAR10_MD5[kind])
    wanted, blobs = {f"{_FOLDERS[kind]}/{n}": n for n in names}, {}
    with tarfile.open(path, "r:gz") as tar:  # one pass in archive order: no seeking in the gzip stream
        for member in tar:
            name = wanted.get(member.name.removeprefix("./"))
            if name is not None and member.isfile():
                blobs[name] = (tar.extractfile(member).read(), f"{path}:{member.name}")
    missing = [m for m, n in wanted.items() if n not in blobs]
    if missing:
        raise ValueError(f"{path}: archive lacks {missing}")
    return blobs


def _find(root):
    """The first CIFAR-10 copy under `root`: ("python"|"binary", path, is_archive) or None."""
    for kind in ("python", "binary"):
        if (root / _FOLDERS[kind]).is_dir():
            return kind, root / _FOLDERS[kind], False
    for kind in ("python", "binary"):
        if (root / _ARCHIVES[kind]).is_file():
            return kind, root / _ARCHIVES[kind], True
    return None


def _not_found(root, reason):
    looked = ", ".join([f"{f}/" for f in _FOLDERS.values()] + list(_ARCHIVES.values()))
    return (f"CIFAR-10 not found in {root} (looked for {looked}); {reason}. To provide it, download "
            f"{CIFAR10_URLS['python']} (md5 {CIFAR10_MD5['python']}) on a machine with internet and "
            f"copy the .tar.gz, or its extracted {_FOLDERS['python']}/ folder, into {root}; or pass "
            "root=... / set NPNET_DATA to the folder that holds it.")


def _fetch(root, progress):
    dest = root / _ARCHIVES["python"]
    try:
        download(CIFAR10_URLS["python"], dest, CIFAR10_MD5["python"], progress=progress)
    except ChecksumError:
        raise
    except OSError as err:
        raise DatasetNotFoundError(_not_found(root, f"download failed: {describe_failure(err)}")) from err
    return "python", dest, True


def load_cifar10(root=None, download=True, progress=True):
    """CIFAR-10 as `DatasetSplits`: x_train (50000, 3, 32, 32) uint8, y_train (50000,) int64,
    x_test (10000, 3, 32, 32), y_test (10000,); `.classes` holds the ten names.

    Looks in `root` (default `$NPNET_DATA` or `~/.cache/npnet`) for `cifar-10-batches-py/`,
    `cifar-10-batches-bin/`, `cifar-10-python.tar.gz`, `cifar-10-binary.tar.gz`, in that order;
    if none is there and `download` is true, fetches the python archive into `root`.
    """
    root = resolve_root(root)
    found = _find(root)
    if found is None:
        if not download:
            raise DatasetNotFoundError(_not_found(root, "download=False"))
        found = _fetch(root, progress)
    kind, path, is_archive = found
    names = _BATCHES[kind]
    blobs = _read_archive(path, kind, names) if is_archive else _read_folder(path, names)
    parse = _parse_python if kind == "python" else _parse_binary
    parts = [parse(*blobs[n]) for n in names]
    x_train = np.concatenate([x for x, _ in parts[:-1]])
    y_train = np.concatenate([y for _, y in parts[:-1]])
    x_test, y_test = parts[-1][0].copy(), parts[-1][1].copy()
    return DatasetSplits(x_train, y_train, x_test, y_test, "cifar10", CLASSES["cifar10"])
