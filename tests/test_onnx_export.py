"""npnet.onnx.export: every zoo model (also fused, and with a convolution algorithm set) written as
ONNX, checked by onnx.checker and run by ONNX Runtime at two batch sizes, equal to npnet's eval
forward to float32 rounding; the layers one by one in their settings; the error on a layer
without a converter (one message naming it, no file left behind)."""
import os
import sys

import numpy as np
import pytest

import npnet
from npnet import nn
from npnet.models import MODELS, build_model, input_kind
from npnet.nn.tuning import set_algorithms
from npnet.onnx import ExportError, export

onnx = pytest.importorskip("onnx")
try:
    import onnxruntime as ort
except ImportError:  # the export is tested without it; running the files needs it
    ort = None
needs_ort = pytest.mark.skipif(ort is None, reason="onnxruntime is not installed (pip install onnxruntime)")

# float32 rounding: the runtime sums products in another order than npnet's kernels
RTOL, ATOL = 1e-4, 1e-5
IN_SHAPES = {"image": (1, 28, 28), "sequence": (28, 28), "tokens": (16,)}
VOCAB = 11


def inputs(kind, n, shape, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "tokens":
        return rng.integers(0, VOCAB, (n,) + shape)
    return rng.standard_normal((n,) + shape).astype(np.float32)


def zoo_model(name):
    """A zoo model whose BatchNorm layers have moved off their initial statistics."""
    kind = input_kind(name)
    shape = (3, 32, 32) if name == "resnet32" else IN_SHAPES[kind]
    model = build_model(name, shape, VOCAB if kind == "tokens" else 10, rng=0)
    bns = [m for m in model.modules() if isinstance(m, nn.normalization._BatchNorm)]
    for step in range(3 if bns else 0):  # train-mode forwards: running statistics move
        model(inputs(kind, 4, shape, seed=10 + step) * 2 + 1 if kind != "tokens" else inputs(kind, 4, shape))
    assert all(abs(bn.running_mean).max() > 1e-3 and abs(bn.running_var - 1).max() > 1e-3 for bn in bns)
    return model, kind, shape


def eval_output(model, x):
    was = [(m, m.training) for m in model.modules()]
    with npnet.no_grad():
        y = model.eval()(x)
    for m, mode in was:
        object.__setattr__(m, "training", mode)
    return y


def run_onnx(path, x, name="input"):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {name: x})[0]


def check_matches(model, path, kind, shape, batches=(1, 3), rtol=RTOL, atol=ATOL):
    """ONNX Runtime's output equals npnet's eval forward at every batch size; returns the max
    difference relative to the output's largest value."""
    worst = 0.0
    for n in batches:
        x = inputs(kind, n, shape, seed=n)
        expected = eval_output(model, x)
        got = run_onnx(path, x)
        assert got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol * max(1.0, np.abs(expected).max()))
        worst = max(worst, float(np.abs(got - expected).max() / np.abs(expected).max()))
    return worst


def initializer_names(path):
    return {t.name for t in onnx.load(str(path)).graph.initializer}


@needs_ort
@pytest.mark.parametrize("name", list(MODELS))
def test_every_zoo_model_exports_and_runs_as_npnet_in_eval_mode(name, tmp_path):
    model, kind, shape = zoo_model(name)
    model.train()  # exported in eval semantics whatever the mode; the mode is left as it was
    path = tmp_path / f"{name}.onnx"
    proto = export(model, inputs(kind, 2, shape), path)
    assert all(m.training for m in model.modules())
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert proto.graph.input[0].name == "input" and proto.graph.output[0].name == "output"
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    check_matches(model, path, kind, shape)
    # the weights keep their state-dict names wherever one array is one initializer
    state = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    recurrent = {k for k in state if "_ih_l" in k or "_hh_l" in k}
    assert state - recurrent <= initializer_names(path)
    assert not any(n.op_type == "Dropout" for n in proto.graph.node)
    assert os.listdir(tmp_path) == [f"{name}.onnx"]  # no temporary file left


@needs_ort
def test_dropout_models_are_deterministic_in_onnx(tmp_path):
    model, kind, shape = zoo_model("cnn-5")
    export(model, inputs(kind, 1, shape), tmp_path / "m.onnx")
    x = inputs(kind, 3, shape)
    a, b = run_onnx(tmp_path / "m.onnx", x), run_onnx(tmp_path / "m.onnx", x)
    assert np.array_equal(a, b)
    assert not any(n.op_type == "Dropout" for n in onnx.load(str(tmp_path / "m.onnx")).graph.node)


@needs_ort
@pytest.mark.parametrize("name,inference", [("cnn-bn", False), ("cnn-bn", True), ("resnet32", False),
                                            ("resnet32", True), ("mknet6", True)])
def test_fused_models_export_what_they_compute(name, inference, tmp_path):
    model, kind, shape = zoo_model(name)
    model.eval()
    plain = tmp_path / "plain.onnx"
    export(model, inputs(kind, 1, shape), plain)
    npnet.fuse(model, inference=inference)
    assert npnet.nn.fusion.fused_modules(model)
    fused = tmp_path / "fused.onnx"
    export(model, inputs(kind, 1, shape), fused)
    check_matches(model, fused, kind, shape)
    assert initializer_names(fused) == initializer_names(plain)  # the same state-dict names


