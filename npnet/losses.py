"""Losses with hand-written gradients: MSELoss, CrossEntropyLoss, FocalLoss, class_balanced_weights.

Conventions shared by every loss (written down once, here):

* ``loss = criterion(outputs, targets)`` then ``doutputs = criterion.backward()``; ``doutputs`` has
  the shape and dtype of ``outputs`` (float32 stays float32, float64 stays float64).
* ``reduction`` is PyTorch's: ``'mean'`` and ``'sum'`` return a Python float; ``'none'`` returns the
  unreduced array (documented per loss) and ``backward(grad_output)`` takes the upstream gradient of
  that array, cast to the dtype of ``outputs``. For 'mean'/'sum', ``backward(s)`` scales by the scalar s.
* Class labels are integer arrays of shape (N,) with values in [0, C). Bad input raises
  ``ValueError``/``TypeError`` naming the loss, what it expected and what it got.
"""
import numpy as np

from .functional import log_softmax

__all__ = ["MSELoss", "CrossEntropyLoss", "FocalLoss", "class_balanced_weights"]

_REDUCTIONS = ("mean", "sum", "none")


# -- input checks ----------------------------------------------------------------------------------
def _check_outputs(name, outputs, ndim=None, desc="(N, ...)"):
    if not isinstance(outputs, np.ndarray):
        raise TypeError(f"{name}: expected outputs as a numpy.ndarray, got {type(outputs).__name__}")
    if not np.issubdtype(outputs.dtype, np.floating):
        raise TypeError(f"{name}: expected floating-point outputs, got dtype {outputs.dtype}")
    if (ndim is not None and outputs.ndim != ndim) or outputs.ndim == 0 or outputs.shape[0] == 0:
        raise ValueError(f"{name}: expected outputs of shape {desc} with N >= 1, got {outputs.shape}")
    if not np.isfinite(outputs).all():
        raise ValueError(f"{name}: expected finite outputs, got {np.isnan(outputs).sum()} NaN and "
                         f"{np.isinf(outputs).sum()} inf values")
    return outputs


def _check_labels(name, targets, n, num_classes, ignore_index=None):
    """Integer labels of shape (n,) in [0, num_classes) (or equal to ``ignore_index``), returned as
    an int array."""
    targets = np.asarray(targets)
    if not np.issubdtype(targets.dtype, np.integer):
        raise TypeError(f"{name}: expected integer class labels, got dtype {targets.dtype}")
    if targets.shape != (n,):
        raise ValueError(f"{name}: expected labels of shape ({n},), got {targets.shape}")
    bad = (targets < 0) | (targets >= num_classes)
    if ignore_index is not None:
        bad &= targets != ignore_index
    if bad.any():
        also = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        raise ValueError(f"{name}: expected labels in [0, {num_classes}){also}, got {targets[bad][0]} "
                         f"({int(bad.sum())} out of range)")
    return targets


def _check_weight(name, weight):
    """A per-class weight vector (C,) of finite non-negative numbers, kept in float64."""
    if weight is None:
        return None
    w = np.asarray(weight)
    if w.ndim != 1 or not np.issubdtype(w.dtype, np.number) or not np.all(np.isfinite(w)) \
            or np.any(w < 0):
        raise ValueError(f"{name}: expected weight as a 1-D array of finite non-negative numbers, "
                         f"got {w!r}")
    return w.astype(np.float64)


def _class_weight(name, weight, num_classes, dtype):
    if weight is None:
        return np.ones(num_classes, dtype=dtype)
    if weight.shape != (num_classes,):
        raise ValueError(f"{name}: expected weight of shape ({num_classes},) for {num_classes} "
                         f"classes, got {weight.shape}")
    return weight.astype(dtype)


def _column(g):
    """A per-sample upstream gradient (N,) as a column (N, 1); a scalar stays a scalar."""
    return g[:, None] if g.ndim == 1 else g


