"""nn.Graph (a DAG of modules) and the small ops of nn/ops.py: float64 gradient checks, equality
with the same network built from Sequential and Residual, the state dict, input_grad, errors."""
import numpy as np
import pytest

from npnet import nn
from npnet.gradcheck import check_module, numerical_gradient, relative_error

TOL = 1e-6


def residual_graph(rng):
    """fc2(tanh(fc1(x)) + proj(x)): the input fans out to fc1 and proj."""
    return nn.Graph([("fc1", nn.Linear(4, 5, rng=rng), "input"), ("act", nn.Tanh(), "fc1"),
                     ("proj", nn.Linear(4, 5, rng=rng), "input"), ("sum", nn.Add(), ("act", "proj")),
                     ("fc2", nn.Linear(5, 3, rng=rng), "sum")])


def test_graph_with_a_fan_out_passes_the_gradient_check():
    rng = np.random.default_rng(0)
    check_module(residual_graph(rng), rng.standard_normal((3, 4)), tol=TOL)


def test_cnn_graph_with_batchnorm_concat_and_a_value_read_three_times():
    rng = np.random.default_rng(1)
    g = nn.Graph([
        ("conv", nn.Conv2d(2, 3, 3, padding=1, rng=rng), "input"), ("bn", nn.BatchNorm2d(3), "conv"),
        ("act", nn.Sigmoid(), "bn"), ("cat", nn.Concat(1), ("act", "input")),          # (N, 5, H, W)
        ("gate", nn.Mul(), ("cat", "cat")), ("sum", nn.Add(), ("gate", "cat")),        # cat read 3x
        ("pool", nn.GlobalAvgPool2d(), "sum"), ("fc", nn.Linear(5, 2, rng=rng), "pool")])
    check_module(g, rng.standard_normal((3, 2, 5, 4)), tol=TOL)
    check_module(g.eval(), rng.standard_normal((3, 2, 5, 4)), tol=TOL)