@needs_ort
@pytest.mark.parametrize("algorithm", ["im2col", "winograd", "winograd4"])
def test_a_convolution_algorithm_does_not_change_the_graph(algorithm, tmp_path):
    model, kind, shape = zoo_model("cnn-small")
    set_algorithms(model, {name: algorithm for name in ("0", "3", "6")})
    export(model, inputs(kind, 1, shape), tmp_path / "m.onnx")
    check_matches(model, tmp_path / "m.onnx", kind, shape)  # F(4x4) rounds ~1e-6 of the largest output


@needs_ort
@pytest.mark.parametrize("name,opset", [("resnet32", 13), ("transformer-rows", 18), ("transformer-rows", 21)])
def test_other_opsets(name, opset, tmp_path):
    """13, the oldest taken; from 18 ReduceMean reads its axes as an input; from 20 GELU is a node."""
    model, kind, shape = zoo_model(name)
    proto = export(model, inputs(kind, 1, shape), tmp_path / "m.onnx", opset=opset)
    assert proto.opset_import[0].version == opset
    check_matches(model, tmp_path / "m.onnx", kind, shape)


class _Doubler(nn.Module):
    def forward(self, x):
        return 2 * x


class _MyReLU(nn.ReLU):
    def forward(self, x):
        return np.maximum(x, 0.1)


@pytest.mark.parametrize("layer,said", [
    (_Doubler(), r"layer '1\.1' \([\w.]*\._Doubler\) cannot be exported: npnet\.onnx has "
                 r"no converter for this class"),
    (_MyReLU(), r"layer '1\.1' \(_MyReLU\) cannot be exported: its class overrides ReLU\.forward")])
def test_a_layer_without_a_converter_is_one_error_and_no_file(layer, said, tmp_path):
    model = nn.Sequential(nn.Linear(4, 4, rng=0), nn.Sequential(nn.ReLU(), layer), nn.Linear(4, 2, rng=1))
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=said):
        export(model, np.ones((2, 4), np.float32), path)
    assert os.listdir(tmp_path) == []
    path.write_bytes(b"an older file")  # a failed export leaves what was there
    with pytest.raises(ValueError):
        export(model, np.ones((2, 4), np.float32), path)
    assert path.read_bytes() == b"an older file" and os.listdir(tmp_path) == ["m.onnx"]


@needs_ort
def test_a_subclass_that_keeps_its_bases_forward_exports_as_the_base(tmp_path):
    from npnet.distributed.sync_batchnorm import convert_sync_batchnorm  # SyncBatchNorm2d: BatchNorm2d's forward
    model = convert_sync_batchnorm(nn.Sequential(nn.Conv2d(1, 3, 3, rng=0), nn.BatchNorm2d(3), nn.Flatten()))
    model(inputs("image", 4, (1, 5, 5)) + 1)
    export(model, inputs("image", 1, (1, 5, 5)), tmp_path / "m.onnx")
    check_matches(model, tmp_path / "m.onnx", "image", (1, 5, 5))


# -- the layers in their settings ----------------------------------------------------------------
def _image_layers():
    """Every feed-forward layer in a setting other than the zoo's: rectangular kernels, strides
    that do not tile the input, padded pooling, non-affine BatchNorm, BatchNorm1d on (N, C, L)."""
    return nn.Sequential(
        nn.Conv2d(2, 4, (3, 2), stride=(2, 1), padding=(1, 0), rng=0), nn.BatchNorm2d(4, affine=False),
        nn.LeakyReLU(0.1), nn.MaxPool2d(3, stride=2, padding=1), nn.AvgPool2d(2, stride=1, padding=1),
        nn.SiLU(), nn.Flatten(start_dim=2), nn.BatchNorm1d(4), nn.LayerNorm((4, 16), elementwise_affine=False),
        nn.Flatten(), nn.Residual(nn.Sequential(nn.Linear(64, 64, rng=1), nn.Tanh())), nn.Dropout(0.5),
        nn.Linear(64, 16, bias=False, rng=2), nn.GELU(), nn.Identity(), nn.Sigmoid(),
        nn.Linear(16, 8, rng=3), nn.GELU("tanh"), nn.Softmax(dim=1))


@needs_ort
@pytest.mark.parametrize("opset", [17, 20])
def test_every_image_layer_in_its_settings(opset, tmp_path):
    model = _image_layers()
    for step in range(2):
        model(inputs("image", 4, (2, 9, 7), seed=step) + 1)
    export(model, inputs("image", 2, (2, 9, 7)), tmp_path / "m.onnx", opset=opset)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert ("Gelu" in ops) == (opset >= 20) and ("Erf" in ops) == (opset < 20)
    check_matches(model, tmp_path / "m.onnx", "image", (2, 9, 7))
    logsoftmax = nn.Sequential(nn.Flatten(), nn.Linear(126, 5, rng=0), nn.LogSoftmax(dim=-1))
    export(logsoftmax, inputs("image", 2, (2, 9, 7)), tmp_path / "l.onnx", opset=opset)
    check_matches(logsoftmax, tmp_path / "l.onnx", "image", (2, 9, 7))


