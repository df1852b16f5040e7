"""Long-tailed subsets (Cui et al. 2019) and train/validation splits."""
import numpy as np
import pytest

from npnet.data import load_fashion_mnist_mini, long_tail_counts, make_long_tailed, train_val_split


def balanced(per_class=5000, classes=10):
    """y = 0,0,...,1,1,... and x (N, 2) = (label, position) so alignment can be checked."""
    y = np.repeat(np.arange(classes), per_class)
    x = np.stack([y, np.arange(len(y))], axis=1)
    return x, y


def test_exp_counts_follow_the_formula():
    x, y = balanced()
    _, y_lt, counts = make_long_tailed(x, y, imbalance_factor=100, profile="exp", seed=0)
    formula = [int(5000 * (1 / 100) ** (c / 9)) for c in range(10)]
    assert counts.tolist() == formula
    assert np.bincount(y_lt).tolist() == formula
    # by hand: 5000 * 0.01 ** (c/9) = 5000, 2997.4, 1796.9, 1077.2, 645.8, 387.1, 232.1, 139.1, 83.4, 50
    assert formula == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert counts.dtype == np.int64 and len(y_lt) == 12406


def test_step_counts():
    assert long_tail_counts(5000, 10, 100, "step").tolist() == [5000] * 5 + [50] * 5
    assert long_tail_counts(100, 3, 10, "step").tolist() == [100, 100, 10]  # odd C: middle is head
    assert long_tail_counts(1000, 10, 1, "exp").tolist() == [1000] * 10


def test_subset_is_aligned_ordered_and_deterministic():
    x, y = balanced(200, 5)
    x_lt, y_lt, _ = make_long_tailed(x, y, 10, seed=3)
    assert (x_lt[:, 0] == y_lt).all()  # rows stay with their labels
    assert (np.diff(x_lt[:, 1]) > 0).all()  # original order, no duplicates
    again = make_long_tailed(x, y, 10, seed=3)
    np.testing.assert_array_equal(again[0], x_lt)
    other = make_long_tailed(x, y, 10, seed=4)
    assert other[2].tolist() == again[2].tolist() and not np.array_equal(other[0], x_lt)


def test_long_tail_rejects_bad_arguments():
    x, y = balanced(10, 3)
    with pytest.raises(ValueError, match="profile must be 'exp' or 'step', received 'linear'"):
        make_long_tailed(x, y, profile="linear")
    with pytest.raises(ValueError, match="imbalance_factor must be >= 1, received 0.5"):
        make_long_tailed(x, y, imbalance_factor=0.5)
    message = r"classes \[0\] have fewer samples \(\[10\]\) than required \(\[20\]\)"
    with pytest.raises(ValueError, match=message):
        make_long_tailed(x, y, n_max=20)
    with pytest.raises(ValueError, match="x has 30 samples but y has 29"):
        make_long_tailed(x, y[:-1])


def test_long_tail_of_the_mini_set():
    x, y, _, _ = load_fashion_mnist_mini()
    x_lt, y_lt, counts = make_long_tailed(x, y, imbalance_factor=100)
    assert counts.tolist() == [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
    assert x_lt.shape == (counts.sum(), 1, 28, 28) and x_lt.dtype == np.uint8


def test_stratified_split_keeps_class_proportions():
    x, y = balanced(50, 4)
    x_tr, y_tr, x_val, y_val = train_val_split(x, y, val_fraction=0.2, seed=1)
    assert np.bincount(y_val).tolist() == [10] * 4 and np.bincount(y_tr).tolist() == [40] * 4
    ids = np.concatenate([x_tr[:, 1], x_val[:, 1]])
    assert sorted(ids.tolist()) == list(range(200))  # disjoint and complete
    assert (x_tr[:, 0] == y_tr).all() and (np.diff(x_val[:, 1]) > 0).all()
    np.testing.assert_array_equal(train_val_split(x, y, 0.2, seed=1)[2], x_val)


def test_unstratified_split_and_errors():
    x, y = balanced(50, 4)
    x_tr, _, x_val, _ = train_val_split(x, y, val_fraction=0.1, stratify=False, seed=0)
    assert len(x_val) == 20 and len(x_tr) == 180
    assert len(train_val_split(x, y, 0.0)[2]) == 0
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), received 1.5"):
        train_val_split(x, y, 1.5)
