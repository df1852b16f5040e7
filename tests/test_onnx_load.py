"""npnet.onnx.load: PyTorch models exported with torch.onnx (BatchNorm folded into the convolutions
and kept as its own node), loaded in npnet: same outputs, the same SGD step, gradient checks,
PyTorch's state-dict keys; and one clear error for what npnet cannot build or read."""
import sys

import numpy as np
import pytest

import npnet
from npnet import nn
from npnet.gradcheck import check_module
from npnet.losses import CrossEntropyLoss
from npnet.optim import SGD
from npnet.train import train_step

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="the PyTorch comparisons export models with torch.onnx")


def small_cnn(tnn):
    """torchvision-style: (Conv-BN-ReLU-MaxPool) x 2, Flatten, Dropout, Linear; 3x8x8 images."""
    class SmallCNN(tnn.Module):
        def __init__(self):
            super().__init__()
            self.features = tnn.Sequential(
                tnn.Conv2d(3, 8, 3, padding=1), tnn.BatchNorm2d(8), tnn.ReLU(), tnn.MaxPool2d(2),
                tnn.Conv2d(8, 16, 3, padding=1), tnn.BatchNorm2d(16), tnn.ReLU(), tnn.MaxPool2d(2))
            self.flatten, self.dropout, self.fc = tnn.Flatten(), tnn.Dropout(0.5), tnn.Linear(16 * 2 * 2, 10)

        def forward(self, x):
            return self.fc(self.dropout(self.flatten(self.features(x))))
    return SmallCNN()


def resnet_block(tnn):
    """A ResNet basic block with a strided 1x1 projection shortcut, then pooling and a Linear head."""
    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = tnn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), tnn.BatchNorm2d(8)
            self.conv2, self.bn2 = tnn.Conv2d(8, 8, 3, padding=1, bias=False), tnn.BatchNorm2d(8)
            self.relu = tnn.ReLU()
            self.downsample = tnn.Sequential(tnn.Conv2d(3, 8, 1, stride=2, bias=False), tnn.BatchNorm2d(8))
            self.pool, self.fc = tnn.AdaptiveAvgPool2d(1), tnn.Linear(8, 5)

        def forward(self, x):
            y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            y = self.relu(y + self.downsample(x))
            return self.fc(self.pool(y).flatten(1))
    return Block()


MODELS = {"cnn": small_cnn, "resnet-block": resnet_block}


def exported(torch, kind, tmp_path, preserve, fresh_bn=False):
    """(torch model in eval mode, path of its ONNX file). ``preserve`` keeps BatchNorm as its own
    node (TrainingMode.PRESERVE); otherwise the exporter folds it into the convolution before it.
    BatchNorm gets random affine and running statistics unless ``fresh_bn``."""
    torch.manual_seed(0)
    model = MODELS[kind](torch.nn).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d) and not fresh_bn:
            with torch.no_grad():
                m.weight.uniform_(0.5, 2), m.bias.uniform_(-1, 1), m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    path = tmp_path / f"{kind}-{'preserved' if preserve else 'folded'}.onnx"
    mode = {"training": torch.onnx.TrainingMode.PRESERVE} if preserve else {}
    torch.onnx.export(model, torch.zeros(2, 3, 8, 8), str(path), dynamo=False, input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}}, **mode)
    return model, path


def images(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 8, 8)).astype(np.float32)