# -- base ------------------------------------------------------------------------------------------
class _Loss:
    """Reduction and upstream-gradient handling shared by the losses.

    A subclass implements ``_forward(outputs, targets) -> (per, denom)``, the unreduced loss and
    the divisor of 'mean', storing in ``self.cache`` what ``_backward`` reads; and
    ``_backward(g) -> d sum(per * g) / d outputs`` where ``g`` is a 0-d array or has per's shape.
    """

    def __init__(self, reduction):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {_REDUCTIONS}, "
                             f"got {reduction!r}")
        self.reduction = reduction
        self.cache = None
        self._reduced = None  # (shape of per, dtype, denominator of 'mean')

    def __call__(self, outputs, targets):
        return self.forward(outputs, targets)

    def forward(self, outputs, targets):
        self._reduced = None  # a call that raises must not leave the previous batch to backward
        per, denom = self._forward(outputs, targets)
        self._reduced = (per.shape, per.dtype, denom)
        if self.reduction == "none":
            return per
        total = per.sum()
        with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 is PyTorch's NaN mean
            return float(total) if self.reduction == "sum" else float(total / denom)

    def backward(self, grad_output=None):
        """d loss / d outputs, same shape and dtype as the outputs of the last call."""
        name = type(self).__name__
        if self._reduced is None:
            raise RuntimeError(f"{name}: backward() called before the loss was computed")
        shape, dtype, denom = self._reduced
        if self.reduction == "none":
            if not isinstance(grad_output, np.ndarray) or grad_output.shape != shape:
                got = getattr(grad_output, "shape", type(grad_output).__name__)
                raise ValueError(f"{name}(reduction='none').backward: expected grad_output of "
                                 f"shape {shape}, got {got}")
            return self._backward(grad_output.astype(dtype, copy=False))
        scale = np.asarray(1 if grad_output is None else grad_output, dtype=dtype)
        if scale.ndim != 0:
            raise ValueError(f"{name}.backward: expected a scalar grad_output for "
                             f"reduction={self.reduction!r}, got shape {scale.shape}")
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._backward(scale / denom if self.reduction == "mean" else scale)

    def extra_repr(self):
        """The constructor arguments shown inside ``repr(criterion)``."""
        return f"reduction={self.reduction!r}"

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


# -- MSE -------------------------------------------------------------------------------------------
class MSELoss(_Loss):
    """Mean squared error ``(outputs - targets) ** 2``.

    'mean' averages over **all elements** (N * C for (N, C) outputs), as PyTorch does, not over
    samples; 'none' returns the element-wise array (the shape of outputs), also as PyTorch does.
    Targets: an array of the outputs' shape, or integer labels (N,) for (N, C) outputs, which are
    one-hot encoded (the linear and two-layer networks trained on one-hot targets).

    Args:
        reduction (str): ``'mean'`` (default, over all elements), ``'sum'`` or ``'none'``.

    Shape:
        outputs: (N, ...).
        targets: (N, ...), the shape of ``outputs``, or integer labels (N,) for (N, C) outputs.
        output: a float, or (N, ...) for ``'none'``.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> criterion = nn.MSELoss()
        >>> criterion(np.array([[1.0, 3.0]], np.float32), np.array([[0.0, 1.0]], np.float32))
        2.5
        >>> criterion.backward().tolist()  # 2 * (outputs - targets) / 2 elements
        [[1.0, 2.0]]
    """

    def __init__(self, reduction="mean"):
        super().__init__(reduction)

    def _forward(self, outputs, targets):
        _check_outputs("MSELoss", outputs)
        diff = outputs - self._targets(outputs, targets)  # (N, ...)
        self.cache = diff
        return diff * diff, np.asarray(outputs.size, dtype=outputs.dtype)

    def _targets(self, outputs, targets):
        targets = np.asarray(targets)
        if outputs.ndim == 2 and targets.ndim == 1 and np.issubdtype(targets.dtype, np.integer):
            labels = _check_labels("MSELoss", targets, *outputs.shape)
            onehot = np.zeros_like(outputs)
            onehot[np.arange(len(labels)), labels] = 1
            return onehot
        if outputs.ndim == 2 and targets.ndim == 1:
            raise TypeError(f"MSELoss: expected integer class labels of shape ({outputs.shape[0]},) "
                            f"or targets of shape {outputs.shape}, got dtype {targets.dtype}")
        if targets.shape != outputs.shape:
            raise ValueError(f"MSELoss: expected targets of shape {outputs.shape} (or integer labels "
                             f"of shape ({outputs.shape[0]},) for 2-D outputs), got {targets.shape}")
        if not np.issubdtype(targets.dtype, np.number) or not np.isfinite(targets).all():
            raise ValueError(f"MSELoss: expected finite numeric targets, got dtype {targets.dtype}")
        return targets.astype(outputs.dtype, copy=False)

    def _backward(self, g):
        return 2 * self.cache * g


