"""Fusion (``npnet/nn/fusion.py``): the convolution kernels' fused ReLU against their NumPy references
(float32 and float64, both algorithms); fused chains (inference and training) against the same model
run layer by layer and with the switch off; every case that must fall back (hooks, subclasses, other
activations, BatchNorm in training mode) listed once; ResNet blocks, and PyTorch where installed."""
import contextlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import npnet
from npnet import kernels as K, nn
from npnet.models import build_model
from npnet.kernels import autotune
from npnet.models.resnet import BasicBlock
from npnet.nn import fusion
from test_kernels import assert_close, geometry, rand

SETTINGS = settings(max_examples=30, deadline=None)
DTYPES = [np.float32, np.float64]


# ------------------------------------------------------------------------ kernels: relu in the output pass

@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(g=geometry(), O=st.integers(1, 5), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_im2col_relu_matches_ref(dtype, g, O, bias, seed):
    N, C, H, W, kh, kw, sh, sw, ph, pw = g
    rng = np.random.default_rng(seed)
    x, w = rand(rng, (N, C, H, W), dtype), rand(rng, (O, C, kh, kw), dtype)
    b = rand(rng, (O,), dtype) if bias else None
    y = K.conv2d_forward(x, w, b, sh, sw, ph, pw, algorithm="im2col", relu=True)
    assert_close(y, K.conv2d_forward_ref(x, w, b, sh, sw, ph, pw, relu=True))
    assert (y >= 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(N=st.integers(1, 3), C=st.integers(1, 6), O=st.integers(1, 6), H=st.integers(1, 11),
       W=st.integers(1, 11), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_winograd_relu_matches_ref(dtype, N, C, O, H, W, bias, seed):
    rng = np.random.default_rng(seed)
    x, w = rand(rng, (N, C, H, W), dtype), rand(rng, (O, C, 3, 3), dtype)
    b = rand(rng, (O,), dtype) if bias else None
    y = K.winograd_forward(x, w, b, 1, 1, relu=True)
    assert_close(y, K.winograd_forward_ref(x, w, b, 1, 1, relu=True))
    assert_close(y, np.maximum(K.conv2d_forward_ref(x, w, b, 1, 1, 1, 1), 0))


@pytest.mark.parametrize("algorithm", ["im2col", "winograd"])
def test_fused_relu_keeps_nan_like_np_maximum(algorithm):
    x = np.ones((1, 2, 4, 4), dtype=np.float32)
    x[0, 0, 1, 1] = np.nan
    w = -np.ones((2, 2, 3, 3), dtype=np.float32)   # every finite output is negative: clamped to 0
    y = K.conv2d_forward(x, w, None, 1, 1, 1, 1, algorithm=algorithm, relu=True)
    ref = np.maximum(K.conv2d_forward_ref(x, w, None, 1, 1, 1, 1), 0)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    assert np.isnan(y).any() and (y[~np.isnan(y)] == 0).all()


# ------------------------------------------------------------------------ fused models == layer by layer

def randomize_batchnorm(model, seed=0):
    """BatchNorm statistics and affine parameters far from 0 and 1, so that a wrong fold shows."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean[:] = rng.normal(0, 0.5, m.num_features)
            m.running_var[:] = rng.uniform(0.3, 3.0, m.num_features)
            if m.affine:
                m.weight.data[:] = rng.uniform(-1.5, 1.5, m.num_features)
                m.bias.data[:] = rng.normal(0, 0.5, m.num_features)
    return model


def layer_by_layer(model, x):
    """The eval forward with gradients enabled: every layer runs on its own (nothing is fused)."""
    out = model.eval()(x)
    model.zero_grad()
    return out


def fused(model, x):
    with npnet.no_grad():
        return model.eval()(x)


def small_net(dtype, bias, affine):
    """Every pattern: Conv-BN-ReLU (im2col and Winograd), Conv-ReLU, Conv-BN, Conv-ReLU-BN."""
    rng = np.random.default_rng(1)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=bias, rng=rng), nn.BatchNorm2d(16, affine=affine),
                        nn.ReLU(),
                        nn.Conv2d(16, 16, 3, padding=1, bias=bias, rng=rng), nn.BatchNorm2d(16, affine=affine),
                        nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 8, 3, stride=2, padding=1, bias=bias, rng=rng), nn.ReLU(),
                        nn.Conv2d(8, 8, 1, bias=bias, rng=rng), nn.BatchNorm2d(8, affine=affine),
                        nn.Conv2d(8, 6, 3, padding=1, rng=rng), nn.ReLU(), nn.BatchNorm2d(6),
                        nn.Flatten(), nn.Linear(6 * 2 * 2, 5, rng=rng))
    return randomize_batchnorm(net.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("affine", [False, True])
def test_fused_sequential_equals_layer_by_layer(dtype, bias, affine):
    net = small_net(dtype, bias, affine)
    x = rand(np.random.default_rng(2), (5, 3, 9, 9), dtype)
    want = layer_by_layer(net, x)
    got = fused(net, x)
    assert got.dtype == dtype
    assert_close(got, want)
    assert all(m.cache is None for m in net.modules())  # nothing kept, as no_grad promises


def test_the_chains_that_fuse():
    net = small_net(np.float32, True, True).eval()
    assert fusion.plan(list(net), training=False) == [
        (0, 3, "conv-bn-relu"), (3, 6, "conv-bn-relu"), (7, 9, "conv-relu"), (9, 11, "conv-bn"),
        (11, 13, "conv-relu")]
    assert fusion.plan(list(net), training=True) == [(1, 3, "bn-relu"), (4, 6, "bn-relu"), (7, 9, "conv-relu"),
                                                     (11, 13, "conv-relu")]
    with npnet.no_grad():
        assert fusion.plan(list(net)) == fusion.plan(list(net), training=False)  # the grad mode decides


def test_a_training_batchnorm_is_not_folded():
    net = small_net(np.float32, True, True).train()
    assert (0, 3, "conv-bn-relu") not in fusion.plan(list(net), training=False)
    x = rand(np.random.default_rng(3), (4, 3, 9, 9), np.float32)
    with npnet.no_grad():
        before = net[1].running_mean.copy()
        net(x)
    assert not np.array_equal(net[1].running_mean, before)          # batch statistics still taken


def manual(mods, x, dout=None):
    """The chain written out by hand: each layer's forward, then each backward in reverse."""
    for m in mods:
        x = m(x)
    if dout is None:
        return x
    for m in reversed(mods):
        dout = m.backward(dout)
    return x, dout


@pytest.mark.parametrize("switch", ["global", "container"])
def test_switching_fusion_off_gives_the_layer_by_layer_path_bit_for_bit(switch):
    net = small_net(np.float32, True, True).eval()
    x = rand(np.random.default_rng(18), (3, 3, 9, 9), np.float32)
    want = manual(list(net), x)
    if switch == "global":
        with fusion.disabled():
            assert fusion.plan(list(net)) == [] and not fusion.is_enabled()
            got = fused(net, x)
        assert fusion.is_enabled()
    else:
        net.fuse = False
        got = fused(net, x)
        assert fusion.plan(list(net), training=False) != []          # the rule still sees the chains
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(fused(small_net(np.float32, True, True), x), want)  # fused rounds otherwise


def _fallback_cases():
    """Each way a chain must fall back: (name, build(net) -> net, index of the altered layer, the grad
    modes in which it must run on its own)."""
    class OwnForwardConv(nn.Conv2d):
        def forward(self, x):
            return super().forward(x) + 100

    class OwnForwardReLU(nn.ReLU):
        def forward(self, x):
            return super().forward(x) * 2

    class OwnBackwardBN(nn.BatchNorm2d):
        def backward(self, dout, input_grad=True):
            return super().backward(dout * 2, input_grad)

    def swap(i, make):
        return lambda net: (setattr(net, str(i), make()), net)[1]

    def hook(i, kind):
        def build(net):
            reg = net[i].register_forward_hook if kind == "forward" else net[i].register_full_backward_hook
            reg(lambda *a: None)
            return net
        return build
    both = (False, True)
    return [
        ("leaky relu after conv-bn", swap(2, lambda: nn.LeakyReLU(0.1)), 2, both),
        ("conv subclass", swap(7, lambda: OwnForwardConv(16, 8, 3, stride=2, padding=1, rng=0)), 7, both),
        ("relu subclass", swap(2, OwnForwardReLU), 2, both),
        ("batchnorm subclass", swap(1, lambda: randomize_batchnorm(OwnBackwardBN(16))), 1, both),
        ("forward hook on conv", hook(0, "forward"), 0, both),
        ("forward hook on batchnorm", hook(1, "forward"), 1, both),
        ("forward hook on relu", hook(2, "forward"), 2, both),
        ("backward hook on relu", hook(2, "backward"), 2, both),
        ("backward hook on batchnorm", hook(1, "backward"), 1, both),
        ("batchnorm in training mode", lambda net: (net[1].train(), net)[1], 1, (False,)),
    ]


@pytest.mark.parametrize("case", _fallback_cases(), ids=lambda c: c[0])
def test_every_fallback_runs_the_layers_own_code(case):
    """A swapped activation, a subclass, a hook or a training-mode BatchNorm: the altered layer is in
    no fused group, and the chain computes what it computes with fusion off (to rounding, since the
    other groups still fuse)."""
    name, build, altered, modes = case
    rng = np.random.default_rng(19)
    x = rand(rng, (3, 3, 9, 9), np.float32)
    dout = rand(rng, (3, 5), np.float32)
    for training in modes:
        net = build(small_net(np.float32, True, True).eval())
        assert all(not (a <= altered < b) for a, b, _ in fusion.plan(list(net), training)), name
        if training:
            (o1, d1, g1, _), (o2, d2, g2, _) = (step_results(net, x, dout, fuse) for fuse in (True, False))
            assert_close(o1, o2)
            assert_close(d1, d2)
            for k in g2:
                assert_close(g1[k], g2[k])
        else:
            got = fused(net, x)
            with fusion.disabled():
                assert_close(got, fused(net, x))


def test_subclasses_with_their_own_forward_do_not_fuse():
    class ShiftedConv(nn.Conv2d):
        def forward(self, x):
            return super().forward(x) + 100                      # fusing would skip this

    class PlainReLU(nn.ReLU):                                   # same forward and backward: fuses
        pass

    rng = np.random.default_rng(14)
    net = nn.Sequential(ShiftedConv(2, 3, 3, rng=rng), nn.BatchNorm2d(3), PlainReLU()).eval()
    x = rand(rng, (2, 2, 5, 5), np.float32)
    assert fusion.plan(list(net), training=False) == []
    assert_close(fused(net, x), layer_by_layer(net, x))
    assert fusion.plan(list(net.train()), training=True) == [(1, 3, "bn-relu")]  # PlainReLU still fuses


@pytest.mark.parametrize("stride", [1, 2])
def test_basic_block_and_resnet32(stride):
    rng = np.random.default_rng(6)
    block = randomize_batchnorm(BasicBlock(16, 32 if stride == 2 else 16, stride, rng=rng))
    x = rand(rng, (3, 16, 8, 8), np.float32)
    assert_close(fused(block, x), layer_by_layer(block, x))
    model = randomize_batchnorm(build_model("resnet32", (3, 16, 16), 10, rng=0))
    x = rand(rng, (4, 3, 16, 16), np.float32)
    assert_close(fused(model, x), layer_by_layer(model, x))


@pytest.mark.parametrize("stride, algorithm", [(1, "im2col"), (1, "winograd"), (1, "winograd4"), (2, "winograd")])
def test_block_ending_adds_the_shortcut_in_conv2s_output_pass(stride, algorithm, monkeypatch, tuning):
    """Inside no_grad() the shortcut is added and relu2 clamps in conv2's output pass (the in-place sum
    afterwards is not used); the result is the layer-by-layer one, for each algorithm of conv2."""
    rng = np.random.default_rng(16)
    block = randomize_batchnorm(BasicBlock(16, 32 if stride == 2 else 16, stride, rng=rng))
    x = rand(rng, (3, 16, 8, 8), np.float32)
    want = layer_by_layer(block, x)
    monkeypatch.setattr(fusion, "add_relu_", lambda *a: pytest.fail("the sum ran after the branch"))
    with autotune.only(algorithm):
        got = fused(block, x)
    assert_close(got, want)
    assert autotune.choices() == {} or set(autotune.choices().values()) == {algorithm}
    assert block.relu2.cache is None and block.conv2.cache is None and block.bn2.cache is None


def test_block_ending_falls_back_where_the_branch_ends_otherwise(monkeypatch):
    """A branch that does not end with Conv2d -> BatchNorm2d (here a BatchNorm with a hook) keeps the
    sum after the branch, with the same result as layer by layer."""
    rng = np.random.default_rng(17)
    block = randomize_batchnorm(BasicBlock(8, 8, 1, rng=rng))
    block.bn2.register_forward_hook(lambda m, inp, out: None)
    x = rand(rng, (2, 8, 6, 6), np.float32)
    calls = []
    real = fusion.add_relu_
    monkeypatch.setattr(fusion, "add_relu_", lambda *a: (calls.append(1), real(*a))[1])
    assert_close(fused(block, x), layer_by_layer(block, x))
    assert calls == [1]


def test_fused_block_still_checks_shapes():
    block = BasicBlock(4, 4, 1, rng=0).eval()
    block.shortcut = nn.AvgPool2d(2)                                 # a shortcut of the wrong size
    with npnet.no_grad(), pytest.raises(ValueError, match="branch output"):
        block(np.zeros((1, 4, 6, 6), dtype=np.float32))


class _Float64(nn.Module):
    """A shortcut that widens its input to float64."""

    def forward(self, x):
        return x.astype(np.float64)


@pytest.mark.parametrize("case", ["wider shortcut", "shortcut of the wrong size"])
def test_block_ending_runs_each_layer_once_where_the_fused_sum_does_not_apply(case):
    """Where the shortcut's output does not suit conv2's output pass, the block still runs each layer
    once, the branch's layers before the shortcut (as layer by layer): the hooks see it."""
    rng = np.random.default_rng(18)
    block = randomize_batchnorm(BasicBlock(4, 4, 1, rng=rng)).eval()
    block.shortcut = _Float64() if case == "wider shortcut" else nn.AvgPool2d(2)
    seen = []
    for name in ("conv1", "bn1", "relu1", "shortcut"):
        getattr(block, name).register_forward_hook(lambda m, inp, out, name=name: seen.append(name))
    x = rand(rng, (2, 4, 6, 6), np.float32)
    with npnet.no_grad():
        if case == "wider shortcut":
            got = block(x)
        else:
            with pytest.raises(ValueError, match="branch output"):
                block(x)
    assert seen == ["conv1", "bn1", "relu1", "shortcut"]
    if case == "wider shortcut":
        want = layer_by_layer(block, x)
        assert got.dtype == want.dtype == np.float64
        assert_close(got.astype(np.float32), want.astype(np.float32))  # the branch ran in float32


def test_fused_resnet_block_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    block = randomize_batchnorm(BasicBlock(16, 16, 1, rng=rng)).eval()
    tconv = [torch.nn.Conv2d(16, 16, 3, padding=1, bias=False) for _ in range(2)]
    tbn = [torch.nn.BatchNorm2d(16) for _ in range(2)]
    for t, m in zip(tconv + tbn, (block.conv1, block.conv2, block.bn1, block.bn2)):
        t.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in m.state_dict().items()})
    tb = torch.nn.Sequential(tconv[0], tbn[0], torch.nn.ReLU(), tconv[1], tbn[1]).eval()
    x = rand(rng, (4, 16, 10, 10), np.float32)
    with torch.no_grad():
        tx = torch.from_numpy(x)
        want = torch.relu(tb(tx) + tx).numpy()
    np.testing.assert_allclose(fused(block, x), want, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------ training: BatchNorm -> ReLU

def bn_relu_net(dtype, affine=True):
    rng = np.random.default_rng(8)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, rng=rng), nn.BatchNorm2d(4, affine=affine), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, rng=rng), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 6, rng=rng), nn.BatchNorm1d(6), nn.ReLU(),
                         nn.Linear(6, 3, rng=rng)).astype(dtype)


