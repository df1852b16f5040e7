"""Shared pieces of the loaders: class names, the returned 4-tuple, the data folder."""
import os
from pathlib import Path

#: dataset name -> its class names, in label order (the same tuple for Fashion-MNIST and its mini set).
CLASSES = {
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck"),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
}
CLASSES["fashion-mnist-mini"] = CLASSES["fashion-mnist"]


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is neither on disk nor downloadable; the message says where we looked."""


class DatasetSplits(tuple):
    """`(x_train, y_train, x_test, y_test)` that also carries `.name` and `.classes`.

    It unpacks like a plain 4-tuple. Images are `(N, C, H, W)` uint8, labels `(N,)` int64.
    """

    def __new__(cls, x_train, y_train, x_test, y_test, name, classes):
        self = super().__new__(cls, (x_train, y_train, x_test, y_test))
        self.name = name
        self.classes = tuple(classes)
        return self

    def __getnewargs__(self):  # lets copy and pickle rebuild it
        return (*self, self.name, self.classes)

    x_train = property(lambda self: self[0], doc="The training images (N, C, H, W) uint8.")
    y_train = property(lambda self: self[1], doc="The training labels (N,) int64.")
    x_test = property(lambda self: self[2], doc="The test images (N, C, H, W) uint8.")
    y_test = property(lambda self: self[3], doc="The test labels (N,) int64.")

    def __repr__(self):
        return (f"DatasetSplits({self.name!r}, train={self[0].shape}, test={self[2].shape}, "
                f"classes={len(self.classes)})")


def resolve_root(root=None):
    """The data folder: `root` if given, else `$NPNET_DATA`, else `~/.cache/npnet`."""
    if root is None:
        root = os.environ.get("NPNET_DATA") or Path.home() / ".cache" / "npnet"
    return Path(root).expanduser()
