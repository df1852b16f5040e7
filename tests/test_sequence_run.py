"""configs/sequence/ through npnet train in a tiny setting (a few steps each), npnet sample on a
language model's run, load_run, and the errors: a prompt outside the vocabulary, a model on the
wrong kind of data, predict / sample on the other kind of run."""
import glob
import json
import os

import numpy as np
import pytest

from npnet.run.cli import main
from npnet.run.config import load_config, validate_config, ConfigError
from npnet.run.experiment import clip_before_step
from npnet.run.trained import load_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "sequence", "*.yaml")))
TINY = {  # a few steps of a small instance of each config's model
    "rnn_rows": ["network.options.hidden_size=8"], "lstm_rows": ["network.options.hidden_size=8"],
    "gru_rows": ["network.options.hidden_size=8"],
    "transformer_rows": ["network.options.d_model=8", "network.options.nhead=2",
                         "network.options.dim_feedforward=8"],
    "char_lstm": ["network.options.hidden_size=16", "network.options.embedding_dim=8"],
    "char_transformer": ["network.options.d_model=16", "network.options.nhead=2",
                         "network.options.dim_feedforward=16"],
}


def _sets(name):
    text = name.startswith("char_")
    data = (["data.dataset=python-source-mini", "data.seq_len=16", "data.max_train=32", "data.max_test=8"]
            if text else ["data.dataset=fashion-mnist-mini", "data.max_train=64", "data.max_test=20"])
    return [a for s in data + TINY[name] + ["train.batch_size=16"] for a in ("--set", s)]


def _train(tmp_path, name):
    config = os.path.join(ROOT, "configs", "sequence", f"{name}.yaml")
    assert main(["train", config, "--out", str(tmp_path), "--epochs", "1", "--quiet", *_sets(name)]) == 0
    (run,) = glob.glob(os.path.join(tmp_path, f"{name}-*"))
    return run


def test_there_is_a_config_per_sequence_model():
    models = {load_config(p)["network"]["model"] for p in CONFIGS}
    assert models == {"rnn-rows", "lstm-rows", "gru-rows", "transformer-rows", "char-lstm", "char-transformer"}
    assert {os.path.splitext(os.path.basename(p))[0] for p in CONFIGS} == set(TINY)
    assert all(load_config(p)["train"]["clip_grad_norm"] == 1.0 for p in CONFIGS)


@pytest.mark.parametrize("name", ["lstm_rows", "transformer_rows", "gru_rows", "rnn_rows"])
def test_row_classifiers_train_and_report(tmp_path, name):
    run = _train(tmp_path, name)
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["speed"]["tune"] is False
    assert os.path.exists(os.path.join(run, "predictions.png"))
    trained = load_run(run)
    probs = trained.predict(np.zeros((3, 28, 28), np.uint8))  # images, read row by row inside
    assert probs.shape == (3, 10) and probs.dtype == np.float32


@pytest.mark.parametrize("name", ["char_lstm", "char_transformer"])
def test_language_models_train_report_and_sample(tmp_path, name, capsys):
    run = _train(tmp_path, name)
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert metrics["test_perplexity"] == pytest.approx(np.exp(metrics["test_loss"]))
    assert 1 < metrics["test_perplexity"] < 2 * metrics["vocab_size"] and metrics["weights"] == "best.npz"
    assert len(json.load(open(os.path.join(run, "vocab.json")))["chars"]) == metrics["vocab_size"] == 99
    capsys.readouterr()
    args = ["sample", run, "--prompt", "def f(x):", "--length", "40", "--seed", "3"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("def f(x):") and len(out) == len("def f(x):") + 40 + 1
    assert main(args) == 0 and capsys.readouterr().out == out  # seeded
    assert load_run(run).sample("def f(x):", 40, 0.8, 3) + "\n" == out


def test_sample_errors(tmp_path, capsys):
    run = _train(tmp_path, "char_lstm")
    capsys.readouterr()
    assert main(["sample", run, "--prompt", "naïve ☃"]) == 2
    err = capsys.readouterr().err
    assert "the prompt has 2 character(s) outside the vocabulary of 99: 'ï' (U+00EF), '☃' (U+2603)" in err
    assert main(["sample", run, "--prompt", "x", "--temperature", "-1"]) == 2
    assert "temperature >= 0" in capsys.readouterr().err
    assert main(["predict", run, "x.npy"]) == 2
    assert "a language model: use npnet sample" in capsys.readouterr().err
    os.remove(os.path.join(run, "vocab.json"))
    assert main(["sample", run]) == 2
    assert "no vocab.json beside it" in capsys.readouterr().err


def test_a_model_on_the_wrong_kind_of_data_is_refused_before_anything_runs():
    with pytest.raises(ConfigError, match="char-lstm is a language model"):
        validate_config({"network": {"model": "char-lstm"}, "data": {"dataset": "fashion-mnist-mini"}})
    with pytest.raises(ConfigError, match="python-source-mini is a text corpus"):
        validate_config({"network": {"model": "cnn-small"}, "data": {"dataset": "python-source-mini"}})
    with pytest.raises(ConfigError, match="loss_type CE"):
        validate_config({"network": {"model": "char-lstm"}, "data": {"dataset": "python-source-mini"},
                         "loss": {"loss_type": "MSE"}})
    with pytest.raises(ConfigError, match="clip_grad_norm': expected a value > 0"):
        validate_config({"network": {"model": "lstm-rows"}, "train": {"clip_grad_norm": 0}})


def test_windows_longer_than_the_text_say_so(tmp_path, capsys):
    config = os.path.join(ROOT, "configs", "sequence", "char_lstm.yaml")
    assert main(["train", config, "--out", str(tmp_path), "--set", "data.dataset=python-source-mini",
                 "--set", "data.seq_len=100000", "--quiet"]) == 2
    assert "cannot cut python-source-mini into windows of data.seq_len 100000" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_clip_before_step_clips_the_joint_norm():
    from npnet import nn, optim
    layer = nn.Linear(3, 2, rng=0)
    opt = clip_before_step(optim.SGD(layer.parameters(), lr=1.0), 0.5)
    for p in layer.parameters():
        p.grad[...] = 3.0
    before = [p.data.copy() for p in layer.parameters()]
    opt.step()
    step = np.concatenate([(b - p.data).ravel() for b, p in zip(before, layer.parameters())])
    assert np.linalg.norm(step) == pytest.approx(0.5, rel=1e-5)


def test_a_language_model_run_resumes_as_it_would_have_run(tmp_path):
    config = os.path.join(ROOT, "configs", "sequence", "char_lstm.yaml")
    args = [config, "--quiet", *_sets("char_lstm"), "--set", "train.schedule=none"]  # cosine: fixed epochs
    assert main(["train", *args, "--out", str(tmp_path / "a"), "--epochs", "2"]) == 0
    assert main(["train", *args, "--out", str(tmp_path / "b"), "--epochs", "1"]) == 0
    (part,) = glob.glob(os.path.join(tmp_path, "b", "*"))
    assert main(["train", "--resume", os.path.join(part, "last.npz"), "--epochs", "2", "--quiet"]) == 0
    (whole,) = glob.glob(os.path.join(tmp_path, "a", "*"))
    a, b = (json.load(open(os.path.join(r, "metrics.json"))) for r in (whole, part))
    assert a["test_loss"] == b["test_loss"] and a["sample"] == b["sample"]
