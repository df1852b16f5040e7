"""Classification metrics: accuracy, per-class and balanced accuracy, confusion matrix, top-k.

Every function takes ``y_true`` as integer labels (N,) and ``y_pred`` as integer labels (N,) or
scores / logits (N, C), which are reduced by argmax (the first maximum on ties). Vectorised with
``np.bincount``; no Python loop over samples.
"""
import numpy as np

__all__ = ["accuracy", "per_class_accuracy", "balanced_accuracy", "confusion_matrix",
           "top_k_accuracy"]


def _labels(name, what, y, n=None):
    y = np.asarray(y)
    if y.ndim != 1 or (n is not None and len(y) != n):
        want = f"({n},)" if n is not None else "(N,)"
        raise ValueError(f"{name}: expected {what} of shape {want}, got {y.shape}")
    if y.size == 0:
        return y.astype(np.int64)  # np.asarray([]) is float64; an empty list is not a dtype error
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name}: expected integer {what}, got dtype {y.dtype}")
    if y.min() < 0:
        raise ValueError(f"{name}: expected non-negative {what}, got {y.min()}")
    return y


def _true_and_pred(name, y_true, y_pred):
    """(y_true, predicted labels, C or None): logits (N, C) become their argmax."""
    y_true = _labels(name, "y_true", y_true)
    y_pred = np.asarray(y_pred)
    if y_true.size == 0:
        raise ValueError(f"{name}: expected at least one sample, got an empty y_true")
    if y_pred.ndim == 2:
        if y_pred.shape[0] != len(y_true) or y_pred.shape[1] == 0:
            raise ValueError(f"{name}: expected logits of shape ({len(y_true)}, C), got {y_pred.shape}")
        return y_true, y_pred.argmax(axis=1), y_pred.shape[1]
    return y_true, _labels(name, "y_pred labels (or (N, C) logits)", y_pred, len(y_true)), None


def accuracy(y_true, y_pred):
    """Fraction of samples whose predicted label is the true one (a float in [0, 1])."""
    y_true, y_pred, _ = _true_and_pred("accuracy", y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true, y_pred, num_classes=None):
    """Counts ``M[i, j]`` of samples of true class i predicted as j (rows = true class, as sklearn).

    num_classes: C; by default the logits' width, else 1 + the largest label seen.
    Returns an int64 array (C, C).
    """
    name = "confusion_matrix"
    y_true, y_pred, width = _true_and_pred(name, y_true, y_pred)
    largest = int(max(y_true.max(), y_pred.max())) + 1
    c = num_classes if num_classes is not None else (width or largest)
    if not isinstance(c, (int, np.integer)) or c < largest or c < 1 or (width and c != width):
        raise ValueError(f"{name}: num_classes must be an integer covering every label "
                         f"(>= {largest}{f', = {width} for the logits' if width else ''}), got {c!r}")
    counts = np.bincount(y_true.astype(np.int64) * c + y_pred, minlength=c * c)
    return counts.reshape(c, c).astype(np.int64)


def per_class_accuracy(y_true, y_pred, num_classes=None):
    """Recall of each class: correct predictions of class c / samples of class c.

    Returns a float64 array (C,); a class absent from y_true has NaN (its accuracy is undefined).
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def balanced_accuracy(y_true, y_pred, num_classes=None):
    """Mean of the per-class accuracies over the classes present in y_true (sklearn's definition)."""
    return float(np.nanmean(per_class_accuracy(y_true, y_pred, num_classes)))


def top_k_accuracy(y_true, scores, k=5):
    """Fraction of samples whose true class is among the k highest scores.

    scores: (N, C) logits or probabilities; 1 <= k <= C. Ties are ranked as ``argmax`` ranks them
    (lower class index first), so top_k_accuracy(y, s, k=1) == accuracy(y, s).
    """
    name = "top_k_accuracy"
    y_true = _labels(name, "y_true", y_true)
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != len(y_true) or len(y_true) == 0:
        raise ValueError(f"{name}: expected scores of shape ({len(y_true)}, C) with N >= 1, "
                         f"got {scores.shape}")
    n, c = scores.shape
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= c:
        raise ValueError(f"{name}: k must be an integer in [1, {c}], got {k!r}")
    if y_true.max() >= c:
        raise ValueError(f"{name}: expected labels in [0, {c}), got {y_true.max()}")
    true_score = scores[np.arange(n), y_true][:, None]  # (N, 1)
    ahead = (scores > true_score) | ((scores == true_score) & (np.arange(c) < y_true[:, None]))
    return float(np.mean(ahead.sum(axis=1) < k))
