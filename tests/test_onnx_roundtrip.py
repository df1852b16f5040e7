"""Round trips npnet -> ONNX -> npnet (issue 35) for every zoo model: the reloaded model computes
the same outputs at any batch size, has the same state dict, trains the same (one SGD step), and
its gradients pass the float64 gradient check.

Dropout: ONNX files hold the eval-mode graph, so the reloaded model has no Dropout layers; the
models are built with dropout 0 (the builders' ``dropout`` option), which makes the original's
training step deterministic and the same function as the reloaded one's. BatchNorm's running
statistics are set to random values before the export, so that the state dict compares more
than the initial zeros and ones; ``num_batches_tracked`` is not in an ONNX file (the loader starts
it at 0), so the originals are not trained before the export.
"""
import copy

import numpy as np
import pytest

from npnet import nn
from npnet.gradcheck import check_module, numerical_gradient, relative_error
from npnet.losses import CrossEntropyLoss
from npnet.models import build_model, input_kind
from npnet.optim import SGD
from npnet.train import train_step

onnx = pytest.importorskip("onnx")
import npnet.onnx  # noqa: E402

V = 11  # classes, and the vocabulary of the language models
# (id, zoo name, in_shape, options): small inputs; every option that has a dropout sets it to 0
CASES = [
    ("linear", "linear", (1, 8, 8), {}),
    ("mlp", "mlp", (1, 8, 8), {}),
    ("cnn-small", "cnn-small", (1, 12, 12), {}),
    ("cnn-bn", "cnn-bn", (1, 12, 12), {}),
    ("cnn-5", "cnn-5", (1, 16, 16), {"dropout": 0.0}),
    ("alexnet", "alexnet", (1, 16, 16), {"dropout": 0.0}),
    ("resnet32", "resnet32", (3, 8, 8), {}),
    ("mknet", "mknet", (1, 8, 8), {}),
    ("mknet6", "mknet6", (1, 16, 16), {"dropout": 0.0}),
    ("mknet6-softmax", "mknet6", (1, 16, 16), {"dropout": 0.0, "gate": "softmax"}),
    ("rnn-rows", "rnn-rows", (7, 5), {}),
    ("lstm-rows", "lstm-rows", (7, 5), {}),
    ("gru-rows", "gru-rows", (7, 5), {}),
    ("rnn-rows-2-bi", "rnn-rows", (7, 5), {"hidden_size": 6, "num_layers": 2, "bidirectional": True}),
    ("lstm-rows-3-bi", "lstm-rows", (7, 5), {"hidden_size": 6, "num_layers": 3, "bidirectional": True}),
    ("gru-rows-2-bi", "gru-rows", (7, 5), {"hidden_size": 6, "num_layers": 2, "bidirectional": True}),
    ("transformer-rows", "transformer-rows", (7, 5), {"dropout": 0.0}),
    ("char-lstm", "char-lstm", (9,), {}),
    ("char-transformer", "char-transformer", (9,), {"dropout": 0.0}),
]
IDS = [c[0] for c in CASES]


def inputs(name, in_shape, n, seed):
    rng = np.random.default_rng(seed)
    if input_kind(name) == "tokens":
        return rng.integers(0, V, (n,) + in_shape)
    return rng.standard_normal((n,) + in_shape).astype(np.float32)


def targets(name, in_shape, n, seed):
    rng = np.random.default_rng(seed + 100)
    return rng.integers(0, V, (n,) + in_shape) if input_kind(name) == "tokens" else rng.integers(0, V, n)