def step_results(net, x, dout, fuse):
    """Output, input gradient, parameter gradients and running statistics of one forward/backward;
    ``fuse=False``: the same with fusion switched off, every layer on its own."""
    net.zero_grad()
    with fusion.disabled() if not fuse else contextlib.nullcontext():
        out = net(x)
        dx = net.backward(dout)
    grads = {k: p.grad.copy() for k, p in net.named_parameters()}
    return out, dx, grads, {k: v.copy() for k, v in net.state_dict().items() if "running" in k}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_fused_bn_relu_training_equals_layer_by_layer(dtype, training, affine):
    """Same outputs and running statistics bit for bit, same gradients to rounding."""
    x = rand(np.random.default_rng(9), (5, 3, 6, 6), dtype)
    dout = rand(np.random.default_rng(10), (5, 3), dtype)
    results = []
    for fuse in (True, False):
        net = bn_relu_net(dtype, affine).train(training)
        results.append(step_results(net, x, dout, fuse))
        assert all(m.cache is None for m in net.modules())          # backward released every cache
    (o1, d1, g1, s1), (o2, d2, g2, s2) = results
    np.testing.assert_array_equal(o1, o2)
    assert_close(d1, d2)
    for k in g2:
        assert_close(g1[k], g2[k])
    for k in s2:
        np.testing.assert_array_equal(s1[k], s2[k], err_msg=k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_conv_relu_training_is_bit_identical(dtype):
    """Conv2d -> ReLU (cnn-small's pattern, im2col and Winograd layers): the clamp in the convolution's
    output pass, the ReLU's backward as usual."""
    def net():
        rng = np.random.default_rng(15)
        return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 16, 3, padding=1, rng=rng), nn.ReLU(), nn.Flatten(),
                             nn.Linear(16 * 4 * 4, 3, rng=rng)).astype(dtype)
    x = rand(np.random.default_rng(16), (4, 3, 8, 8), dtype)
    dout = rand(np.random.default_rng(17), (4, 3), dtype)
    (o1, d1, g1, _), (o2, d2, g2, _) = (step_results(net(), x, dout, fuse) for fuse in (True, False))
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(d1, d2)
    for k in g2:
        np.testing.assert_array_equal(g1[k], g2[k], err_msg=k)
    with fusion.disabled():
        np.testing.assert_array_equal(manual(list(net()), x, dout)[1], d1)  # = the chain written by hand


