"""Rebuild npnet/data/fashion_mnist_mini.npz, the embedded Fashion-MNIST subset, from the full files.

    python scripts/build_fashion_mnist_mini.py [--root DIR] [--out PATH]

Selection: the first 1,000 training and the first 100 test images of every class, kept in the order
of the official files (no randomness). Arrays: x_train (10000, 1, 28, 28) uint8, y_train (10000,)
uint8, x_test (1000, 1, 28, 28), y_test (1000,), and train_index / test_index (uint16), the
positions of the chosen images in the official files.

Size: deflate at level 9 gives 4,816,487 bytes; 1,000 + 200 per class would be 5.23 MB, over the
5 MB budget.

Determinism: np.savez_compressed stamps each zip entry with the current time, so this script writes
the zip itself, with fixed entry order, timestamps (1980-01-01), permissions and compression level.
With the same zlib the output is byte-identical; another zlib build (e.g. zlib-ng) may deflate
differently, in which case the arrays still match (the script checks) but the sha256 does not.
"""
import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from npnet.data import load_fashion_mnist  # noqa: E402
from npnet.data.mini import (MINI_PATH, MINI_SHA256, MINI_TEST_PER_CLASS,  # noqa: E402
                             MINI_TRAIN_PER_CLASS)


def first_per_class(y, k):
    """Indices of the first `k` samples of every class, in file order: (C*k,)."""
    return np.sort(np.concatenate([np.flatnonzero(y == c)[:k] for c in range(int(y.max()) + 1)]))


def npz_bytes(arrays):
    """A deterministic compressed .npz of `arrays` (dict name -> array), as bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in arrays.items():
            npy = io.BytesIO()
            np.lib.format.write_array(npy, np.ascontiguousarray(array), version=(1, 0),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type, info.create_system, info.external_attr = zipfile.ZIP_DEFLATED, 3, 0o644 << 16
            archive.writestr(info, npy.getvalue(), compresslevel=9)
    return buffer.getvalue()


def build(root=None):
    full = load_fashion_mnist(root, download=True)
    train, test = (first_per_class(full.y_train, MINI_TRAIN_PER_CLASS),
                   first_per_class(full.y_test, MINI_TEST_PER_CLASS))
    arrays = {"x_train": full.x_train[train], "y_train": full.y_train[train].astype(np.uint8),
              "x_test": full.x_test[test], "y_test": full.y_test[test].astype(np.uint8),
              "train_index": train.astype(np.uint16), "test_index": test.astype(np.uint16)}
    return arrays, npz_bytes(arrays)


def same_arrays(arrays, path):
    with np.load(path, allow_pickle=False) as old:
        same_names = sorted(old.files) == sorted(arrays)
        return same_names and all(np.array_equal(old[k], v) for k, v in arrays.items())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="folder with the full IDX files (default: the loader's search)")
    parser.add_argument("--out", type=Path, default=MINI_PATH)
    args = parser.parse_args()
    arrays, data = build(args.root)
    digest = hashlib.sha256(data).hexdigest()
    if digest == MINI_SHA256:
        print("sha256 matches MINI_SHA256 in npnet/data/mini.py")
    else:
        shipped = ("arrays match" if same_arrays(arrays, MINI_PATH) else "arrays DIFFER from") \
            if MINI_PATH.is_file() else "no"
        print(f"sha256 differs from MINI_SHA256 ({MINI_SHA256}); {shipped} the shipped {MINI_PATH.name}; "
              "update MINI_SHA256 if the new file is meant to replace it")
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(args.out)
    print(f"wrote {args.out}: {len(data)} bytes, sha256 {digest}")


if __name__ == "__main__":
    main()