def built(name, in_shape, options, seed=0):
    """A zoo model with random BatchNorm statistics (num_batches_tracked stays 0)."""
    model = build_model(name, in_shape, V, rng=seed, **options)
    rng = np.random.default_rng(seed + 1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean[...] = rng.normal(0, 0.2, m.running_mean.shape)
            m.running_var[...] = rng.uniform(0.5, 2, m.running_var.shape)
    return model


@pytest.fixture(scope="module")
def round_trips(tmp_path_factory):
    """{id: (original, reloaded)}, each exported once with a batch of 2 and a dynamic batch."""
    folder, out = tmp_path_factory.mktemp("roundtrip"), {}
    for case, name, in_shape, options in CASES:
        model = built(name, in_shape, options)
        path = folder / f"{case}.onnx"
        npnet.onnx.export(model, inputs(name, in_shape, 2, 0), path)
        out[case] = (model, npnet.onnx.load(path))
    return out


def case_of(case):
    return next(c for c in CASES if c[0] == case)


@pytest.mark.parametrize("case", IDS)
def test_reloaded_model_gives_the_same_outputs_at_two_batch_sizes(round_trips, case):
    _, name, in_shape, _ = case_of(case)
    original, reloaded = round_trips[case]
    for n in (1, 5):  # neither is the export's batch of 2
        x = inputs(name, in_shape, n, seed=n)
        expected, got = original.eval()(x), reloaded.eval()(x)
        assert got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", IDS)
def test_reloaded_model_has_the_same_state_dict(round_trips, case):
    original, reloaded = round_trips[case]
    ours, theirs = original.state_dict(), reloaded.state_dict()
    assert sorted(theirs) == sorted(ours)
    for key, value in ours.items():
        assert theirs[key].shape == value.shape and theirs[key].dtype == value.dtype, key
        np.testing.assert_array_equal(theirs[key], value, err_msg=key)


@pytest.mark.parametrize("case", IDS)
def test_one_sgd_step_in_train_mode_gives_the_same_weights(round_trips, case):
    """Both models take one step on the same batch (BatchNorm on batch statistics), on copies, so
    that the step does not leak into the other tests."""
    _, name, in_shape, _ = case_of(case)
    original, reloaded = (copy.deepcopy(m) for m in round_trips[case])
    x, y = inputs(name, in_shape, 4, seed=7), targets(name, in_shape, 4, seed=7)
    losses = []
    for model in (original, reloaded):
        model.train()
        losses.append(train_step(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1, momentum=0.9), x, y)[0])
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    after = reloaded.state_dict()
    for key, value in original.state_dict().items():
        # float32 rounding of the weight's scale: the original's softmax gate (mknet) runs
        # F.softmax (NumPy's exp), the reloaded nn.Softmax the softmax kernel (its own exp)
        scale = max(float(np.abs(value).max()), 1e-3) if value.size else 1.0
        np.testing.assert_allclose(after[key], value, rtol=1e-5, atol=1e-4 * scale, err_msg=key)


# tiny float models for the float64 gradient check of the reloaded model: every parameter's
# gradient is compared with central differences
GRADCHECK = [
    ("resnet32", (3, 4, 4), {"widths": (2, 4, 6), "blocks": 1}),  # a CNN with BatchNorm, Slice and Pad
    ("mknet", (1, 4, 4), {"widths": (2, 2, 2, 2), "kernel_sizes": (1, 3)}),  # the gate: Slice, Mul
    ("lstm-rows", (4, 3), {"hidden_size": 3, "num_layers": 2, "bidirectional": True}),
    ("gru-rows", (4, 3), {"hidden_size": 3, "num_layers": 2, "bidirectional": True}),
    ("rnn-rows", (4, 3), {"hidden_size": 3, "num_layers": 2}),
    ("transformer-rows", (4, 3), {"d_model": 4, "nhead": 2, "num_layers": 1, "dim_feedforward": 6,
                                  "dropout": 0.0}),
]


@pytest.mark.parametrize("name, in_shape, options", GRADCHECK, ids=[g[0] for g in GRADCHECK])
def test_reloaded_model_passes_the_float64_gradient_check(tmp_path, name, in_shape, options):
    model = built(name, in_shape, options, seed=3)
    npnet.onnx.export(model, inputs(name, in_shape, 2, 0), tmp_path / "m.onnx")
    reloaded = npnet.onnx.load(tmp_path / "m.onnx").train()
    check_module(reloaded, inputs(name, in_shape, 3, seed=4), tol=1e-6)


