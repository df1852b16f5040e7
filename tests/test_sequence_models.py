"""The sequence entries of the zoo: shapes and dtypes forward and backward, a float64 gradient
check of one small instance each, build_model's errors by input kind, summary, generate."""
import numpy as np
import pytest

from npnet import gradcheck, losses
from npnet.models import build_model, input_kind, summary

CLASSIFIERS = ["rnn-rows", "lstm-rows", "gru-rows", "transformer-rows"]
SMALL = {"rnn-rows": dict(hidden_size=3, num_layers=2, bidirectional=True),
         "lstm-rows": dict(hidden_size=3, bidirectional=True),
         "gru-rows": dict(hidden_size=3, num_layers=2),
         "transformer-rows": dict(d_model=4, nhead=2, num_layers=1, dim_feedforward=4, dropout=0.0),
         "char-lstm": dict(embedding_dim=3, hidden_size=3, num_layers=2),
         "char-transformer": dict(d_model=4, nhead=2, num_layers=1, dim_feedforward=4, dropout=0.0,
                                  max_len=16)}


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_shapes_and_float32_backward(name):
    model = build_model(name, (7, 6), 3, rng=0)
    x = np.random.default_rng(0).standard_normal((5, 7, 6)).astype(np.float32)
    out = model(x)
    assert out.shape == (5, 3) and out.dtype == np.float32
    dx = model.backward(np.ones_like(out))
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert all(p.grad.dtype == np.float32 and np.any(p.grad) for p in model.parameters())
    assert model(x[:, :4]).shape == (5, 3)  # any number of steps


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_gradient_check(name):
    model = build_model(name, (3, 2), 2, rng=1, **SMALL[name])
    x = np.random.default_rng(1).standard_normal((2, 3, 2))
    errors = gradcheck.check_module(model, x)
    assert max(errors.values()) < 1e-6


@pytest.mark.parametrize("name", ["char-lstm", "char-transformer"])
def test_language_model_shapes_and_gradient_check(name):
    model = build_model(name, (6,), 5, rng=2, **SMALL[name])
    ids = np.random.default_rng(2).integers(0, 5, (2, 6))
    out = model(ids)
    assert out.shape == (2, 5, 6) and out.dtype == np.float32  # (N, V, T)
    assert model.backward(np.ones_like(out)) is None
    model.astype(np.float64)
    dout = np.random.default_rng(3).standard_normal((2, 5, 6))
    model.zero_grad()
    model(ids)
    model.backward(dout.copy())
    for pname, p in model.named_parameters():
        def f():
            return float(np.sum(model(ids) * dout))
        numeric = gradcheck.numerical_gradient(f, p.data)
        assert gradcheck.relative_error(p.grad, numeric) < 1e-6, pname


def test_causal_model_sees_no_future():
    model = build_model("char-transformer", (6,), 5, rng=0, **SMALL["char-transformer"])
    model.eval()
    ids = np.array([[1, 2, 3, 4, 0, 1]])
    changed = ids.copy()
    changed[0, 4:] = [3, 3]
    a, b = model(ids), model(changed)
    np.testing.assert_allclose(a[:, :, :4], b[:, :, :4], rtol=1e-5, atol=1e-6)
    assert not np.allclose(a[:, :, 4:], b[:, :, 4:])


def test_language_model_trains_with_cross_entropy_over_n_c_t():
    model = build_model("char-lstm", (6,), 5, rng=0, **SMALL["char-lstm"])
    ids = np.random.default_rng(0).integers(0, 5, (3, 7))
    loss = losses.CrossEntropyLoss()
    value = loss(model(ids[:, :-1]), ids[:, 1:])
    model.backward(loss.backward())
    assert np.isfinite(value) and abs(value - np.log(5)) < 1.0


@pytest.mark.parametrize("name", ["char-lstm", "char-transformer"])
def test_generate_is_seeded_and_keeps_the_prompt(name):
    model = build_model(name, (6,), 5, rng=0, **SMALL[name])
    prompt = np.array([[1, 2, 3]])
    a = model.generate(prompt, 20, temperature=1.0, rng=7)
    assert a.shape == (1, 23) and a.dtype == np.int64 and (a[:, :3] == prompt).all()
    assert (a == model.generate(prompt, 20, temperature=1.0, rng=7)).all()
    greedy = model.generate(prompt, 5, temperature=0)
    assert (greedy == model.generate(prompt, 5, temperature=0, rng=1)).all()
    assert model.training  # the mode is restored
    with pytest.raises(ValueError, match="prompt of >= 1 id"):
        model.generate(prompt[:, :0], 3)


def test_build_model_errors_name_the_kind_and_the_expected_shape():
    assert [input_kind(n) for n in ("cnn-small", "lstm-rows", "char-lstm")] == ["image", "sequence", "tokens"]
    with pytest.raises(ValueError, match=r"sequence model takes in_shape \(T, F\)"):
        build_model("lstm-rows", (1, 28, 28))
    with pytest.raises(ValueError, match=r"a language model takes in_shape \(T,\)"):
        build_model("char-lstm", (28, 28))
    with pytest.raises(ValueError, match=r"image model takes in_shape \(C, H, W\)"):
        build_model("cnn-small", (28, 28))
    with pytest.raises(ValueError, match="exceed max_len 16"):
        build_model("char-transformer", (32,), 5, max_len=16)
    with pytest.raises(TypeError, match="unknown option"):
        build_model("gru-rows", (28, 28), hidden=3)
    model = build_model("char-lstm", (8,), 5, rng=0)
    with pytest.raises(ValueError, match=r"Embedding.*token ids must be in \[0, 5\)"):
        model(np.array([[1, 7]]))
    with pytest.raises(ValueError, match=r"CharLSTM: expected token ids of shape \(N, T\)"):
        model(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"LSTM.*expected input of shape \(N, L, input_size\)"):
        build_model("lstm-rows", (28, 28), rng=0)(np.zeros((2, 28, 27), np.float32))


def test_summary_of_sequence_models():
    text = summary(build_model("lstm-rows", (28, 28), rng=0), (28, 28))
    assert "rnn      LSTM" in text and "(28, 128)" in text and "Total parameters: 82,186" in text
    text = summary(build_model("char-transformer", (64,), 99, rng=0), (64,))
    assert "embedding  Embedding" in text and "(99, 64)" in text and "422,243" in text
