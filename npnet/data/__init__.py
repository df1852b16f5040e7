"""Datasets (CIFAR-10, Fashion-MNIST and its embedded mini subset), long-tail builder, batch
transforms and the DataLoader; sequences (images row by row, text corpora of characters and
their token windows)."""
from ._base import CLASSES, DatasetNotFoundError, DatasetSplits, resolve_root
from .cifar import CIFAR10_MD5, CIFAR10_URLS, load_cifar10
from .datasets import load_dataset
from .download import ChecksumError
from .fashion_mnist import (FASHION_MNIST_MD5, FASHION_MNIST_SYSTEM_DIRS, FASHION_MNIST_URLS,
                            load_fashion_mnist)
from .loader import DataLoader
from .longtail import long_tail_counts, make_long_tailed, train_val_split
from .mini import load_fashion_mnist_mini
from .sequences import Rows, token_windows
from .text import (CharCorpus, Vocabulary, load_char_corpus, load_python_source,
                   load_python_source_mini)
from .transforms import (CIFAR10_MEAN, CIFAR10_STD, FASHION_MNIST_MEAN, FASHION_MNIST_STD, Compose,
                         Flatten, Normalize, RandomCrop, RandomHorizontalFlip, ToFloat, Transform)

__all__ = [
    "CLASSES", "DatasetNotFoundError", "DatasetSplits", "ChecksumError", "resolve_root",
    "load_cifar10", "load_fashion_mnist", "load_fashion_mnist_mini", "load_dataset",
    "CIFAR10_URLS", "CIFAR10_MD5", "FASHION_MNIST_URLS", "FASHION_MNIST_MD5",
    "FASHION_MNIST_SYSTEM_DIRS",
    "make_long_tailed", "long_tail_counts", "train_val_split",
    "Transform", "ToFloat", "Normalize", "RandomCrop", "RandomHorizontalFlip", "Flatten", "Compose",
    "CIFAR10_MEAN", "CIFAR10_STD", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD",
    "DataLoader",
    "Rows", "token_windows", "Vocabulary", "CharCorpus", "load_char_corpus", "load_python_source",
    "load_python_source_mini",
]
