"""Model zoo: parameter counts derived by hand, forward/backward on 3x32x32 and 1x28x28,
gradient checks of the blocks with their own backward, summary and errors."""
import numpy as np
import pytest

from npnet.gradcheck import check_module
from npnet.models import MODELS, BasicBlock, MultiKernelConv, ShortcutA, build_model, input_kind, summary

# the image models; the sequence and language models have their own tests (test_sequence_models.py)
IMAGES = [name for name in MODELS if input_kind(name) == "image"]


def conv(cin, cout, k, bias=True):
    return cin * k * k * cout + (cout if bias else 0)


def lin(i, o):
    return i * o + o


def bn(c):
    return 2 * c  # weight and bias; running statistics are buffers


def resnet32_count(cin):
    stem = conv(cin, 16, 3, False) + bn(16)
    block = lambda a, b: conv(a, b, 3, False) + conv(b, b, 3, False) + 2 * bn(b)  # noqa: E731
    stages = (5 * block(16, 16) + block(16, 32) + 4 * block(32, 32)
              + block(32, 64) + 4 * block(64, 64))
    return stem + stages + lin(64, 10)


def mk_block(a, b, ks=(3, 5)):
    hidden = max(a // 4, 4)
    return sum(conv(a, b, k) for k in ks) + lin(a, hidden) + lin(hidden, len(ks)) + bn(b)


# (C, side) -> spatial size after 3 poolings: 32 -> 4, 28 -> 3; after one: 32 -> 16, 28 -> 14.
EXPECTED = {
    "linear": {3: lin(3 * 32 * 32, 10), 1: lin(28 * 28, 10)},
    "mlp": {3: lin(3072, 200) + lin(200, 10), 1: lin(784, 200) + lin(200, 10)},
    "cnn-small": {c: conv(c, 32, 3) + conv(32, 64, 3) + conv(64, 64, 3) + lin(64 * s * s, 64)
                  + lin(64, 10) for c, s in ((3, 4), (1, 3))},
    "cnn-bn": {c: conv(c, 32, 3) + bn(32) + conv(32, 64, 3) + bn(64) + conv(64, 128, 3) + bn(128)
               + lin(128 * s * s, 256) + lin(256, 10) for c, s in ((3, 16), (1, 14))},
    "cnn-5": {c: conv(c, 96, 7) + conv(96, 96, 5) + conv(96, 128, 5) + conv(128, 164, 5)
              + conv(164, 196, 3) + lin(196 * s * s, 512) + lin(512, 256) + lin(256, 10)
              for c, s in ((3, 4), (1, 3))},
    "alexnet": {c: conv(c, 96, 5) + conv(96, 256, 5) + conv(256, 384, 3) + 2 * conv(384, 384, 3)
                + lin(384 * s * s, 4096) + lin(4096, 4096) + lin(4096, 10)
                for c, s in ((3, 4), (1, 3))},
    "resnet32": {c: resnet32_count(c) for c in (3, 1)},
    "mknet": {c: conv(c, 32, 3) + bn(32) + mk_block(32, 64) + mk_block(64, 128)
              + mk_block(128, 256) + lin(256, 10) for c in (3, 1)},
    "mknet6": {c: sum(mk_block(a, b, (1, 3, 5)) for a, b in zip((c, 16, 32, 32, 64, 64),
                                                                 (16, 32, 32, 64, 64, 128)))
               + lin(128, 256) + bn(256) + lin(256, 10) for c in (3, 1)},
}
SHAPES = {3: (3, 32, 32), 1: (1, 28, 28)}


def test_documented_counts():
    assert EXPECTED["cnn-small"][3] == 122_570
    assert EXPECTED["resnet32"][3] == 464_154
    assert EXPECTED["cnn-bn"][3] == 8_485_130
    assert set(EXPECTED) == set(IMAGES)


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("channels", [3, 1])
def test_forward_backward_and_count(name, channels):
    shape = SHAPES[channels]
    model = build_model(name, shape, 10, rng=0)
    assert model.num_parameters() == EXPECTED[name][channels]
    n = 1 if name in ("alexnet", "cnn-5") else 2  # the big ones stay fast with one image
    x = np.random.default_rng(1).standard_normal((n,) + shape).astype(np.float32)
    out = model(x)
    assert out.shape == (n, 10) and out.dtype == np.float32
    model.zero_grad()
    dx = model.backward(np.ones_like(out))
    assert dx.shape == x.shape and dx.dtype == np.float32 and np.isfinite(dx).all()
    grads = [p.grad for p in model.parameters()]
    assert all(g.dtype == np.float32 and np.isfinite(g).all() for g in grads)
    assert any(np.abs(g).sum() > 0 for g in grads)


def test_docstrings_describe_each_model():
    for name, builder in MODELS.items():
        assert builder.__doc__ and f"``{name}``" in builder.__doc__


def test_multi_kernel_block_gradcheck():
    block = MultiKernelConv(2, 2, kernel_sizes=(1, 3, 5), rng=0)
    x = np.random.default_rng(2).standard_normal((2, 2, 4, 5))
    errors = check_module(block, x)
    assert set(errors) >= {"input", "conv1.weight", "conv3.weight", "conv5.weight",
                           "gate.fc1.weight", "gate.fc2.bias"}


def test_multi_kernel_mixes_branches_with_softmax_weights():
    block = MultiKernelConv(2, 3, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(np.float32)
    out = block(x)
    a, ys = block.cache
    np.testing.assert_allclose(a.sum(axis=1), 1, rtol=1e-6)
    mixed = a[:, 0, None, None, None] * ys[0] + a[:, 1, None, None, None] * ys[1]
    np.testing.assert_allclose(out, mixed)


def test_option_a_shortcut_and_basic_block_gradcheck():
    rng = np.random.default_rng(3)
    sc = ShortcutA(2, 4, 2)
    x = rng.standard_normal((2, 2, 5, 5))
    out = sc(x)
    assert out.shape == (2, 4, 3, 3)
    assert np.all(out[:, 0] == 0) and np.all(out[:, 3] == 0)
    np.testing.assert_array_equal(out[:, 1:3], x[:, :, ::2, ::2])
    check_module(ShortcutA(2, 4, 2), x)
    check_module(BasicBlock(1, 2, stride=2, rng=0), rng.standard_normal((3, 1, 4, 5)), tol=1e-5)


def test_seeded_builds_are_identical():
    a, b = build_model("cnn-small", rng=5), build_model("cnn-small", rng=5)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert np.array_equal(va, vb), k


def test_unknown_name_lists_models():
    with pytest.raises(ValueError, match="resnet32") as e:
        build_model("lenet")
    assert all(name in str(e.value) for name in MODELS)


def test_unknown_option_and_bad_shapes():
    with pytest.raises(TypeError, match="valid options: hidden, activation"):
        build_model("mlp", hiden=10)
    with pytest.raises(ValueError, match="too small"):
        build_model("cnn-small", (3, 4, 4))
    with pytest.raises(ValueError, match="in_shape"):
        build_model("linear", (32, 32))


def test_mlp_options():
    model = build_model("mlp", (1, 28, 28), hidden=(50, 20), activation="relu", rng=0)
    assert model.num_parameters() == lin(784, 50) + lin(50, 20) + lin(20, 10)


def test_summary_table():
    model = build_model("cnn-small", rng=0)
    text = summary(model, (3, 32, 32))
    assert "Total parameters: 122,570" in text.splitlines()[-1]
    assert "(64, 4, 4)" in text and "65,600" in text and "Conv2d" in text
    assert model.training and all(m.cache is None for m in model.modules())
    text = summary(build_model("resnet32", (1, 28, 28), rng=0), (1, 28, 28))
    assert "BasicBlock" in text and "463,866" in text


def test_cnn_small_head_activation_changes_only_the_hidden_layer():
    default, relu = build_model("cnn-small", (1, 28, 28), rng=4), \
        build_model("cnn-small", (1, 28, 28), rng=4, head_activation="relu")
    assert [type(m).__name__ for m in default][-3:] == ["Linear", "Sigmoid", "Linear"]
    assert [type(m).__name__ for m in relu][-3:] == ["Linear", "ReLU", "Linear"]
    a, b = default.state_dict(), relu.state_dict()
    assert list(a) == list(b)  # same keys: a Sigmoid-head checkpoint loads into a ReLU head
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])  # the option draws no random numbers
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    assert not np.allclose(default(x), relu(x))
    assert build_model("cnn-small", head_activation="tanh")[-2].__class__.__name__ == "Tanh"
    with pytest.raises(ValueError, match="unknown activation 'softplus'"):
        build_model("cnn-small", head_activation="softplus")


def test_summary_shows_the_head_activation():
    rows = {line.split()[0]: line.split()[1] for line in
            summary(build_model("cnn-small", rng=0, head_activation="relu"), (3, 32, 32)).splitlines()[2:-2]}
    assert rows["11"] == "ReLU" and rows["1"] == "ReLU"
    assert "11     Sigmoid" in summary(build_model("cnn-small", rng=0), (3, 32, 32))


def test_cnn_small_with_relu_head_gradcheck():
    """The whole net's input gradient, which flows back through every layer and the ReLU head,
    against finite differences in float64 (8x8 inputs pool down to 1x1). Parameter gradients of
    the head's layers (Linear, ReLU) are checked in test_layers_gradcheck; checking the 60,000
    parameters of this net here would take minutes."""
    model = build_model("cnn-small", (1, 8, 8), num_classes=3, rng=0, head_activation="relu")
    x = np.random.default_rng(1).standard_normal((2, 1, 8, 8))
    assert check_module(model, x, params=False)["input"] < 1e-6
