"""`load_dataset(name, **options)`: one entry point for every loader."""
from .cifar import load_cifar10
from .fashion_mnist import load_fashion_mnist
from .mini import load_fashion_mnist_mini

LOADERS = {"cifar10": load_cifar10,
           "fashion-mnist": load_fashion_mnist,
           "fashion-mnist-mini": load_fashion_mnist_mini}
_FILE_OPTIONS = ("root", "download", "progress")  # meaningless for the embedded set


def load_dataset(name, **options):
    """Call the loader registered under `name`, e.g. `load_dataset("cifar10", root="data")`.

    `root`, `download` and `progress` are accepted for every name (the embedded mini set ignores
    them), so one config can switch between datasets.
    """
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(LOADERS)}")
    if name == "fashion-mnist-mini":
        options = {k: v for k, v in options.items() if k not in _FILE_OPTIONS}
    return LOADERS[name](**options)