@needs_ort
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_recurrent_layers_stacked_and_bidirectional(cell, tmp_path):
    model = build_model(f"{cell}-rows", (6, 5), 3, rng=0, hidden_size=7, num_layers=2, bidirectional=True)
    if cell == "rnn":  # and the other nonlinearity, without biases
        model.rnn = nn.RNN(5, 7, num_layers=2, nonlinearity="relu", bias=False, batch_first=True,
                           bidirectional=True, rng=1)
    if cell == "lstm":  # time-major: the input is (T, N, F), so the symbolic first dim is T here
        model.rnn = nn.LSTM(5, 7, num_layers=2, bidirectional=True, rng=1)
    export(model, inputs("sequence", 2, (6, 5)), tmp_path / "m.onnx")
    check_matches(model, tmp_path / "m.onnx", "sequence", (6, 5))


@needs_ort
def test_a_sequence_major_post_norm_encoder_runs_at_any_length(tmp_path):
    """batch_first=False (L, N, E), post-norm, ReLU, PositionalEncoding: the length varies too
    (the file's first dim, here L, is the symbolic one)."""
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, rng=0)
    model = nn.Sequential(nn.PositionalEncoding(8, max_len=20), nn.TransformerEncoder(layer, 2, rng=1))
    export(model, inputs("sequence", 5, (2, 8)), tmp_path / "m.onnx")
    check_matches(model, tmp_path / "m.onnx", "sequence", (2, 8), batches=(3, 7))


@needs_ort
def test_embedding_and_a_language_model_with_a_fixed_batch(tmp_path):
    model = nn.Sequential(nn.Embedding(VOCAB, 6, padding_idx=0, rng=0), nn.LayerNorm(6), nn.Flatten(),
                          nn.Linear(6 * 16, 3, rng=1))
    export(model, inputs("tokens", 2, (16,)), tmp_path / "m.onnx")
    check_matches(model, tmp_path / "m.onnx", "tokens", (16,))
    lm, kind, _ = zoo_model("char-transformer")
    export(lm, inputs(kind, 2, (16,)), tmp_path / "lm.onnx", dynamic_batch=False)
    check_matches(lm, tmp_path / "lm.onnx", kind, (16,), batches=(2,))


# -- arguments -----------------------------------------------------------------------------------
def test_names_fixed_batch_and_metadata(tmp_path):
    model = build_model("linear", (1, 4, 4), 3, rng=0)
    proto = export(model, np.zeros((5, 1, 4, 4), np.float32), tmp_path / "m.onnx", input_names=["images"],
                   output_names=["logits"], dynamic_batch=False, metadata={"npnet.model": "linear"})
    assert [i.name for i in proto.graph.input] == ["images"] and proto.graph.output[0].name == "logits"
    assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == [5, 3]
    assert {p.key: p.value for p in proto.metadata_props} == {"npnet.model": "linear"}
    assert proto.opset_import[0].version == 17 and proto.producer_name == "npnet"
    only_dropout = nn.Sequential(nn.Dropout(0.2), nn.Identity())  # the output is the input itself
    export(only_dropout, np.zeros((2, 3), np.float32), tmp_path / "d.onnx")
    if ort is not None:
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        assert np.array_equal(run_onnx(tmp_path / "d.onnx", x), x)


@pytest.mark.parametrize("kwargs,error,said", [
    ({"opset": 12}, ValueError, "opset must be an int from 13 to"),
    ({"input_names": ["a", "b"]}, ValueError, "input_names must be a list of one non-empty name"),
    ({"example_input": [[1.0]]}, TypeError, "example_input must be a numpy array")])
def test_bad_arguments_are_one_error_and_no_file(kwargs, error, said, tmp_path):
    args = {"example_input": np.zeros((1, 3), np.float32), **kwargs}
    with pytest.raises(error, match=said):
        export(nn.Sequential(nn.Linear(3, 2, rng=0)), path=tmp_path / "m.onnx", **args)
    assert os.listdir(tmp_path) == []


def test_layer_norm_needs_opset_17(tmp_path):
    with pytest.raises(ExportError, match=r"layer '0' \(LayerNorm\) cannot be exported at opset 16"):
        export(nn.Sequential(nn.LayerNorm(3)), np.zeros((1, 3), np.float32), tmp_path / "m.onnx", opset=16)


def test_importing_npnet_onnx_does_not_import_onnx():
    import subprocess
    code = "import sys, npnet.onnx; print(sorted({'onnx', 'onnxruntime'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(npnet.__file__))))
    assert done.stdout.strip() == "[]"


def test_without_onnx_the_error_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ImportError, match=r"npnet.onnx needs the onnx package: pip install -e '\.\[onnx\]'"):
        export(nn.Sequential(nn.ReLU()), np.zeros((1, 3), np.float32), tmp_path / "m.onnx")