def test_the_pairs_that_fuse_in_training():
    net = bn_relu_net(np.float32)
    assert fusion.plan(list(net), training=True) == [(1, 3, "bn-relu"), (4, 6, "bn-relu"), (8, 10, "bn-relu")]
    net[5].register_full_backward_hook(lambda *a: None)   # a backward hook on the ReLU: kept apart
    assert fusion.plan(list(net), training=True) == [(1, 3, "bn-relu"), (8, 10, "bn-relu")]


def test_gradcheck_through_fused_bn_relu():
    from npnet.gradcheck import check_module
    net = bn_relu_net(np.float64)
    x = rand(np.random.default_rng(12), (4, 3, 6, 6), np.float64)
    assert len(fusion.plan(list(net.train()), training=True)) == 3  # the checked path is the fused one
    check_module(net, x)


def test_a_relu_hook_still_sees_its_own_output_and_gradient():
    net = bn_relu_net(np.float32)
    seen = {}
    net[2].register_forward_hook(lambda m, inp, out: seen.__setitem__("out", out.copy()))
    net[2].register_full_backward_hook(lambda m, gin, gout: seen.__setitem__("dout", gout[0].copy()))
    x = rand(np.random.default_rng(13), (4, 3, 6, 6), np.float32)
    net.train()(x)
    assert (seen["out"] >= 0).all() and fusion.plan(list(net), training=True) == [(4, 6, "bn-relu"), (8, 10, "bn-relu")]
    net.backward(np.ones((4, 3), dtype=np.float32))
    assert seen["dout"].shape == seen["out"].shape