@pytest.mark.parametrize("preserve", [True, False], ids=["bn-preserved", "bn-folded"])
@pytest.mark.parametrize("kind", MODELS)
def test_outputs_match_pytorch_at_two_batch_sizes(torch, tmp_path, kind, preserve):
    theirs, path = exported(torch, kind, tmp_path, preserve)
    ours = npnet.onnx.load(path).eval()
    assert isinstance(ours, nn.Sequential if kind == "cnn" else nn.Graph)
    assert any(isinstance(m, nn.BatchNorm2d) for m in ours.modules()) == preserve
    for n in (1, 7):
        x = images(n)
        y = ours(x)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y, theirs(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", MODELS)
def test_one_sgd_step_in_train_mode_matches_pytorch(torch, tmp_path, kind):
    """BatchNorm kept as a node (a folded one could not train as PyTorch's does). Both sides in
    train mode, so both BatchNorms normalise with the batch statistics and update their running
    ones. The exporter leaves Dropout out of an eval-mode graph, so the loaded CNN has none:
    PyTorch's Dropout is put in eval mode (the identity) for the step, the rest stays in train."""
    theirs, path = exported(torch, kind, tmp_path, preserve=True)
    ours = npnet.onnx.load(path).train()
    theirs.train()
    for m in theirs.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()
    x, labels = images(6, seed=1), np.arange(6) % 5
    loss, _ = train_step(ours, CrossEntropyLoss(), SGD(ours.parameters(), lr=0.1), x, labels)
    opt = torch.optim.SGD(theirs.parameters(), lr=0.1)
    opt.zero_grad()
    loss_t = torch.nn.functional.cross_entropy(theirs(torch.tensor(x)), torch.tensor(labels))
    loss_t.backward()
    opt.step()
    assert loss == pytest.approx(loss_t.item(), rel=1e-5)
    after = theirs.state_dict()
    for key, value in ours.state_dict().items():  # weights, running statistics, batch counts
        np.testing.assert_allclose(value, after[key].numpy(), rtol=1e-4, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("kind, train", [("resnet-block", True), ("cnn", False)])
def test_loaded_models_pass_the_float64_gradient_check(torch, tmp_path, kind, train):
    ours = npnet.onnx.load(exported(torch, kind, tmp_path, preserve=True)[1]).train(train)
    check_module(ours.astype(np.float64), images(2, seed=2), tol=1e-6)


@pytest.mark.parametrize("fresh_bn", [False, True], ids=["random-bn", "fresh-bn"])
def test_state_dict_has_pytorchs_keys_and_shapes_and_loads_pytorchs_state_dict(torch, tmp_path, fresh_bn):
    # a fresh BatchNorm's running_var equals its weight (ones): the exporter writes one
    # initializer and Identity nodes for the others, which the loader reads as constants
    theirs, path = exported(torch, "resnet-block", tmp_path, preserve=True, fresh_bn=fresh_bn)
    ours = npnet.onnx.load(path)
    expected = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == expected
    assert list(ours.state_dict()) == list(expected)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})  # strict
    assert all(p.data.dtype == np.float32 for p in ours.parameters())


def test_folded_export_keeps_pytorchs_names_for_the_layers_left(torch, tmp_path):
    theirs, path = exported(torch, "cnn", tmp_path, preserve=False)
    keys = list(npnet.onnx.load(path).state_dict())
    assert keys == ["features.0.weight", "features.0.bias", "features.4.weight", "features.4.bias",
                    "fc.weight", "fc.bias"]


