"""Fashion-MNIST from its IDX files (gz or raw): in `root`, then Debian's folder, then downloaded.

IDX layout: two zero bytes, a type byte (0x08 = uint8), the number of dimensions, each dimension as a
big-endian uint32, then the values in C order. Checksums are of the *decompressed* bytes: Debian's
`dataset-fashion-mnist` recompressed the .gz files, but their contents equal upstream's.
Tests override `FASHION_MNIST_URLS`, `FASHION_MNIST_MD5` and `FASHION_MNIST_SYSTEM_DIRS`.
"""
import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from ._base import CLASSES, DatasetNotFoundError, DatasetSplits, resolve_root
from .download import ChecksumError, describe_failure, download

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
#: file name -> its official download URL (gzip-compressed IDX).
FASHION_MNIST_URLS = {name: f"{_BASE_URL}{name}.gz" for name in FILES}
#: file name -> the md5 of the decompressed IDX file (Debian recompressed the .gz files).
FASHION_MNIST_MD5 = {  # of the decompressed files (47040016, 60008, 7840016, 10008 bytes)
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
#: folders searched for the IDX files before the cache (Debian's ``dataset-fashion-mnist``).
FASHION_MNIST_SYSTEM_DIRS = ["/usr/share/datasets/fashion-mnist"]
SUBFOLDER = "fashion-mnist"  # under root; MNIST uses the same file names, so keep them apart


def parse_idx(data, label):
    """IDX bytes -> uint8 array of the shape in the header; errors name `label`."""
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{label}: not a uint8 IDX file (header {data[:4].hex()}, expected 000008..)")
    ndim = data[3]
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(data) != expected:
        raise ValueError(f"{label}: {len(data)} bytes, expected {expected} for shape {dims}")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def read_idx(path, md5=None):
    """Read an IDX file (gzipped if the name ends in .gz), checking the decompressed md5."""
    try:
        data = path.read_bytes()
        data = gzip.decompress(data) if path.suffix == ".gz" else data
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: cannot read ({err})") from err
    received = hashlib.md5(data).hexdigest()
    if md5 is not None and received != md5:
        raise ChecksumError(f"{path}: md5 of decompressed content is {received} ({len(data)} bytes), "
                            f"expected {md5}")
    return parse_idx(data, path)


def _folders(root):
    return [root / SUBFOLDER, root, *map(Path, FASHION_MNIST_SYSTEM_DIRS)]


def _find(name, root):
    for folder in _folders(root):
        for path in (folder / f"{name}.gz", folder / name):
            if path.is_file():
                return path
    return None


def _not_found(name, root, reason):
    looked = ", ".join(str(f) for f in _folders(root))
    return (f"Fashion-MNIST file {name}[.gz] not found in {looked}; {reason}. To provide it: "
            "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or download "
            f"{FASHION_MNIST_URLS[name]} elsewhere and copy it into {root / SUBFOLDER}, "
            "or pass root=... / set NPNET_DATA to the folder that holds the files.")


def _fetch(name, root, progress):
    dest = root / SUBFOLDER / f"{name}.gz"
    try:
        return download(FASHION_MNIST_URLS[name], dest, FASHION_MNIST_MD5[name],
                        gunzip_md5=True, progress=progress)
    except ChecksumError:
        raise
    except OSError as err:
        raise DatasetNotFoundError(_not_found(name, root, f"download failed: {describe_failure(err)}")
                                   ) from err


def load_fashion_mnist(root=None, download=True, progress=True):
    """Fashion-MNIST as `DatasetSplits`: x_train (60000, 1, 28, 28) uint8, y_train (60000,) int64,
    x_test (10000, 1, 28, 28), y_test (10000,); `.classes` holds the ten names.

    Each file is taken from `root/fashion-mnist/`, `root`, then `FASHION_MNIST_SYSTEM_DIRS`
    (gz before raw); if missing everywhere and `download` is true, it is fetched into
    `root/fashion-mnist/`. Every file's decompressed md5 is checked against `FASHION_MNIST_MD5`.
    """
    root = resolve_root(root)
    arrays = {}
    for name in FILES:
        path = _find(name, root)
        if path is None and not download:
            raise DatasetNotFoundError(_not_found(name, root, "download=False"))
        path = path or _fetch(name, root, progress)
        arrays[name] = read_idx(path, FASHION_MNIST_MD5.get(name))
    x_train, y_train, x_test, y_test = (arrays[n] for n in FILES)
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
        if x.ndim != 3 or y.shape != (len(x),):
            raise ValueError(f"Fashion-MNIST {split}: images {x.shape} and labels {y.shape} disagree; "
                             "expected (N, 28, 28) and (N,)")
    return DatasetSplits(x_train[:, None], y_train.astype(np.int64), x_test[:, None],
                         y_test.astype(np.int64), "fashion-mnist", CLASSES["fashion-mnist"])
