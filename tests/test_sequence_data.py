"""Sequence data: images read row by row, the character corpora and their vocabulary, token
windows in the DataLoader (shapes, dtypes, the seed, resuming mid-epoch), and the errors."""
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npnet.data import (DataLoader, Normalize, Rows, Vocabulary, load_char_corpus,
                        load_fashion_mnist_mini, load_python_source, load_python_source_mini,
                        token_windows)
from npnet.data import text

ROOT = Path(__file__).resolve().parents[1]


def test_rows_reads_fashion_mnist_row_by_row():
    x = load_fashion_mnist_mini().x_train[:8]  # (8, 1, 28, 28) uint8
    seq = Rows()(Normalize.for_dataset("fashion-mnist")(x))
    assert seq.shape == (8, 28, 28) and seq.dtype == np.float32
    np.testing.assert_array_equal(Rows()(x)[3, 5], x[3, 0, 5])  # step 5 = row 5
    rgb = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert Rows()(rgb).shape == (2, 4, 15) and Rows.output_shape((3, 4, 5)) == (4, 15)
    np.testing.assert_array_equal(Rows()(rgb)[1, 2], rgb[1, :, 2].reshape(-1))  # channels side by side
    with pytest.raises(ValueError, match=r"Rows: expected a batch of shape \(N, C, H, W\)"):
        Rows()(np.zeros((2, 28, 28)))


def test_embedded_corpus_is_the_named_source_with_its_licence():
    corpus = load_python_source_mini()
    assert corpus.name == "python-source-mini" and len(corpus.text) > 250_000
    assert corpus.text.startswith("# ===== Lib/bisect.py =====\n")
    assert corpus.ids.dtype == np.int64 and corpus.vocab.decode(corpus.ids[:100]) == corpus.text[:100]
    licence = text.MINI_LICENSE.read_text()
    assert "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2" in licence and text.MINI_PATH.stat().st_size < 300_000
    assert load_char_corpus("python-source-mini").text == corpus.text


def test_build_script_reproduces_the_embedded_corpus(tmp_path):
    stdlib = Path(text.sysconfig.get_paths()["stdlib"])
    if hashlib.sha256((stdlib / "bisect.py").read_bytes()).hexdigest() != \
            "e5b2ff166f48a06e70ae831d8c9b47283fcd0c254306eee12d3dae9c55e11526":
        pytest.skip("not CPython 3.11.7's standard library")
    out = tmp_path / "python_source_mini.txt"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_python_source_mini.py"),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == text.MINI_PATH.read_bytes()
    assert (tmp_path / "LICENSE-python.txt").read_bytes() == text.MINI_LICENSE.read_bytes()


def test_full_corpus_is_the_running_pythons_standard_library(tmp_path):
    (tmp_path / "b.py").write_text("x = 1")
    (tmp_path / "a.py").write_text("é\n", encoding="utf-8")
    corpus = load_python_source(tmp_path)
    assert corpus.text == "# ===== Lib/a.py =====\né\n\n# ===== Lib/b.py =====\nx = 1\n\n"
    assert len(load_python_source().text) > 1_000_000
    with pytest.raises(FileNotFoundError, match="no \\*.py files"):
        load_python_source(tmp_path / "nothing")
    (tmp_path / "c.py").write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="c.py: cannot read it as UTF-8"):
        load_python_source(tmp_path)


def test_corrupt_embedded_corpus_names_the_file(tmp_path):
    bad = tmp_path / "corpus.txt"
    bad.write_text("not the corpus")
    with pytest.raises(ValueError, match=f"{bad}: sha256 is"):
        load_python_source_mini(bad)
    with pytest.raises(FileNotFoundError, match="is missing"):
        load_python_source_mini(tmp_path / "gone.txt")
    with pytest.raises(ValueError, match="unknown text corpus"):
        load_char_corpus("shakespeare")


def test_vocabulary_round_trip_and_errors(tmp_path):
    vocab = Vocabulary.from_text("hello world")
    assert vocab.chars == tuple(" dehlorw") and len(vocab) == 8
    ids = vocab.encode("low")
    assert ids.dtype == np.int64 and vocab.decode(ids) == "low"
    path = vocab.save(tmp_path / "vocab.json")
    assert Vocabulary.load(path).chars == vocab.chars
    with pytest.raises(ValueError, match=r"the prompt has 2 character\(s\) outside the vocabulary of 8: "
                                         r"'!' \(U\+0021\), 'é' \(U\+00E9\)"):
        vocab.encode("hé!", "the prompt")
    with pytest.raises(ValueError, match=r"ids must be in \[0, 8\)"):
        vocab.decode([9])
    with pytest.raises(ValueError, match="distinct single characters"):
        Vocabulary(["a", "a"])
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json: not a vocabulary"):
        Vocabulary.load(tmp_path / "bad.json")


def test_split_is_consecutive_train_val_test():
    corpus = load_python_source_mini()
    train, val, test = corpus.split(0.1)
    assert len(train) + len(val) + len(test) == len(corpus.ids)
    assert abs(len(val) - len(test)) <= 1 and abs(len(train) / len(corpus.ids) - 0.8) < 1e-3
    np.testing.assert_array_equal(np.concatenate([train, val, test]), corpus.ids)
    with pytest.raises(ValueError, match="sum < 1"):
        corpus.split(0.5, 0.5)


def test_token_windows_are_next_character_pairs():
    ids = np.arange(20)
    x, y = token_windows(ids, 6)
    assert x.shape == y.shape == (3, 6) and x.dtype == y.dtype == np.int64
    np.testing.assert_array_equal(x[1], np.arange(6, 12))
    np.testing.assert_array_equal(y, x + 1)
    assert token_windows(ids, 6, stride=2)[0].shape == (7, 6)
    assert not x.flags.writeable  # views of the text
    with pytest.raises(ValueError, match=r"20 ids make no window of seq_len \+ 1 = 21"):
        token_windows(ids, 20)
    with pytest.raises(ValueError, match="1-D array of integer ids"):
        token_windows(np.zeros(20), 4)
    with pytest.raises(ValueError, match="ints >= 1"):
        token_windows(ids, 0)


def _batches(loader, n=None):
    out = []
    for i, (xb, yb) in enumerate(loader):
        out.append((xb.copy(), yb.copy()))
        if n is not None and i + 1 == n:
            break
    return out


def test_window_loader_is_seeded_and_resumes_mid_epoch():
    x, y = token_windows(load_python_source_mini().ids[:20_000], 32)
    straight = DataLoader(x, y, 16, seed=3)
    first, second = _batches(straight), _batches(straight)  # two epochs
    again = DataLoader(x, y, 16, seed=3)
    assert all((a[0] == b[0]).all() for a, b in zip(first, _batches(again)))
    assert not all((a[0] == b[0]).all() for a, b in zip(first, second))  # a new order each epoch
    xb, yb = first[0]
    assert xb.shape == (16, 32) and yb.dtype == np.int64 and (xb[:, 1:] == yb[:, :-1]).all()
    interrupted = DataLoader(x, y, 16, seed=3)
    _batches(interrupted, 5)
    state = interrupted.state_dict()
    resumed = DataLoader(x, y, 16, seed=0)
    resumed.load_state_dict(state)
    rest = _batches(resumed) + _batches(resumed)
    for (a, b), (c, d) in zip(rest, first[5:] + second):
        assert (a == c).all() and (b == d).all()