def test_reloaded_causal_language_model_passes_the_float64_gradient_check(tmp_path):
    """Token ids are integers (check_module casts its input to float), so the weights' gradients of
    char-transformer (embedding, positions, causal mask, attention) are checked here directly."""
    options = {"d_model": 4, "nhead": 2, "num_layers": 1, "dim_feedforward": 6, "dropout": 0.0, "max_len": 8}
    model = built("char-transformer", (5,), options, seed=5)
    npnet.onnx.export(model, inputs("char-transformer", (5,), 2, 0), tmp_path / "lm.onnx")
    reloaded = npnet.onnx.load(tmp_path / "lm.onnx").train().astype(np.float64)
    ids = inputs("char-transformer", (5,), 2, seed=6)
    dout = np.random.default_rng(7).standard_normal((2, V, 5))
    reloaded.zero_grad()
    reloaded(ids)
    reloaded.backward(dout, input_grad=False)
    for key, p in reloaded.named_parameters():
        numeric = numerical_gradient(lambda: float(np.sum(reloaded(ids) * dout)), p.data)
        assert relative_error(p.grad, numeric) < 1e-6, key


# -- files from elsewhere: the same operators outside the exporter's patterns ---------------------
def recurrent_file(path, op, out, D=2, H=4, I=3, **attrs):
    """One ONNX RNN / LSTM / GRU node on x (T, N, I) with random weights; the graph's output is
    the node's output ``out`` (0: Y (T, D, N, H), 1: Y_h (D, N, H))."""
    from onnx import TensorProto, helper, numpy_helper
    G, rng = {"RNN": 1, "GRU": 3, "LSTM": 4}[op], np.random.default_rng(8)
    weights = {"W": (D, G * H, I), "R": (D, G * H, H), "B": (D, 2 * G * H)}
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.5, n) for n, s in weights.items()]
    outs = ["Y", "Y_h", "Y_c"][:3 if op == "LSTM" else 2]
    attrs = {"direction": "bidirectional" if D == 2 else "forward", **attrs}
    node = helper.make_node(op, ["x", "W", "R", "B"], outs, name=f"my_{op.lower()}", hidden_size=H, **attrs)
    shape = [["T", D, "N", H], [D, "N", H]][out]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "N", I])],
                              [helper.make_tensor_value_info(outs[out], TensorProto.FLOAT, shape)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("op, out, attrs", [
    ("LSTM", 0, {}), ("LSTM", 1, {}), ("GRU", 0, {"linear_before_reset": 1}), ("GRU", 1, {"linear_before_reset": 1}),
    ("RNN", 0, {"activations": ["Relu", "Relu"]})])
def test_a_recurrent_node_from_elsewhere_computes_what_onnxruntime_does(tmp_path, op, out, attrs):
    """ONNX Runtime is the reference for the gates' order and the layouts of Y and Y_h."""
    ort = pytest.importorskip("onnxruntime")
    path = recurrent_file(tmp_path / "r.onnx", op, out, **attrs)
    model = npnet.onnx.load(path)
    session = ort.InferenceSession(str(path))
    for T, N in ((5, 2), (3, 4)):
        x = np.random.default_rng(T).standard_normal((T, N, 3)).astype(np.float32)
        np.testing.assert_allclose(model.eval()(x), session.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)
    check_module(model, np.random.default_rng(9).standard_normal((3, 2, 3)), tol=1e-6)


@pytest.mark.parametrize("op, attrs, said", [
    ("GRU", {}, "linear_before_reset=0"), ("LSTM", {"clip": 1.0}, "clip=1.0"),
    ("RNN", {"direction": "reverse", "D": 1}, "direction 'reverse'"),
    ("LSTM", {"activations": ["Sigmoid", "Tanh", "Relu"] * 2}, "activations")])
def test_a_recurrent_node_npnet_cannot_build_is_named(tmp_path, op, attrs, said):
    path = recurrent_file(tmp_path / "r.onnx", op, 0, **attrs)
    with pytest.raises(ValueError, match=f"'my_{op.lower()}' \\({op}\\): .*{said}"):
        npnet.onnx.load(path)


def edited_export(tmp_path, name, in_shape, options, edit):
    """The zoo model exported, then one initializer changed by ``edit(name, array)`` (None: kept)."""
    from onnx import numpy_helper
    path = tmp_path / "edited.onnx"
    npnet.onnx.export(built(name, in_shape, options), inputs(name, in_shape, 2, 0), path)
    proto = onnx.load(str(path))
    for t in proto.graph.initializer:
        new = edit(t.name, numpy_helper.to_array(t))
        if new is not None:
            t.CopyFrom(numpy_helper.from_array(new.astype(np.float32), t.name))
    onnx.save(proto, str(path))
    return path


def test_attention_with_another_scale_is_not_taken_for_multihead_attention(tmp_path):
    """The same operators as the exporter's attention, but q scaled by 0.3, not 1/sqrt(d): not the
    pattern, so the load stops at the first product of two computed values, naming it."""
    path = edited_export(tmp_path, "transformer-rows", (4, 3), GRADCHECK[-1][2],
                         lambda n, a: np.full_like(a, 0.3) if n.endswith("self_attn/scale") else None)
    with pytest.raises(ValueError, match="'encoder.layers.0.self_attn/scores/MatMul' \\(MatMul\\): a product "
                                         "of two computed values"):
        npnet.onnx.load(path)


def test_a_constant_cut_to_length_that_is_not_a_known_table_is_named(tmp_path):
    path = edited_export(tmp_path, "transformer-rows", (4, 3), GRADCHECK[-1][2],
                         lambda n, a: a + 1 if n == "pos.pe" else None)
    with pytest.raises(ValueError, match="'pos/pe_L/Slice' \\(Slice\\): a Slice of a constant to lengths read "
                                         "at run time is built only as"):
        npnet.onnx.load(path)


def test_the_exporters_blocks_come_back_as_npnets_layers(round_trips):
    """A stacked bidirectional LSTM is one nn.LSTM again (batch_first, its layers and directions),
    the attention one MultiheadAttention, the positions one PositionalEncoding, GELU one GELU."""
    def child(case, name):
        return dict(round_trips[case][1].named_modules())[name]

    lstm = child("lstm-rows-3-bi", "rnn")
    assert type(lstm) is nn.LSTM and (lstm.num_layers, lstm.bidirectional, lstm.batch_first) == (3, True, True)
    assert isinstance(child("char-transformer", "encoder.layers.1.self_attn"), nn.MultiheadAttention)
    assert type(child("char-transformer", "pos")) is nn.PositionalEncoding
    assert type(child("char-transformer", "encoder.layers.0.activation")) is nn.GELU
    assert type(child("char-lstm", "lstm")) is nn.LSTM and child("char-lstm", "lstm").num_layers == 2


@pytest.mark.parametrize("opset", [9, 17])
def test_slice_and_pad_of_old_and_new_opsets_compute_what_onnxruntime_does(tmp_path, opset):
    from onnx import TensorProto, helper, numpy_helper
    ort = pytest.importorskip("onnxruntime")
    ints = {"starts": [1, 0], "ends": [2 ** 62, 3], "axes": [2, 3]}
    if opset >= 11:
        inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in
                 list(ints.items()) + [("steps", [2, 1]), ("pads", [0, 1, 0, 0, 0, 2, 1, 0])]]
        nodes = [helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["s"]),
                 helper.make_node("Pad", ["s", "pads"], ["y"])]
    else:
        inits = []
        nodes = [helper.make_node("Slice", ["x"], ["s"], **ints),
                 helper.make_node("Pad", ["s"], ["y"], pads=[0, 1, 0, 0, 0, 2, 1, 0])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list("abcd"))], inits)
    path = tmp_path / "sp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 5)).astype(np.float32)
    np.testing.assert_array_equal(npnet.onnx.load(path)(x), ort.InferenceSession(str(path)).run(None, {"x": x})[0])


