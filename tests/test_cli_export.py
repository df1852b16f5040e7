"""``npnet export RUN --format onnx``: the model of a run folder (or of one checkpoint) as an ONNX
file that ONNX Runtime runs to the run's own logits, with the run's preprocessing and classes in
its metadata; a bad path or option is exit status 2 and one message."""
import glob
import json
import os
import sys

import numpy as np
import pytest

from npnet.data import load_dataset
from npnet.run.cli import main
from npnet.run.trained import load_run

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime runs the exported files (pip install onnxruntime)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {  # a few steps of a small model of each input kind (as tests/test_sequence_run.py trains them)
    "cnn-bn": ["network.options.hidden=16"],
    "gru-rows": ["network.options.hidden_size=8"],
    "char-transformer": ["network.options.d_model=16",
                         "network.options.nhead=2", "network.options.dim_feedforward=16"],
}


CONFIGS = {"cnn-bn": "cnn_bn.yaml", "gru-rows": "sequence/gru_rows.yaml",
           "char-transformer": "sequence/char_transformer.yaml"}


def _train(tmp, name):
    text = name.startswith("char-")
    config = os.path.join(ROOT, "configs", CONFIGS[name])
    data = (["data.dataset=python-source-mini", "data.seq_len=16", "data.max_train=32", "data.max_test=8"]
            if text else ["data.dataset=fashion-mnist-mini", "data.max_train=48", "data.max_test=16"])
    sets = [a for s in data + TINY[name] + ["train.batch_size=16"] for a in ("--set", s)]
    out = str(tmp / name)
    assert main(["train", config, "--out", out, "--epochs", "1", "--quiet", "--name", "r", *sets]) == 0
    (run,) = glob.glob(os.path.join(out, "r-*"))
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    return {name: _train(tmp, name) for name in TINY}


def _onnx(path, x):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


@pytest.mark.parametrize("name", ["cnn-bn", "gru-rows"])
def test_an_image_run_exports_to_its_own_logits(runs, name, capsys):
    run_folder = runs[name]
    assert main(["export", run_folder, "--format", "onnx"]) == 0
    path = os.path.join(run_folder, "model.onnx")
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {path}"
    run = load_run(run_folder)
    images = load_dataset("fashion-mnist-mini").x_test[:5]  # uint8 (5, 1, 28, 28)
    got = _onnx(path, run.transform(images))  # the file takes what the run's preprocessing gives
    np.testing.assert_allclose(got, run.logits(images), rtol=1e-4, atol=1e-5)
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(meta["npnet.classes"]) == list(run.classes) and meta["npnet.model"] == name
    assert "mean (0.286,) and std (0.353,)" in meta["npnet.input"]
    assert ("row by row" in meta["npnet.input"]) == (name == "gru-rows")


def test_a_checkpoint_a_fixed_batch_and_another_file(runs, tmp_path):
    run_folder = runs["cnn-bn"]
    last = os.path.join(run_folder, "last.npz")
    assert main(["export", last]) == 0 and os.path.isfile(os.path.join(run_folder, "last.onnx"))
    out = str(tmp_path / "deep" / "cnn.onnx")
    assert main(["export", run_folder, "--out", out, "--batch", "4", "--weights", "last"]) == 0
    assert main(["export", run_folder, "--out", str(tmp_path)]) == 0  # a folder: model.onnx in it
    assert os.path.isfile(tmp_path / "model.onnx")
    dims = onnx.load(out).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [4, 1, 28, 28]
    run, images = load_run(last), load_dataset("fashion-mnist-mini").x_test[:4]
    expected = run.logits(images)
    for path in (out, os.path.join(run_folder, "last.onnx")):
        np.testing.assert_allclose(_onnx(path, run.transform(images)), expected, rtol=1e-4, atol=1e-5)
    assert sorted(os.listdir(tmp_path / "deep")) == ["cnn.onnx"]


def test_a_language_model_run_exports_with_its_vocabulary(runs):
    run_folder = runs["char-transformer"]
    assert main(["export", run_folder]) == 0
    path = os.path.join(run_folder, "model.onnx")
    run = load_run(run_folder)
    ids = np.random.default_rng(0).integers(0, len(run.vocab.chars), (3, 16))
    from npnet import no_grad
    with no_grad():
        expected = run.model(ids)  # (N, V, T) logits; the run's model is in eval mode
    np.testing.assert_allclose(_onnx(path, ids), expected, rtol=1e-4, atol=1e-5)
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(meta["npnet.vocab"]) == list(run.vocab.chars)


def test_bad_input_is_exit_2_and_one_message(runs, tmp_path, capsys, monkeypatch):
    run_folder = runs["cnn-bn"]
    (tmp_path / "a_file").write_text("")
    for argv, said in [
            (["export", str(tmp_path / "nothing")], f"npnet export: {tmp_path / 'nothing'}: no such run folder"),
            (["export", str(tmp_path)], f"npnet export: {tmp_path}: no best.npz or last.npz in this folder"),
            (["export", run_folder, "--batch", "0"], "npnet export: --batch must be >= 1, got 0"),
            (["export", run_folder, "--out", str(tmp_path / "a_file" / "m.onnx")],
             f"npnet export: cannot write {tmp_path / 'a_file' / 'm.onnx'}: {tmp_path / 'a_file'} is a file")]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(said) and len(err.strip().splitlines()) == 1, err
    monkeypatch.setitem(sys.modules, "onnx", None)  # as without the extra
    assert main(["export", run_folder, "--out", str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err.strip() == ("npnet export: npnet.onnx needs the onnx package: "
                                               "pip install -e '.[onnx]'")
    assert sorted(os.listdir(tmp_path)) == ["a_file"]