def test_a_training_mode_export_keeps_dropout_and_every_key(torch, tmp_path):
    torch.manual_seed(0)
    theirs = small_cnn(torch.nn).train()
    path = tmp_path / "train.onnx"
    # BatchNormalization then has three outputs (the running statistics too), Dropout two (the mask);
    # nothing reads the extra ones, so npnet's layers, which compute the first, are enough
    torch.onnx.export(theirs, torch.zeros(2, 3, 8, 8), str(path), dynamo=False,
                      training=torch.onnx.TrainingMode.TRAINING, dynamic_axes={"x": {0: "N"}}, input_names=["x"])
    ours = npnet.onnx.load(path)
    assert isinstance(ours.dropout, nn.Dropout) and ours.dropout.p == 0.5
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = images(3)
    np.testing.assert_allclose(ours.eval()(x), theirs.eval()(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_view_with_a_dynamic_batch_is_a_reshape_keeping_dim_0(torch, tmp_path):
    """``x.view(x.size(0), -1)`` with a dynamic batch: Shape -> Gather -> Unsqueeze -> Concat ->
    Reshape, worked out at load time as Reshape((0, -1))."""
    class View(torch.nn.Module):
        def forward(self, x):
            return x.view(x.size(0), -1)

    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU(), View(), torch.nn.Linear(72, 4)).eval()
    path = tmp_path / "view.onnx"
    torch.onnx.export(theirs, torch.zeros(2, 3, 8, 8), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "N"}})
    ours = npnet.onnx.load(path)
    assert [type(m) for m in ours] == [nn.Conv2d, nn.ReLU, nn.Reshape, nn.Linear] and ours[2].shape == (0, -1)
    for n in (1, 5):
        x = images(n)
        np.testing.assert_allclose(ours(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opset", [17, 20], ids=["erf-pattern", "gelu-op"])
def test_gelu_both_ways_and_a_constant_operand(torch, tmp_path, opset):
    tnn = torch.nn

    class Head(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.act, self.fc2 = tnn.Linear(6, 8), tnn.GELU(), tnn.Linear(8, 4)

        def forward(self, x):
            return torch.log_softmax(self.fc2(self.act(self.fc1(x)) * 0.5), dim=-1)

    torch.manual_seed(0)
    theirs = Head().eval()
    path = tmp_path / "head.onnx"
    torch.onnx.export(theirs, torch.zeros(2, 6), str(path), dynamo=False, opset_version=opset,
                      dynamic_axes={"input": {0: "N"}}, input_names=["input"])
    ours = npnet.onnx.load(path)
    assert [type(m).__name__ for _, m, _ in ours.nodes] == ["Linear", "GELU", "Constant", "Mul", "Linear",
                                                             "LogSoftmax"]
    x = np.random.default_rng(3).standard_normal((5, 6)).astype(np.float32)
    np.testing.assert_allclose(ours(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


# -- graphs built with onnx.helper: no torch needed ---------------------------------------------------
def write_model(path, nodes, inits=(), shape=(2, 3, 6, 6), opset=17):
    """An ONNX file of ``nodes`` reading "x" of ``shape``; the output of the input's rank."""
    out_shape = [f"d{i}" for i in range(len(shape))]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(np.asarray(v), name) for name, v in inits])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


CONV_W = ("w", np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32))


def test_gemm_with_alpha_beta_and_untransposed_weight(tmp_path):
    rng = np.random.default_rng(0)
    b, c = rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    path = write_model(tmp_path / "gemm.onnx", [helper.make_node("Gemm", ["x", "B", "C"], ["y"], alpha=0.5,
                                                                 beta=2.0)], [("B", b), ("C", c)], shape=(4, 5))
    x = rng.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(npnet.onnx.load(path)(x), 0.5 * x @ b + 2 * c, rtol=1e-5, atol=1e-6)


def many_ops_model(path):
    """Conv, LeakyRelu, BatchNormalization, AveragePool, Sigmoid | Tanh, Concat, Mul by a constant
    (broadcast), Transpose x 2, GlobalAveragePool, Reshape, MatMul + Add, Softmax; batch "N"."""
    rng = np.random.default_rng(5)
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    inits = [("w", f(4, 3, 3, 3)), ("b", f(4)), ("scale", rng.uniform(0.5, 2, 4).astype(np.float32)),
             ("shift", f(4)), ("mean", f(4)), ("var", rng.uniform(0.5, 2, 4).astype(np.float32)),
             ("gate", f(1, 8, 1, 1)), ("shape", np.array([0, -1], np.int64)), ("W", f(8, 5)), ("B", f(5))]
    N = helper.make_node
    nodes = [N("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), N("LeakyRelu", ["c"], ["l"], alpha=0.2),
             N("BatchNormalization", ["l", "scale", "shift", "mean", "var"], ["bn"], epsilon=1e-3),
             N("AveragePool", ["bn"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
               count_include_pad=1),
             N("Sigmoid", ["p"], ["s"]), N("Tanh", ["p"], ["t"]), N("Concat", ["s", "t"], ["cat"], axis=1),
             N("Mul", ["cat", "gate"], ["g"]), N("Transpose", ["g"], ["nhwc"], perm=[0, 2, 3, 1]),
             N("Transpose", ["nhwc"], ["nchw"], perm=[0, 3, 1, 2]), N("GlobalAveragePool", ["nchw"], ["gap"]),
             N("Reshape", ["gap", "shape"], ["flat"]), N("MatMul", ["flat", "W"], ["mm"]),
             N("Add", ["B", "mm"], ["fc"]), N("Softmax", ["fc"], ["y"], axis=-1)]
    graph = helper.make_graph(nodes, "many", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
                              [numpy_helper.from_array(v, k) for k, v in inits])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_many_operators_match_onnxruntime_and_pass_the_gradient_check(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the reference for graphs built by hand")
    path = many_ops_model(tmp_path / "many.onnx")
    model = npnet.onnx.load(path).eval()
    assert isinstance(model, nn.Graph)
    assert "matmul = Linear(in_features=8, out_features=5, bias=True)(reshape)" in repr(model)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (2, 5):
        x = images(n, seed=n)[:, :, :6, :6].copy()
        np.testing.assert_allclose(model(x), session.run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)
    check_module(model.astype(np.float64), images(2, seed=9)[:, :, :6, :6], tol=1e-6)


def test_batchnorm_after_gemm_becomes_batchnorm1d(tmp_path):
    rng = np.random.default_rng(1)
    w, mean, var = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    inits = [("fc.weight", w), ("bn.weight", np.full(3, 2.0)), ("bn.bias", np.ones(3)), ("bn.running_mean", mean),
             ("bn.running_var", var)]
    nodes = [helper.make_node("Gemm", ["x", "fc.weight"], ["h"], transB=1),
             helper.make_node("BatchNormalization", ["h", "bn.weight", "bn.bias", "bn.running_mean",
                                                     "bn.running_var"], ["y"])]
    model = npnet.onnx.load(write_model(tmp_path / "bn1d.onnx", nodes, [(k, np.float32(v)) for k, v in inits],
                                        shape=(5, 4)))
    assert [type(m) for m in model] == [nn.Linear, nn.BatchNorm1d] and list(model._modules) == ["fc", "bn"]
    x = rng.standard_normal((5, 4)).astype(np.float32)
    expected = (x @ w.T - mean) / np.sqrt(var + 1e-5) * 2 + 1
    np.testing.assert_allclose(model.eval()(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape, ok", [((2, 5), True), ((2, 3, 4, 4), False)])
def test_softmax_before_opset_13_only_where_it_means_one_dim(tmp_path, shape, ok):
    path = write_model(tmp_path / "sm.onnx", [helper.make_node("Softmax", ["x"], ["y"], axis=1)], shape=shape, opset=11)
    if ok:
        assert isinstance(npnet.onnx.load(path)[0], nn.Softmax)
    else:
        with pytest.raises(ValueError, match="axis=1 at opset 11 normalises over all dims from axis on"):
            npnet.onnx.load(path)


def test_a_reshape_to_sizes_of_another_value_is_refused(tmp_path):
    N = helper.make_node
    nodes = [N("Relu", ["x"], ["r"]), N("Shape", ["x"], ["s"]), N("Gather", ["s", "i"], ["g"], axis=0),
             N("Concat", ["minus1", "g"], ["shape"], axis=0), N("Reshape", ["r", "shape"], ["y"])]
    consts = [("i", np.array([0], np.int64)), ("minus1", np.array([-1], np.int64))]
    path = write_model(tmp_path / "r.onnx", nodes, consts, shape=(2, 3))
    with pytest.raises(ValueError, match="node 5 of 5, 'y' \\(Reshape\\): the shape reads size 0 of 'x' at another"):
        npnet.onnx.load(path)


def test_dropout_node_becomes_dropout(tmp_path):
    path = write_model(tmp_path / "drop.onnx", [helper.make_node("Relu", ["x"], ["r"]),
                                               helper.make_node("Dropout", ["r", "ratio"], ["y"])],
                       [("ratio", np.array(0.3, np.float32))])
    model = npnet.onnx.load(path)
    assert isinstance(model, nn.Sequential) and model[1].p == 0.3 and list(model._modules) == ["relu", "dropout"]


@pytest.mark.parametrize("op, attrs, inputs", [("Erf", {}, ["c"]), ("Einsum", {"equation": "nchw->nchw"}, ["c"]),
                                               ("Cos", {}, ["c"])])
def test_an_operator_npnet_lacks_gets_one_error_naming_it_its_node_and_place(tmp_path, op, attrs, inputs):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node(op, inputs, ["o"], name=f"{op}_3", **attrs), helper.make_node("Relu", ["o"], ["y"])]
    path = write_model(tmp_path / "bad.onnx", nodes, [CONV_W])
    with pytest.raises(ValueError) as info:
        npnet.onnx.load(path)
    text = str(info.value)
    assert f"node 2 of 3, '{op}_3' ({op}): npnet has no layer for the operator {op}" in text
    assert str(path) in text and "Constant, Conv, Div (in GELU's erf form), Dropout, Flatten" in text


@pytest.mark.parametrize("attrs, said", [
    ({"pads": [1, 1, 0, 0]}, "pads \\[1, 1, 0, 0\\] are asymmetric"),
    ({"group": 3}, "group=3 \\(npnet's Conv2d has groups=1\\)"),
    ({"dilations": [2, 2]}, "dilations \\[2, 2\\]"),
    ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, "auto_pad=SAME_UPPER with stride \\(2, 2\\)")])
def test_a_conv_npnet_cannot_express_names_the_node_and_the_attribute(tmp_path, attrs, said):
    w = CONV_W if "group" not in attrs else ("w", np.ones((3, 1, 3, 3), np.float32))
    path = write_model(tmp_path / "conv.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], name="c1", **attrs)], [w])
    with pytest.raises(ValueError, match=f"node 1 of 1, 'c1' \\(Conv\\): {said}"):
        npnet.onnx.load(path)


@pytest.mark.parametrize("op, attrs, said", [
    ("MaxPool", {"kernel_shape": [2, 2], "ceil_mode": 1}, "ceil_mode=1"),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, "count_include_pad=0 with padding"),
    ("Flatten", {"axis": 2}, "axis=2")])
def test_pooling_and_flatten_npnet_cannot_express(tmp_path, op, attrs, said):
    path = write_model(tmp_path / "p.onnx", [helper.make_node(op, ["x"], ["y"], **attrs)])
    with pytest.raises(ValueError, match=f"\\({op}\\): {said}"):
        npnet.onnx.load(path)


def test_average_pool_counting_the_padding_matches_avgpool2d(tmp_path):
    path = write_model(tmp_path / "ap.onnx", [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3],
                                                              strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)])
    x = images(2)[:, :, :6, :6]
    np.testing.assert_allclose(npnet.onnx.load(path)(x), nn.AvgPool2d(3, 2, 1)(x))


@pytest.fixture
def valid_file(tmp_path):
    return write_model(tmp_path / "ok.onnx", [helper.make_node("Conv", ["x", "w"], ["c"]),
                                             helper.make_node("Relu", ["c"], ["y"])], [CONV_W])


@pytest.mark.parametrize("damage", ["truncated", "text", "empty"])
def test_a_damaged_or_foreign_file_gets_one_clear_error_naming_it(valid_file, damage):
    data = valid_file.read_bytes()
    bad = valid_file.with_name(f"{damage}.onnx")
    bad.write_bytes({"truncated": data[:len(data) // 2], "text": b"name,value\nlr,0.1\n" * 20, "empty": b""}[damage])
    with pytest.raises(ValueError, match=f"npnet.onnx.load\\('{bad}'\\): not a valid ONNX model"):
        npnet.onnx.load(bad)


def test_loading_touches_no_global_state_and_a_failed_load_returns_nothing(valid_file, tmp_path):
    before = npnet.init.get_rng(None).bit_generator.state
    model = npnet.onnx.load(valid_file)
    assert isinstance(model, nn.Sequential) and npnet.init.get_rng(None).bit_generator.state == before
    np.testing.assert_array_equal(model[0].weight.data, CONV_W[1])
    bad = write_model(tmp_path / "erf.onnx", [helper.make_node("Conv", ["x", "w"], ["c"]),
                                             helper.make_node("Erf", ["c"], ["y"])], [CONV_W])
    with pytest.raises(ValueError, match="Erf"):  # the Conv was built first: no layer leaks out
        npnet.onnx.load(bad)
    assert npnet.init.get_rng(None).bit_generator.state == before


def test_without_onnx_the_error_says_how_to_install_it(valid_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # "import onnx" now raises ImportError
    with pytest.raises(ImportError, match=r"npnet.onnx needs the onnx package: pip install -e '.\[onnx\]'"):
        npnet.onnx.load(valid_file)