@pytest.mark.parametrize("stride", [1, 2])
def test_block_add_relu_in_training_equals_layer_by_layer(stride, monkeypatch):
    """In training a ResNet block's sum and ReLU run as one pass ("add-relu"): the same output bit for
    bit, the same gradients to rounding, every cache released; it is the one pass that runs."""
    x = rand(np.random.default_rng(19), (3, 8, 6, 6), np.float32)
    dout = rand(np.random.default_rng(20), (3, 16 if stride == 2 else 8, 6 // stride, 6 // stride), np.float32)
    calls = []
    real = K.ops.add_relu
    results = []
    for fuse in (True, False):
        block = BasicBlock(8, 16 if stride == 2 else 8, stride, rng=4)
        with monkeypatch.context() as mp:                           # count the calls of the kernel
            mp.setitem(K.reference.PAIRS, "add_relu", (lambda *a, **k: (calls.append(fuse), real(*a, **k))[1],
                                                       K.reference.PAIRS["add_relu"][1]))
            results.append(step_results(block, x, dout, fuse))
        assert all(m.cache is None for m in block.modules())
    assert calls == [True]
    (o1, d1, g1, _), (o2, d2, g2, _) = results
    np.testing.assert_array_equal(o1, o2)
    assert_close(d1, d2)
    for k in g1:
        assert_close(g1[k], g2[k])