# -- cross-entropy ---------------------------------------------------------------------------------
class CrossEntropyLoss(_Loss):
    """Softmax and negative log-likelihood fused: ``-log softmax(outputs)[y]``, PyTorch's semantics.

    With smoothing eps and class weights w (ones if None), sample i contributes
    ``(1 - eps) * w[y_i] * nll[i, y_i] + eps / C * sum_c w[c] * nll[i, c]`` (``nll = -log_softmax``);
    'none' returns these (N,) values, 'sum' their sum, and 'mean' divides the sum by
    ``sum_i w[y_i]`` (the weighted mean; N without weights), exactly as ``F.cross_entropy``.

    ``ignore_index`` (keyword, default -100 as PyTorch's): a sample with that label contributes 0 to the loss
    (smoothing term included), 0 to the 'mean' divisor and a zero row to the gradient. It may lie
    outside [0, C) or name a real class. A batch whose every label is ignored gives, as PyTorch,
    NaN for 'mean' (0 / 0), 0 for 'sum', and a zero gradient either way.

    Sequences (and any K extra dims), as PyTorch: outputs (N, C, d1, ..., dK) with targets
    (N, d1, ..., dK), e.g. a language model's (N, C, T) logits and (N, T) tokens. Every position
    is one sample: 'mean' divides by the summed weight of the non-ignored positions (padding
    tokens labelled ``ignore_index`` count for nothing), 'none' returns (N, d1, ..., dK). The
    flattened form (N*T, C) with (N*T,) labels gives the same value.

    Args:
        weight: a per-class weight array (C,) of non-negative numbers; None weighs every
            class 1.
        label_smoothing (float): eps in [0, 1], the share of the target spread evenly over the C
            classes (default 0.0).
        reduction (str): ``'mean'`` (default), ``'sum'`` or ``'none'``, as above.
        ignore_index (int): keyword only, default -100: the label whose samples count for nothing.

    Shape:
        outputs: (N, C) logits, or (N, C, d1, ..., dK).
        targets: (N,) integer labels in [0, C), or (N, d1, ..., dK).
        output: a float, or (N,) / (N, d1, ..., dK) for ``'none'``; ``backward()`` returns the
            gradient in the shape and dtype of ``outputs``.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> criterion = nn.CrossEntropyLoss()
        >>> logits = np.zeros((4, 10), np.float32)
        >>> round(criterion(logits, np.array([0, 1, 2, 3])), 4)  # log(10)
        2.3026
        >>> criterion.backward().shape  # d loss / d logits
        (4, 10)
    """

    def __init__(self, weight=None, label_smoothing=0.0, reduction="mean", *, ignore_index=-100):
        super().__init__(reduction)
        self.weight = _check_weight("CrossEntropyLoss", weight)
        if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, (int, np.integer)):
            raise TypeError(f"CrossEntropyLoss: ignore_index must be an integer, got {ignore_index!r}")
        self.ignore_index = int(ignore_index)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], "
                             f"got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def _forward(self, outputs, targets):
        name = "CrossEntropyLoss"
        _check_outputs(name, outputs, None, "(N, C) or (N, C, d1, ...)")
        if outputs.ndim < 2:
            raise ValueError(f"{name}: expected outputs of shape (N, C) or (N, C, d1, ...), got {outputs.shape}")
        if outputs.ndim == 2:
            per, denom = self._flat_forward(outputs, targets)
            self.cache += (None,)
            return per, denom
        # every position of (N, C, d1, ...) is one sample: classes last, then (M, C) rows
        targets = np.asarray(targets)
        expected = (outputs.shape[0],) + outputs.shape[2:]
        if targets.shape != expected:
            raise ValueError(f"{name}: expected outputs (N, C) with labels (N,), or outputs (N, C, d1, ...) "
                             f"with labels (N, d1, ...); got outputs {outputs.shape} and labels "
                             f"{targets.shape} (expected {expected})")
        flat = np.moveaxis(outputs, 1, -1).reshape(-1, outputs.shape[1])  # (M, C)
        per, denom = self._flat_forward(flat, targets.reshape(-1))
        self.cache += (outputs.shape,)
        return per.reshape(expected), denom

    def _backward(self, g):
        shape = self.cache[-1]
        if shape is None:
            return self._flat_backward(g)
        dx = self._flat_backward(g.reshape(-1) if g.ndim else g)  # (M, C)
        dx = dx.reshape((shape[0],) + shape[2:] + (shape[1],))  # (N, d1, ..., C)
        return np.ascontiguousarray(np.moveaxis(dx, -1, 1))  # (N, C, d1, ...)

    def _flat_forward(self, outputs, targets):
        name = "CrossEntropyLoss"
        n, c = outputs.shape
        y = _check_labels(name, targets, n, c, self.ignore_index)
        keep = y != self.ignore_index  # (N,)
        y = np.where(keep, y, 0)  # an ignored row reads class 0, then gets weight 0
        w = _class_weight(name, self.weight, c, outputs.dtype)  # (C,)
        logp = log_softmax(outputs)  # (N, C)
        wy = w[y] * keep  # (N,)
        eps = self.label_smoothing
        per = (1 - eps) * wy * -logp[np.arange(n), y]  # (N,)
        if eps:
            per += eps / c * (-logp @ w) * keep
        self.cache = (np.exp(logp), y, w, wy, keep)
        return per, wy.sum()

    def _flat_backward(self, g):
        p, y, w, wy, keep, _ = self.cache  # p (N, C) softmax
        n, c = p.shape
        eps = self.label_smoothing
        dp = p.copy()
        dp[np.arange(n), y] -= 1
        dx = ((1 - eps) * wy)[:, None] * dp  # (N, C)
        if eps:
            # d/dx of sum_c w_c * nll_c is (sum_c w_c) * p - w
            dx += eps / c * (w.sum() * p - w)
        # ignored rows are 0, even where g is inf (the mean over 0 kept samples scales by 1 / 0)
        return np.where(keep[:, None], dx * _column(g), 0)