def test_two_lstm_nodes_whose_states_are_read_apart_load_as_two_layers(tmp_path):
    """The exporter's chain between two LSTM nodes, but each Y_h read on its own (no Concat):
    not one stacked layer, so two one-layer LSTMs, computing what ONNX Runtime does."""
    from onnx import TensorProto, helper, numpy_helper
    ort = pytest.importorskip("onnxruntime")
    rng, H, D = np.random.default_rng(10), 3, 2
    inits = [numpy_helper.from_array(np.array([0, 0, -1], np.int64), "shape")]
    nodes, x = [], "x"
    for k, inp in enumerate((4, D * H)):
        for n, s in (("W", (D, 4 * H, inp)), ("R", (D, 4 * H, H)), ("B", (D, 8 * H))):
            inits.append(numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.5, f"lstm.{n}_l{k}"))
        nodes += [helper.make_node("LSTM", [x, f"lstm.W_l{k}", f"lstm.R_l{k}", f"lstm.B_l{k}"],
                                   [f"y{k}", f"h{k}", f"c{k}"], hidden_size=H, direction="bidirectional"),
                  helper.make_node("Transpose", [f"y{k}"], [f"t{k}"], perm=[0, 2, 1, 3]),
                  helper.make_node("Reshape", [f"t{k}", "shape"], [f"s{k}"])]
        x = f"s{k}"
    nodes.append(helper.make_node("Add", ["h0", "h1"], ["out"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "N", 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [D, "N", H])], inits)
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    model = npnet.onnx.load(path)
    assert [type(m).__name__ for _, m, _ in model.nodes].count("LSTM") == 2
    x = rng.standard_normal((5, 2, 4)).astype(np.float32)
    np.testing.assert_allclose(model(x), ort.InferenceSession(str(path)).run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)
    check_module(model, rng.standard_normal((3, 2, 4)), tol=1e-6)


