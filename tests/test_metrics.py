"""Metrics: hand examples, loop references on drawn data, logits input, bad shapes."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from npnet.metrics import (accuracy, balanced_accuracy, confusion_matrix, per_class_accuracy,
                           top_k_accuracy)

Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 2])
Y_PRED = np.array([0, 0, 0, 1, 1, 2, 2])


def test_hand_example():
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(5 / 7)
    np.testing.assert_array_equal(confusion_matrix(Y_TRUE, Y_PRED),
                                  [[3, 1, 0], [0, 1, 1], [0, 0, 1]])
    np.testing.assert_allclose(per_class_accuracy(Y_TRUE, Y_PRED), [0.75, 0.5, 1.0])
    assert balanced_accuracy(Y_TRUE, Y_PRED) == pytest.approx(0.75)


def test_logits_are_reduced_by_argmax():
    logits = np.eye(3)[Y_PRED] * 5.0 - 1.0
    assert accuracy(Y_TRUE, logits) == accuracy(Y_TRUE, Y_PRED)
    np.testing.assert_array_equal(confusion_matrix(Y_TRUE, logits), confusion_matrix(Y_TRUE, Y_PRED))


def test_absent_class_and_num_classes():
    cm = confusion_matrix([0, 1], [0, 0], num_classes=4)
    assert cm.shape == (4, 4) and cm.dtype == np.int64 and cm.sum() == 2
    pca = per_class_accuracy([0, 1], [0, 0], num_classes=4)
    assert pca[0] == 1.0 and pca[1] == 0.0 and np.isnan(pca[2:]).all()
    assert balanced_accuracy([0, 1], [0, 0], num_classes=4) == 0.5


def test_top_k():
    scores = np.array([[0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.9, 0.05, 0.05]])
    y = np.array([2, 1, 1])
    assert top_k_accuracy(y, scores, k=1) == 0.0
    # row 1: class 0 wins its tie with the true class 1; row 2: class 1 wins its tie with class 2
    assert top_k_accuracy(y, scores, k=2) == pytest.approx(2 / 3)
    assert top_k_accuracy(y, scores, k=3) == 1.0


@given(n=st.integers(1, 40), c=st.integers(1, 6), seed=st.integers(0, 10_000), k=st.integers(1, 6))
def test_against_loop_references(n, c, seed, k):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    scores = rng.integers(0, 3, (n, c)).astype(np.float64)  # many ties on purpose
    pred = scores.argmax(axis=1)
    ref = np.zeros((c, c), dtype=np.int64)
    for t, p in zip(y, pred):
        ref[t, p] += 1
    np.testing.assert_array_equal(confusion_matrix(y, scores), ref)
    assert accuracy(y, scores) == pytest.approx(np.trace(ref) / n)
    k = min(k, c)
    order = np.argsort(-scores, axis=1, kind="stable")  # ties: lower index first, like argmax
    expected = np.mean([y[i] in order[i, :k] for i in range(n)])
    assert top_k_accuracy(y, scores, k) == pytest.approx(expected)
    if k == 1:
        assert top_k_accuracy(y, scores, 1) == accuracy(y, scores)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: accuracy([0, 1, 2], [0, 1]), ValueError, r"accuracy.*\(3,\).*\(2,\)"),
    (lambda: accuracy([[0, 1]], [0, 1]), ValueError, r"accuracy.*y_true.*\(1, 2\)"),
    (lambda: accuracy([0, 1], np.zeros((3, 2))), ValueError, r"accuracy.*\(2, C\).*\(3, 2\)"),
    (lambda: accuracy([0.0, 1.0], [0, 1]), TypeError, "accuracy.*integer"),
    (lambda: accuracy([], []), ValueError, "accuracy.*empty"),
    (lambda: confusion_matrix([0, 3], [0, 1], num_classes=3), ValueError, "confusion_matrix.*>= 4"),
    (lambda: confusion_matrix([0, -1], [0, 1]), ValueError, "confusion_matrix.*non-negative"),
    (lambda: confusion_matrix([0, 1], np.zeros((2, 3)), num_classes=4), ValueError, "= 3"),
    (lambda: top_k_accuracy([0, 1], np.zeros((2, 3)), k=4), ValueError, r"top_k.*\[1, 3\].*4"),
    (lambda: top_k_accuracy([0, 1], np.array([0, 1])), ValueError, r"top_k.*\(2, C\)"),
    (lambda: top_k_accuracy([0, 3], np.zeros((2, 3)), k=1), ValueError, r"top_k.*\[0, 3\)"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