def check_binary(op, shape_a, shape_b, seed=0):
    """The op's two gradients against finite differences of sum(op(a, b) * dout)."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    dout = rng.standard_normal(np.broadcast_shapes(shape_a, shape_b))
    op(a, b)
    da, db = op.backward(dout)
    assert da.shape == a.shape and db.shape == b.shape

    def f():
        return float(np.sum(op(a, b) * dout))

    for name, analytic, x in (("a", da, a), ("b", db, b)):
        assert relative_error(analytic, numerical_gradient(f, x)) < TOL, name


@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((2, 3, 4, 4), (1, 3, 1, 1)), ((2, 3, 4), (4,)),
                                    ((5,), (2, 1, 5)), ((2, 1, 3), (1, 4, 1)), ((3, 2), ())])
@pytest.mark.parametrize("op", [nn.Add, nn.Mul])
def test_add_and_mul_with_broadcasting_pass_the_gradient_check(op, shapes):
    check_binary(op(), *shapes)


def test_broadcast_gradient_through_a_graph_squeeze_excite_style():
    """x * sigmoid(fc(mean over H, W)), the gate (N, C, 1, 1) broadcast over the image."""
    rng = np.random.default_rng(2)
    g = nn.Graph([("pool", nn.GlobalAvgPool2d(), "input"), ("fc", nn.Linear(3, 3, rng=rng), "pool"),
                  ("act", nn.Sigmoid(), "fc"), ("gate", nn.Reshape((0, 0, 1, 1)), "act"),
                  ("scale", nn.Mul(), ("input", "gate"))])
    check_module(g, rng.standard_normal((2, 3, 4, 5)), tol=TOL)


@pytest.mark.parametrize("layer, shape", [
    (nn.Reshape((0, -1)), (2, 3, 4)), (nn.Reshape((3, 0, 2, -1)), (6, 2, 4)),
    (nn.Transpose((0, 2, 3, 1)), (2, 3, 4, 5)), (nn.Transpose((1, 0)), (3, 4))])
def test_reshape_and_transpose_pass_the_gradient_check(layer, shape):
    check_module(layer, np.random.default_rng(3).standard_normal(shape), tol=TOL)


def test_graph_equals_the_same_network_built_from_sequential_and_residual():
    rng = np.random.default_rng(4)
    seq = nn.Sequential(nn.Linear(4, 5, rng=rng),
                        nn.Residual(nn.Sequential(nn.Linear(5, 5, rng=rng), nn.ReLU()), nn.Linear(5, 5, rng=rng)),
                        nn.Tanh(), nn.Linear(5, 3, rng=rng))
    g = nn.Graph([("0", nn.Linear(4, 5), "input"), ("1.branch.0", nn.Linear(5, 5), "0"),
                  ("1.branch.1", nn.ReLU(), "1.branch.0"), ("1.shortcut", nn.Linear(5, 5), "0"),
                  ("1", nn.Add(), ("1.branch.1", "1.shortcut")), ("2", nn.Tanh(), "1"), ("3", nn.Linear(5, 3), "2")])
    g.load_state_dict(seq.state_dict())  # the same keys: dotted node names keep nested names
    assert list(g.state_dict()) == list(seq.state_dict())
    x = rng.standard_normal((6, 4)).astype(np.float32)
    dout = rng.standard_normal((6, 3)).astype(np.float32)
    y1, y2 = seq(x), g(x)
    dx1, dx2 = seq.backward(dout), g.backward(dout)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_allclose(dx1, dx2, rtol=1e-6, atol=1e-7)
    for (name, p), q in zip(seq.named_parameters(), g.parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-6, atol=1e-7, err_msg=name)


def test_state_dict_round_trip_astype_and_modes():
    g1, g2 = residual_graph(np.random.default_rng(5)), residual_graph(np.random.default_rng(6))
    x = np.random.default_rng(7).standard_normal((2, 4)).astype(np.float32)
    assert not np.allclose(g1(x), g2(x))
    g2.load_state_dict(g1.state_dict())
    np.testing.assert_array_equal(g1(x), g2(x))
    assert [k for k, _ in g1.named_modules()] == ["", "fc1", "act", "proj", "sum", "fc2"]
    assert g1.astype(np.float64).dtype == np.float64 and g1["fc1"].weight.data.dtype == np.float64
    assert not any(m.training for m in g1.eval().modules())


def test_input_grad_false_gives_the_same_parameter_gradients_and_skips_the_untrainable_front():
    rng = np.random.default_rng(8)
    calls = []
    g = nn.Graph([("act", nn.Tanh(), "input"), ("fc1", nn.Linear(4, 5, rng=rng), "act"),
                  ("fc2", nn.Linear(4, 5, rng=rng), "input"), ("sum", nn.Add(), ("fc1", "fc2"))])
    g["act"].register_full_backward_hook(lambda m, dx, dout: calls.append(dx))
    x, dout = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((3, 5)).astype(np.float32)
    g(x)
    assert g.backward(dout).shape == x.shape and len(calls) == 1
    full = [p.grad.copy() for p in g.parameters()]
    g.zero_grad()
    g(x)
    assert g.backward(dout, input_grad=False) is None
    assert len(calls) == 1  # Tanh in front of the first Linear: not visited
    for a, b in zip(full, g.parameters()):
        np.testing.assert_array_equal(a, b.grad)


def test_print_shows_each_node_with_its_inputs():
    text = repr(residual_graph(np.random.default_rng(0)))
    assert "sum = Add()(act, proj)" in text and text.startswith("Graph(\n  input: input\n  fc1 = Linear(")


def test_forward_under_no_grad_keeps_no_cache_and_backward_then_says_so():
    g = residual_graph(np.random.default_rng(0))
    with nn.no_grad():
        g(np.ones((2, 4), np.float32))
    assert all(m.cache is None for m in g.modules())
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward"):
        g.backward(np.ones((2, 3), np.float32))


@pytest.mark.parametrize("nodes, error, said", [
    ([("a", nn.ReLU(), "x")], ValueError, "node 'a' reads 'x', which is neither the input 'input' nor an earlier"),
    ([("a", nn.ReLU(), "b"), ("b", nn.ReLU(), "input")], ValueError, "node 'a' reads 'b'.*topological order"),
    ([("a", nn.ReLU(), "a")], ValueError, "node 'a' reads its own output \\(a cycle\\)"),
    ([("a", nn.ReLU(), "input"), ("a", nn.ReLU(), "a")], ValueError, "node 1: the name 'a' is already taken"),
    ([("train", nn.ReLU(), "input")], ValueError, "'train' is the name of a Graph attribute"),
    ([("a b", nn.ReLU(), "input")], ValueError, "node names are words"),
    ([("a", nn.ReLU(), ("input", "input"))], TypeError, "node 'a' reads 2 value\\(s\\).*ReLU.forward"),
    ([("a", nn.ReLU(), "input"), ("b", nn.ReLU(), "input")], ValueError, "\\['a'\\] read by no node"),
    ([("a", np.ones(3), "input")], TypeError, "node 'a': expected a Module, got ndarray"),
    ([], ValueError, "needs at least one node")])
def test_bad_graphs_get_a_clear_error(nodes, error, said):
    with pytest.raises(error, match=said):
        nn.Graph(nodes)


def test_ops_name_themselves_in_errors():
    with pytest.raises(ValueError, match="Add\\(\\): shapes \\(2, 3\\) and \\(4,\\) do not broadcast"):
        nn.Add()(np.ones((2, 3)), np.ones(4))
    with pytest.raises(TypeError, match="Mul\\(\\): inputs of dtypes \\['float32', 'float64'\\]"):
        nn.Mul()(np.ones(3, np.float32), np.ones(3))
    with pytest.raises(ValueError, match="Reshape\\(shape=\\(0, 5\\)\\): cannot reshape input of shape \\(2, 3\\)"):
        nn.Reshape((0, 5))(np.ones((2, 3)))
    with pytest.raises(ValueError, match="Concat\\(dim=1\\): shapes \\[\\(2, 3\\), \\(3, 3\\)\\] differ outside"):
        nn.Concat(1)(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="Transpose: dims must be a permutation"):
        nn.Transpose((0, 0))


def test_hooks_see_the_graph_and_its_multi_input_nodes():
    g = residual_graph(np.random.default_rng(9))
    seen = []
    g.register_forward_hook(lambda m, args, out: seen.append(("graph", len(args), out.shape)))
    g["sum"].register_forward_hook(lambda m, args, out: seen.append(("sum", len(args), out.shape)))
    g["sum"].register_full_backward_hook(lambda m, dx, dout: seen.append(("sum-back", len(dx[0]), dout[0].shape)))
    y = g(np.ones((2, 4), np.float32))
    g.backward(np.ones_like(y))
    assert seen == [("sum", 2, (2, 5)), ("graph", 1, (2, 3)), ("sum-back", 2, (2, 5))]


@pytest.mark.parametrize("layer, shape", [
    (nn.Slice([0, 0], [2 ** 62, 2 ** 62], axes=[2, 3], steps=[2, 2]), (2, 3, 5, 4)),  # ResNet's option A
    (nn.Slice([1], [-1], axes=[-1]), (2, 3, 5)), (nn.Slice([1, 0], [3, 2]), (4, 3)),
    (nn.Pad([0, 2, 0, 0, 0, 1, 0, 0]), (2, 3, 2, 2)), (nn.Pad([1, 0, 2, 3], value=0.5), (2, 3))])
def test_slice_and_pad_pass_the_gradient_check(layer, shape):
    check_module(layer, np.random.default_rng(5).standard_normal(shape), tol=TOL)


def test_slice_and_pad_compute_onnx_s_slice_and_pad():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(nn.Slice([-3, 1], [2 ** 62, 4], axes=[2, 0])(x), x[1:4, :, -3:])
    np.testing.assert_array_equal(nn.Slice([0], [3], axes=[1], steps=[2])(x), x[:, 0:3:2])
    padded = nn.Pad([0, 1, 0, 0, 2, 0])(x)
    assert padded.shape == (2, 6, 4) and padded[:, 0].sum() == 0 and (padded[:, 1:4] == x).all()
    with pytest.raises(ValueError, match="steps must be positive"):
        nn.Slice([0], [1], steps=[-1])
    with pytest.raises(ValueError, match="non-negative"):
        nn.Pad([0, -1])


def test_a_recurrent_node_read_by_two_items_gets_the_sum_of_their_gradients():
    """An LSTM's output sequence and its h_n read apart (nn.Item), joined again: the graph adds
    the two gradient structures ``(d_output, (None, None))`` and ``(None, (d_h_n, None))``."""
    rng = np.random.default_rng(6)
    g = nn.Graph([("lstm", nn.LSTM(3, 4, batch_first=True, rng=rng), "input"),
                  ("seq", nn.Item((0,)), "lstm"), ("last", nn.Slice([-1], [2 ** 62], axes=[1]), "seq"),
                  ("h_n", nn.Item((1, 0)), "lstm"), ("h_nt", nn.Transpose((1, 0, 2)), "h_n"),
                  ("sum", nn.Add(), ("last", "h_nt")), ("flat", nn.Reshape((0, -1)), "sum"),
                  ("fc", nn.Linear(4, 2, rng=rng), "flat")])
    check_module(g, rng.standard_normal((2, 5, 3)), tol=TOL)


def test_an_item_names_a_missing_place():
    with pytest.raises(ValueError, match="no item \\(1, 2\\)"):
        nn.Item((1, 2))((np.zeros(2), (np.zeros(2), np.zeros(2))))
