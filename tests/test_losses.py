"""Losses: gradient checks, exact reductions to CE / BCE, numerical stability, dtypes, bad input."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npnet.gradcheck import check_loss
from npnet.losses import CrossEntropyLoss, FocalLoss, MSELoss, class_balanced_weights

REDUCTIONS = ["mean", "sum", "none"]
WEIGHT = np.array([0.5, 2.0, 1.0, 0.25])


def batch(n=5, c=4, seed=0, scale=2.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal((n, c))).astype(dtype), rng.integers(0, c, n)


def loss_configs():
    yield "mse-labels", lambda r: MSELoss(r)
    yield "ce", lambda r: CrossEntropyLoss(reduction=r)
    yield "ce-w-ls", lambda r: CrossEntropyLoss(weight=WEIGHT, label_smoothing=0.3, reduction=r)
    for kind in ("softmax", "sigmoid"):
        for gamma in (0.0, 0.5, 1.0, 2.0, 3.5):
            for w in (None, WEIGHT):
                tag = f"focal-{kind}-g{gamma}-{'w' if w is not None else 'nw'}"
                yield tag, lambda r, g=gamma, k=kind, w=w: FocalLoss(g, weight=w, kind=k, reduction=r)


CONFIGS = dict(loss_configs())


# -- gradient checks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_gradcheck_every_loss(name, reduction):
    x, y = batch()
    check_loss(CONFIGS[name](reduction), x, y, tol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_mse_array_targets(reduction):
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 2, 4))
    check_loss(MSELoss(reduction), x, t, tol=1e-6)


@settings(max_examples=15)
@given(n=st.integers(1, 5), c=st.integers(2, 5), gamma=st.floats(0, 4), seed=st.integers(0, 99),
       kind=st.sampled_from(["softmax", "sigmoid"]), reduction=st.sampled_from(REDUCTIONS),
       weighted=st.booleans(), smoothing=st.floats(0, 1))
def test_gradcheck_drawn_shapes(n, c, gamma, seed, kind, reduction, weighted, smoothing):
    x, y = batch(n, c, seed)
    w = np.random.default_rng(seed).uniform(0.1, 3.0, c) if weighted else None
    check_loss(FocalLoss(gamma, weight=w, kind=kind, reduction=reduction), x, y, tol=1e-6)
    check_loss(CrossEntropyLoss(w, smoothing, reduction), x, y, tol=1e-6)


def test_gradcheck_confident_softmax_focal_small_gamma():
    # p_y close to 1, gamma < 1: (1 - p)^(gamma - 1) blows up unless written as log(p) / (1 - p)
    x = np.array([[12.0, 0.0, -1.0], [0.0, 9.0, 1.0]])
    check_loss(FocalLoss(0.5), x, np.array([0, 1]), tol=1e-6)


# -- gamma = 0 is CE / BCE ------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, WEIGHT])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_focal_gamma0_is_cross_entropy_exactly(reduction, weight, dtype):
    x, y = batch(7, 4, seed=3, dtype=dtype)
    focal, ce = FocalLoss(0.0, weight, reduction=reduction), CrossEntropyLoss(weight, reduction=reduction)
    lf, lc = focal(x, y), ce(x, y)
    g = None if reduction != "none" else np.linspace(-1, 1, 7).astype(dtype)
    np.testing.assert_array_equal(lf, lc)
    np.testing.assert_array_equal(focal.backward(g), ce.backward(g))


def bce_with_logits(x, t):
    return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


@pytest.mark.parametrize("weight", [None, WEIGHT])
def test_sigmoid_focal_gamma0_is_binary_cross_entropy(weight):
    x, y = batch(6, 4, seed=4)
    t = np.eye(4)[y]
    wy = np.ones(6) if weight is None else weight[y]
    per = (wy[:, None] * bce_with_logits(x, t)).sum(axis=1)  # Cui et al.: sum over classes
    np.testing.assert_allclose(FocalLoss(0, weight, "sigmoid", "none")(x, y), per, rtol=1e-13)
    np.testing.assert_allclose(FocalLoss(0, weight, "sigmoid")(x, y), per.sum() / 6, rtol=1e-13)
    dx = FocalLoss(0, weight, "sigmoid", "sum")
    dx(x, y)
    sig = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(dx.backward(), wy[:, None] * (sig - t), rtol=1e-12, atol=1e-15)


def test_focal_values_by_hand():
    x, y = np.array([[np.log(3.0), 0.0]]), np.array([0])  # softmax p_y = 3/4
    assert FocalLoss(2.0)(x, y) == pytest.approx(-(0.25 ** 2) * np.log(0.75), rel=1e-14)
    x1 = np.array([[0.0, np.log(3.0)]])  # sigmoid: p_t = 1/2 (true class 0), p_t = 1/4 (class 1)
    expected = 0.5 ** 2 * np.log(2.0) + 0.75 ** 2 * -np.log(0.25)
    assert FocalLoss(2.0, kind="sigmoid")(x1, y) == pytest.approx(expected, rel=1e-14)
    w = np.array([3.0, 1.0])
    assert FocalLoss(2.0, w, kind="sigmoid")(x1, y) == pytest.approx(3 * expected, rel=1e-14)


def test_focal_down_weights_easy_examples():
    x, y = np.array([[4.0, 0.0], [0.0, 0.5]]), np.array([0, 0])  # easy, hard
    per_ce, per_fl = CrossEntropyLoss(reduction="none")(x, y), FocalLoss(2.0, reduction="none")(x, y)
    assert per_fl[0] / per_ce[0] < per_fl[1] / per_ce[1]


# -- reductions -----------------------------------------------------------------------------------------
def test_mse_mean_is_over_all_elements_and_labels_are_one_hot():
    x, y = batch(5, 3)
    onehot = np.eye(3)[y]
    assert MSELoss()(x, y) == pytest.approx(np.mean((x - onehot) ** 2), rel=1e-14)
    assert MSELoss()(x, onehot) == MSELoss()(x, y)
    np.testing.assert_allclose(MSELoss("none")(x, y), (x - onehot) ** 2)
    loss = MSELoss()
    loss(x, y)
    np.testing.assert_allclose(loss.backward(), 2 * (x - onehot) / x.size, rtol=1e-14)


def test_weighted_mean_divides_by_target_weights():
    x, y = batch(6, 4, seed=5)
    per = CrossEntropyLoss(WEIGHT, reduction="none")(x, y)
    assert CrossEntropyLoss(WEIGHT)(x, y) == pytest.approx(per.sum() / WEIGHT[y].sum(), rel=1e-14)
    assert CrossEntropyLoss(WEIGHT, reduction="sum")(x, y) == pytest.approx(per.sum(), rel=1e-14)


def test_label_smoothing_by_hand():
    x, y, eps = np.array([[1.0, 2.0, 0.5]]), np.array([1]), 0.3
    logp = x - np.log(np.exp(x).sum())
    target = (1 - eps) * np.eye(3)[y] + eps / 3
    assert CrossEntropyLoss(label_smoothing=eps)(x, y) == pytest.approx(-(target * logp).sum())


def test_scalar_backward_scales():
    x, y = batch()
    loss = CrossEntropyLoss()
    loss(x, y)
    np.testing.assert_allclose(loss.backward(np.float64(3.0)), 3 * loss.backward(), rtol=1e-15)


# -- stability and dtypes -------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: CrossEntropyLoss(WEIGHT, 0.1), lambda: FocalLoss(2.0),
                                  lambda: FocalLoss(0.5, WEIGHT), lambda: FocalLoss(2.0, kind="sigmoid"),
                                  lambda: FocalLoss(0.0, kind="sigmoid")])
def test_huge_logits_stay_finite_in_float32(make):
    x = np.array([[1e4, -1e4, 0, 5e3], [-1e4, 1e4, 1e4, 0]], dtype=np.float32)
    y = np.array([1, 2])
    loss = make()
    value = loss(x, y)
    grad = loss.backward()
    assert np.isfinite(value) and value > 1e3
    assert grad.dtype == np.float32 and np.isfinite(grad).all()


def test_huge_logits_exact_value():
    x = np.array([[1e4, 0.0]], dtype=np.float32)
    assert CrossEntropyLoss()(x, np.array([1])) == 1e4
    assert CrossEntropyLoss()(x, np.array([0])) == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["mse-labels", "ce-w-ls", "focal-softmax-g2.0-w", "focal-sigmoid-g0.5-w"])
def test_dtype_is_kept(name, reduction, dtype):
    x, y = batch(dtype=dtype)
    loss = CONFIGS[name](reduction)
    value = loss(x, y)
    if reduction == "none":
        assert value.dtype == dtype
        grad = loss.backward(np.ones(value.shape))  # a float64 upstream is cast, not upcasting
    else:
        assert isinstance(value, float)
        grad = loss.backward()
    assert grad.dtype == dtype and grad.shape == x.shape


# -- class-balanced weights -----------------------------------------------------------------------------
def test_class_balanced_weights_by_hand():
    # beta = 1/2, counts (1, 2, 3): (1 - b) / (1 - b^n) = 1, 2/3, 4/7; sum 47/21; times 3 / sum
    w = class_balanced_weights([1, 2, 3], 0.5)
    assert w.dtype == np.float32
    np.testing.assert_allclose(w, np.array([63, 42, 36]) / 47, rtol=1e-6)
    w64 = class_balanced_weights(np.array([1, 2, 3]), 0.5, dtype=np.float64)
    np.testing.assert_allclose(w64, np.array([63, 42, 36]) / 47, rtol=1e-15)


def test_class_balanced_weights_limits():
    np.testing.assert_array_equal(class_balanced_weights([5, 100, 1], 0.0), np.ones(3, np.float32))
    w = class_balanced_weights([1, 2, 4], 1 - 1e-9, dtype=np.float64)  # -> proportional to 1 / n
    np.testing.assert_allclose(w / w[0], [1, 0.5, 0.25], rtol=1e-6)
    assert class_balanced_weights([7, 3], 0.99).sum() == pytest.approx(2.0)


@pytest.mark.parametrize("counts, beta", [([0, 3], 0.9), ([1.5, 2], 0.9), ([[1, 2]], 0.9),
                                          ([1, 2], 1.0), ([1, 2], -0.1)])
def test_class_balanced_weights_bad_input(counts, beta):
    with pytest.raises(ValueError, match="class_balanced_weights"):
        class_balanced_weights(counts, beta)


# -- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [CrossEntropyLoss, FocalLoss, lambda: FocalLoss(kind="sigmoid"),
                                  MSELoss])
def test_bad_input_messages(make):
    name = type(make()).__name__
    x, y = batch()
    with pytest.raises(ValueError, match=rf"{name}.*\[0, 4\).*got 4"):
        make()(x, np.array([0, 1, 4, 2, 3]))
    with pytest.raises(ValueError, match=rf"{name}.*-1"):
        make()(x, np.array([0, 1, -1, 2, 3]))
    with pytest.raises(ValueError, match=rf"{name}.*\(5,\).*\(4,\)"):
        make()(x, y[:4])
    with pytest.raises(TypeError, match=rf"{name}.*integer.*float64"):
        make()(x, y.astype(np.float64))
    bad = x.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=rf"{name}.*finite.*1 NaN"):
        make()(bad, y)
    with pytest.raises(TypeError, match=rf"{name}.*floating.*int64"):
        make()(y[:, None].repeat(4, axis=1), y)


def test_bad_shapes_and_arguments():
    x, y = batch()
    with pytest.raises(ValueError, match=r"CrossEntropyLoss.*\(N, C\).*\(5, 4, 1\)"):
        CrossEntropyLoss()(x[..., None], y)
    with pytest.raises(ValueError, match=r"FocalLoss.*weight of shape \(4,\).*\(3,\)"):
        FocalLoss(weight=[1.0, 2.0, 3.0])(x, y)
    with pytest.raises(ValueError, match=r"MSELoss.*\(5, 4\).*\(5, 3\)"):
        MSELoss()(x, x[:, :3])
    with pytest.raises(ValueError, match="reduction"):
        CrossEntropyLoss(reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1)
    with pytest.raises(ValueError, match="kind"):
        FocalLoss(kind="softmx")
    with pytest.raises(ValueError, match="weight"):
        CrossEntropyLoss(weight=[1.0, -2.0])


def test_backward_misuse():
    with pytest.raises(RuntimeError, match="MSELoss.*before"):
        MSELoss().backward()
    x, y = batch()
    loss = CrossEntropyLoss(reduction="none")
    loss(x, y)
    with pytest.raises(ValueError, match=r"reduction='none'.*\(5,\).*NoneType"):
        loss.backward()
    loss = CrossEntropyLoss()
    loss(x, y)
    with pytest.raises(ValueError, match="scalar grad_output"):
        loss.backward(np.ones(5))


# -- ignore_index -----------------------------------------------------------------------------------
IGNORED = np.array([2, -100, 0, -100, 3])  # two ignored rows out of five


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight, smoothing", [(None, 0.0), (WEIGHT, 0.0), (None, 0.3), (WEIGHT, 0.3)])
def test_gradcheck_cross_entropy_ignore_index(reduction, weight, smoothing):
    x, _ = batch()
    check_loss(CrossEntropyLoss(weight, smoothing, reduction), x, IGNORED, tol=1e-6)
    class_2_ignored = np.where(IGNORED < 0, 2, IGNORED)  # ignore_index naming a real class
    check_loss(CrossEntropyLoss(weight, smoothing, reduction, ignore_index=2), x, class_2_ignored, tol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight, smoothing", [(None, 0.0), (WEIGHT, 0.3)])
def test_ignored_rows_are_as_if_absent(reduction, weight, smoothing):
    """The loss over a batch with ignored rows is the loss over the kept rows alone; ignored rows
    get a zero gradient."""
    x, _ = batch()
    keep = IGNORED != -100
    full, kept = (CrossEntropyLoss(weight, smoothing, reduction) for _ in range(2))
    value, value_kept = full(x, IGNORED), kept(x[keep], IGNORED[keep])
    upstream = np.arange(1.0, 6.0)
    grad = full.backward(upstream) if reduction == "none" else full.backward()
    grad_kept = kept.backward(upstream[keep]) if reduction == "none" else kept.backward()
    if reduction == "none":
        np.testing.assert_array_equal(value[~keep], 0)
        value = value[keep]
    np.testing.assert_allclose(value, value_kept, rtol=1e-14)
    np.testing.assert_array_equal(grad[~keep], 0)
    np.testing.assert_allclose(grad[keep], grad_kept, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_ignored_batch_is_nan_mean_and_zero_gradient(dtype):
    """As PyTorch: 'mean' over no kept sample is 0 / 0 = NaN, 'sum' is 0; the gradient is 0."""
    x, _ = batch(dtype=dtype)
    labels = np.full(5, 7)
    for reduction, expected in (("mean", np.nan), ("sum", 0.0)):
        loss = CrossEntropyLoss(WEIGHT, 0.2, reduction, ignore_index=7)
        with np.errstate(all="raise"):  # and no floating-point warning on the way
            value, grad = loss(x, labels), loss.backward()
        np.testing.assert_equal(value, expected)
        assert grad.dtype == dtype and not grad.any()


def test_ignore_index_bad_input():
    x, _ = batch()
    with pytest.raises(ValueError, match=r"CrossEntropyLoss.*\[0, 4\) or ignore_index=-100, got -1"):
        CrossEntropyLoss()(x, np.array([0, 1, -1, -100, 3]))
    with pytest.raises(TypeError, match="ignore_index must be an integer"):
        CrossEntropyLoss(ignore_index=1.5)


def test_losses_are_also_under_nn():
    from npnet import losses, nn
    assert (nn.CrossEntropyLoss, nn.MSELoss, nn.FocalLoss) == (losses.CrossEntropyLoss, losses.MSELoss,
                                                               losses.FocalLoss)
