"""Long-tailed subsets (Cui et al., "Class-Balanced Loss Based on Effective Number of Samples",
CVPR 2019) and a train/validation split."""
import numpy as np


def long_tail_counts(n_max, num_classes, imbalance_factor=100, profile="exp"):
    """Images kept per class, `(C,)` int64; class 0 is the head, class C-1 the tail.

    exp:  class c keeps ``int(n_max * (1/imbalance_factor) ** (c/(C-1)))``.
    step: classes c < C/2 keep n_max, the rest ``int(n_max / imbalance_factor)``
    (for odd C the middle class counts as head).
    """
    if imbalance_factor < 1:
        raise ValueError(f"imbalance_factor must be >= 1, received {imbalance_factor}")
    C = num_classes
    if profile == "exp":
        counts = [int(n_max * (1 / imbalance_factor) ** (c / (C - 1) if C > 1 else 0)) for c in range(C)]
    elif profile == "step":
        counts = [n_max if c < C / 2 else int(n_max / imbalance_factor) for c in range(C)]
    else:
        raise ValueError(f"profile must be 'exp' or 'step', received {profile!r}")
    return np.array(counts, dtype=np.int64)


def _class_indices(y):
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise ValueError(f"labels must be a 1-D array of non-negative integers, received "
                         f"{y.dtype} {y.shape}")
    return [np.flatnonzero(y == c) for c in range(int(y.max()) + 1 if y.size else 0)]


def make_long_tailed(x, y, imbalance_factor=100, profile="exp", seed=0, n_max=None):
    """Subsample a balanced set into a long-tailed one.

    x: (N, ...), y: (N,) labels 0..C-1. n_max defaults to the size of the smallest class (the per-class
    size of a balanced set). Returns (x_lt, y_lt, counts): the kept samples in their original order,
    and counts (C,) int64 from `long_tail_counts`. Which samples a class keeps is a random draw that
    depends only on `seed`.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    per_class = _class_indices(y)
    sizes = [len(i) for i in per_class]
    if not sizes or min(sizes) == 0:
        raise ValueError(f"every class 0..C-1 needs samples; per-class sizes are {sizes}")
    n_max = min(sizes) if n_max is None else int(n_max)
    counts = long_tail_counts(n_max, len(per_class), imbalance_factor, profile)
    short = [c for c, (k, n) in enumerate(zip(counts, sizes)) if k > n]
    if short:
        raise ValueError(f"classes {short} have fewer samples ({[sizes[c] for c in short]}) than "
                         f"required ({[int(counts[c]) for c in short]})")
    rng = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([rng.permutation(i)[:k] for i, k in zip(per_class, counts)]))
    return x[keep], y[keep], counts


def train_val_split(x, y, val_fraction=0.1, stratify=True, seed=0):
    """Split off a validation set: returns (x_train, y_train, x_val, y_val), each in original order.

    stratify=True takes round(val_fraction * n_c) samples of every class c, so both parts keep the
    class proportions; otherwise round(val_fraction * N) samples drawn at random.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), received {val_fraction}")
    rng = np.random.default_rng(seed)
    groups = _class_indices(y) if stratify else [np.arange(len(y))]
    val = [rng.permutation(i)[:int(round(val_fraction * len(i)))] for i in groups]
    is_val = np.zeros(len(y), dtype=bool)
    is_val[np.concatenate(val + [np.zeros(0, np.int64)])] = True
    return x[~is_val], y[~is_val], x[is_val], y[is_val]
