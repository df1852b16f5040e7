"""CrossEntropyLoss on sequences, as PyTorch: (N, C, T) or (N, C, d1, d2) logits with (N, T) /
(N, d1, d2) labels, ignore_index for padding; gradient checks, equality with the flattened
(N*T, C) form, PyTorch comparison (skipped without torch) and clear errors."""
import numpy as np
import pytest

from npnet.gradcheck import check_loss
from npnet.losses import CrossEntropyLoss

RNG = np.random.default_rng(0)
N, C, T = 3, 5, 4


def sequence_batch(pad=-100):
    x = RNG.standard_normal((N, C, T)) * 2
    y = RNG.integers(0, C, (N, T))
    y[1, 2:] = pad  # a padded sequence
    return x, y


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kw", [{}, {"label_smoothing": 0.2}, {"weight": [1.0, 2.0, 0.5, 1.0, 3.0]}],
                         ids=["plain", "smoothing", "weight"])
def test_sequence_gradcheck(reduction, kw):
    x, y = sequence_batch()
    check_loss(CrossEntropyLoss(reduction=reduction, **kw), x, y)


def test_equals_the_flattened_form_and_ignores_padding():
    x, y = sequence_batch(pad=0)  # ignore_index names a real class here
    seq, flat = CrossEntropyLoss(ignore_index=0), CrossEntropyLoss(ignore_index=0)
    xf, yf = np.moveaxis(x, 1, -1).reshape(-1, C), y.reshape(-1)
    assert seq(x, y) == pytest.approx(flat(xf, yf), rel=1e-12)
    d_seq, d_flat = seq.backward(), flat.backward()
    assert d_seq.shape == x.shape and d_seq.flags.c_contiguous
    np.testing.assert_allclose(np.moveaxis(d_seq, 1, -1).reshape(-1, C), d_flat, rtol=1e-12)
    assert np.all(d_seq.transpose(0, 2, 1)[y == 0] == 0)  # ignored positions: zero gradient
    per = CrossEntropyLoss(reduction="none", ignore_index=0)(x, y)
    assert per.shape == (N, T) and np.all(per[y == 0] == 0)
    assert seq(x, y) == pytest.approx(per.sum() / (y != 0).sum())


def test_two_extra_dims_and_float32():
    x = RNG.standard_normal((2, C, 3, 2)).astype(np.float32)
    y = RNG.integers(0, C, (2, 3, 2))
    loss = CrossEntropyLoss()
    assert isinstance(loss(x, y), float)
    dx = loss.backward()
    assert dx.dtype == np.float32 and dx.shape == x.shape
    check_loss(CrossEntropyLoss(reduction="none"), x.astype(np.float64), y)


def test_sequence_label_errors():
    x, _ = sequence_batch()
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: expected outputs \(N, C\) with labels \(N,\), or "
                                         r"outputs \(N, C, d1, \.\.\.\).*\(3, 5, 4\) and labels \(3,\) \(expected \(3, 4\)\)"):
        CrossEntropyLoss()(x, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: expected labels in \[0, 5\) or ignore_index=-100, got 5"):
        CrossEntropyLoss()(x, np.full((3, 4), 5))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        CrossEntropyLoss()(np.zeros(5), np.zeros(5, np.int64))


@pytest.mark.parametrize("kw", [{}, {"label_smoothing": 0.1}, {"weight": [1.0, 2.0, 0.5, 1.0, 3.0]}],
                         ids=["plain", "smoothing", "weight"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_pytorch(kw, reduction):
    torch = pytest.importorskip("torch")
    x, y = sequence_batch()
    xt = torch.tensor(x, requires_grad=True)
    tkw = dict(kw, weight=torch.tensor(kw["weight"], dtype=torch.float64)) if "weight" in kw else kw
    lt = torch.nn.CrossEntropyLoss(reduction=reduction, **tkw)(xt, torch.tensor(y))
    g = RNG.standard_normal(tuple(lt.shape))
    lt.backward(torch.tensor(g))
    ours = CrossEntropyLoss(reduction=reduction, **kw)
    value = ours(x, y)
    np.testing.assert_allclose(value, lt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.backward(g if reduction == "none" else float(g)), xt.grad.numpy(),
                               rtol=1e-10, atol=1e-13)