# -- focal -----------------------------------------------------------------------------------------
def _softplus(x):
    """log(1 + exp(x)) without overflow."""
    return np.logaddexp(0, x)


class FocalLoss(_Loss):
    """Focal loss (Lin et al. 2017); the sigmoid kind is the class-balanced focal loss of Cui et al. 2019.

    ``kind='softmax'``: sample i contributes ``-w[y_i] * (1 - p_i) ** gamma * log p_i`` with
    ``p_i = softmax(outputs_i)[y_i]``. 'mean' divides the sum by ``sum_i w[y_i]`` (N without
    weights), PyTorch's weighted mean, so that gamma=0 is exactly ``CrossEntropyLoss(weight)``
    (Cui et al.'s softmax variant divides by N instead: a batch-dependent rescaling).

    ``kind='sigmoid'``: every class is a one-vs-all binary problem. With t = one_hot(y) and
    p_t = sigmoid(x) where t = 1, 1 - sigmoid(x) where t = 0, sample i contributes
    ``w[y_i] * sum_c (1 - p_t[i, c]) ** gamma * -log p_t[i, c]``: the weight of the sample's
    **true class** scales all C terms, as in Cui et al.'s code. 'mean' divides the sum over samples
    and classes by N (their code divides by sum(one_hot) = N), not by N * C as
    ``F.binary_cross_entropy_with_logits`` would. gamma=0 is binary cross-entropy with logits.
    It is computed with softplus: -log p_t = softplus(-s), (1 - p_t) ** gamma = exp(-gamma *
    softplus(s)) with s = x where t = 1, -x where t = 0, so no exp overflows.

    Args:
        gamma (float): the focusing exponent, >= 0; 0 is cross-entropy (default 2.0).
        weight: a per-class weight array (C,) of non-negative numbers, e.g.
            ``class_balanced_weights(counts, beta)``; None weighs every class 1.
        kind (str): ``'softmax'`` (default) or ``'sigmoid'``, as above.
        reduction (str): ``'mean'`` (default), ``'sum'`` or ``'none'`` (the (N,) per-sample values).

    Shape:
        outputs: (N, C) logits.
        targets: (N,) integer labels in [0, C).
        output: a float, or (N,) for ``'none'``.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> logits = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
        >>> y = np.arange(8) % 5
        >>> focal, ce = nn.FocalLoss(gamma=0.0), nn.CrossEntropyLoss()
        >>> bool(np.isclose(focal(logits, y), ce(logits, y)))  # gamma=0 is cross-entropy
        True
        >>> focal.backward().shape
        (8, 5)
    """

    def __init__(self, gamma=2.0, weight=None, kind="softmax", reduction="mean"):
        super().__init__(reduction)
        if not (isinstance(gamma, (int, float, np.number)) and np.isfinite(gamma) and gamma >= 0):
            raise ValueError(f"FocalLoss: gamma must be a finite number >= 0, got {gamma!r}")
        if kind not in ("softmax", "sigmoid"):
            raise ValueError(f"FocalLoss: kind must be 'softmax' or 'sigmoid', got {kind!r}")
        self.gamma, self.kind = float(gamma), kind
        self.weight = _check_weight("FocalLoss", weight)

    def extra_repr(self):
        return f"gamma={self.gamma}, kind={self.kind!r}, reduction={self.reduction!r}"

    def _forward(self, outputs, targets):
        _check_outputs("FocalLoss", outputs, 2, "(N, C)")
        n, c = outputs.shape
        y = _check_labels("FocalLoss", targets, n, c)
        wy = _class_weight("FocalLoss", self.weight, c, outputs.dtype)[y]  # (N,)
        if self.kind == "softmax":
            return self._softmax_forward(outputs, y, wy), wy.sum()
        return self._sigmoid_forward(outputs, y, wy), np.asarray(n, dtype=outputs.dtype)

    def _backward(self, g):
        if self.kind == "softmax":
            return self._softmax_backward(g)
        return self._sigmoid_backward(g)

    def _softmax_forward(self, x, y, wy):
        logp = log_softmax(x)  # (N, C)
        logpy = logp[np.arange(len(y)), y]  # (N,)
        q = -np.expm1(logpy)  # 1 - p_y, accurate when p_y is close to 1
        self.cache = (np.exp(logp), y, wy, logpy, q)
        return -wy * q ** self.gamma * logpy

    def _softmax_backward(self, g):
        p, y, wy, logpy, q = self.cache
        gamma = self.gamma
        # d/dz_j [-(1-p)^g log p] = [g p (1-p)^g log(p)/(1-p) - (1-p)^g] (delta_jy - p_j);
        # log(p)/(1-p) -> -1 as p -> 1, which avoids 0 * inf when gamma < 1.
        ratio = np.divide(logpy, q, out=np.full_like(q, -1), where=q > 0)
        qg = q ** gamma
        factor = wy * (gamma * np.exp(logpy) * qg * ratio - qg)  # (N,)
        onehot_minus_p = -p
        onehot_minus_p[np.arange(len(y)), y] += 1
        return factor[:, None] * onehot_minus_p * _column(g)

    def _sigmoid_forward(self, x, y, wy):
        rows = np.arange(len(y))
        s = -x  # (N, C) signed logit: x for the true class, -x for the others
        s[rows, y] = x[rows, y]
        sp_pos, sp_neg = _softplus(s), _softplus(-s)  # -log(1 - p_t), -log p_t
        self.cache = (y, wy, sp_pos, sp_neg)
        return wy * (np.exp(-self.gamma * sp_pos) * sp_neg).sum(axis=1)

    def _sigmoid_backward(self, g):
        y, wy, sp_pos, sp_neg = self.cache
        gamma = self.gamma
        q, pt = np.exp(-sp_pos), np.exp(-sp_neg)  # 1 - p_t, p_t
        # d/ds [q^g softplus(-s)] = -q^g (g p_t softplus(-s) + q); ds/dx = +1 (true), -1 (others)
        ds = -np.exp(-gamma * sp_pos) * (gamma * pt * sp_neg + q)
        dx = -ds
        rows = np.arange(len(y))
        dx[rows, y] = ds[rows, y]
        return dx * (wy[:, None] * _column(g))


def class_balanced_weights(counts, beta, dtype=np.float32):
    """Class-balanced weights of Cui et al. 2019: ``w_c = (1 - beta) / (1 - beta ** n_c)``.

    ``1 / w_c`` is the effective number of samples of class c; the weights are rescaled to sum to
    the number of classes C, so beta=0 gives uniform weights and beta -> 1 approaches 1/n_c.

    counts: (C,) positive integers (samples per class); beta in [0, 1). Returns (C,) in ``dtype``.
    """
    n = np.asarray(counts)
    if n.ndim != 1 or n.size == 0 or not np.issubdtype(n.dtype, np.integer) or np.any(n <= 0):
        raise ValueError(f"class_balanced_weights: expected counts as a non-empty 1-D array of "
                         f"positive integers, got {counts!r}")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"class_balanced_weights: beta must be in [0, 1), got {beta!r}")
    w = (1.0 - beta) / (1.0 - np.power(float(beta), n.astype(np.float64)))
    return (w * (n.size / w.sum())).astype(dtype)