@pytest.mark.parametrize("batch_first, norm_first, activation", [(False, False, "relu"), (True, False, "gelu"),
                                                                 (False, True, "relu")])
def test_encoders_outside_the_zoo_round_trip_too(tmp_path, batch_first, norm_first, activation):
    """Sequence-first and post-norm encoders (the zoo's are batch-first, pre-norm): same outputs,
    same state dict, gradients that pass the check."""
    layer = nn.TransformerEncoderLayer(4, 2, 6, dropout=0.0, batch_first=batch_first, norm_first=norm_first,
                                       activation=activation, rng=0)
    model = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(4), rng=0)
    x = np.random.default_rng(1).standard_normal((3, 2, 4)).astype(np.float32)
    npnet.onnx.export(model, x, tmp_path / "enc.onnx", dynamic_batch=False)
    reloaded = npnet.onnx.load(tmp_path / "enc.onnx")
    np.testing.assert_allclose(reloaded(x), model.eval()(x), rtol=1e-5, atol=1e-6)
    assert sorted(reloaded.state_dict()) == sorted(model.state_dict())
    check_module(reloaded, x, tol=1e-6)


@pytest.mark.parametrize("name, in_shape, options, opset", [
    ("transformer-rows", (4, 3), GRADCHECK[-1][2], 18),  # ReduceMean's axes an input
    ("transformer-rows", (4, 3), GRADCHECK[-1][2], 20),  # one Gelu node
    ("resnet32", (3, 4, 4), GRADCHECK[0][2], 13), ("gru-rows", (4, 3), GRADCHECK[-3][2], 13)])
def test_round_trips_at_other_opsets(tmp_path, name, in_shape, options, opset):
    model = built(name, in_shape, options)
    npnet.onnx.export(model, inputs(name, in_shape, 2, 0), tmp_path / "m.onnx", opset=opset)
    reloaded = npnet.onnx.load(tmp_path / "m.onnx")
    x = inputs(name, in_shape, 3, seed=1)
    np.testing.assert_allclose(reloaded.eval()(x), model.eval()(x), rtol=1e-5, atol=1e-6)
    assert sorted(reloaded.state_dict()) == sorted(model.state_dict())


def test_loading_the_sequence_models_leaves_npnets_generator_alone(tmp_path):
    import npnet
    for name, in_shape, options in GRADCHECK[2:]:
        npnet.onnx.export(built(name, in_shape, options), inputs(name, in_shape, 2, 0), tmp_path / "m.onnx")
        before = npnet.init.get_rng(None).bit_generator.state
        npnet.onnx.load(tmp_path / "m.onnx")
        assert npnet.init.get_rng(None).bit_generator.state == before, name
