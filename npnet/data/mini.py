"""Fashion-MNIST mini: a balanced subset shipped inside the package, for examples and tests offline.

The first 1,000 training and the first 100 test images of every class, in their original order
(built by scripts/build_fashion_mnist_mini.py from the official files). Fashion-MNIST is
Copyright (c) 2017 Zalando SE, MIT licence: see LICENSE-fashion-mnist.txt next to this file.
"""
import hashlib
import io
from pathlib import Path

import numpy as np

from ._base import CLASSES, DatasetSplits

MINI_PATH = Path(__file__).with_name("fashion_mnist_mini.npz")
MINI_SHA256 = "c84953774bb068b6b7b12141a25cbb17e813491f400bc4ffbf224397275073cf"
MINI_TRAIN_PER_CLASS, MINI_TEST_PER_CLASS = 1000, 100


def load_fashion_mnist_mini(path=None):
    """The embedded subset as `DatasetSplits`: x_train (10000, 1, 28, 28) uint8, y_train (10000,)
    int64, x_test (1000, 1, 28, 28), y_test (1000,). The file's sha256 is checked first."""
    path = MINI_PATH if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: embedded Fashion-MNIST mini set is missing; reinstall npnet "
                                "or rebuild it with scripts/build_fashion_mnist_mini.py")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != MINI_SHA256:
        raise ValueError(f"{path}: sha256 is {digest}, expected {MINI_SHA256}")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = [npz[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    x_train, y_train, x_test, y_test = arrays
    return DatasetSplits(x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64),
                         "fashion-mnist-mini", CLASSES["fashion-mnist-mini"])
