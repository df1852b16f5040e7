"""Fusion (``npnet.fuse``, ``nn/fusion.py``; the fused modules of ``nn/fused.py``): the convolution
kernels' fused ReLU against their NumPy references; every fused module against its unfused layers
(outputs and every gradient, train and eval, float32 and float64); what ``print`` shows; state dicts
both ways; every case that must not fuse (hooks, subclasses, other activations); ResNet blocks, and
PyTorch where installed."""
import copy

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import npnet
from npnet import kernels as K, nn
from npnet.gradcheck import check_module
from npnet.models import build_model
from npnet.models.resnet import BasicBlock
from npnet.nn import fused as F
from npnet.nn.fusion import fused_modules
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

# ------------------------------------------------------------------------ fused modules == their layers

def randomize_batchnorm(model, seed=0):
    """BatchNorm statistics and affine parameters far from 0 and 1, so that a wrong fold shows."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean[:] = rng.normal(0, 0.5, m.num_features)
            m.running_var[:] = rng.uniform(0.3, 3.0, m.num_features)
            if m.affine:
                m.weight.data[:] = rng.uniform(-1.5, 1.5, m.num_features)
                m.bias.data[:] = rng.normal(0, 0.5, m.num_features)
    return model


def chain(case, dtype, affine=True):
    """(model, input) of one pattern; every layer's weights and statistics random."""
    rng = np.random.default_rng(1)
    conv = lambda c, o, **k: nn.Conv2d(c, o, 3, padding=1, rng=rng, **k)  # noqa: E731
    models = {
        "conv-relu": (nn.Sequential(conv(3, 8), nn.ReLU()), (3, 3, 6, 6)),
        "conv-relu-winograd": (nn.Sequential(conv(16, 16), nn.ReLU()), (2, 16, 6, 6)),
        "bn2d-relu": (nn.Sequential(nn.BatchNorm2d(5, affine=affine), nn.ReLU()), (3, 5, 4, 4)),
        "bn1d-relu": (nn.Sequential(nn.BatchNorm1d(7, affine=affine), nn.ReLU()), (6, 7)),
        "conv-bn": (nn.Sequential(conv(3, 8, bias=False), nn.BatchNorm2d(8, affine=affine)), (3, 3, 6, 6)),
        "conv-bn-relu": (nn.Sequential(conv(16, 16), nn.BatchNorm2d(16, affine=affine), nn.ReLU()), (2, 16, 6, 6)),
        "block": (nn.Sequential(BasicBlock(8, 8, rng=rng)), (2, 8, 6, 6)),
        "block-stride2": (nn.Sequential(BasicBlock(8, 16, 2, rng=rng)), (2, 8, 6, 6)),
        "block-winograd": (nn.Sequential(BasicBlock(16, 16, rng=rng)), (2, 16, 6, 6)),
    }
    model, shape = models[case]
    model = randomize_batchnorm(model.astype(dtype))
    return model, rng.standard_normal(shape).astype(dtype) + 0.05   # away from ReLU kinks at 0


def step(model, x, dout):
    """(output, dx, {name: grad}) of one forward and backward; gradients zeroed first."""
    model.zero_grad()
    out = model(x)
    dx = model.backward(dout if dout is not None else np.ones_like(out))
    return out, dx, {k: p.grad.copy() for k, p in model.named_parameters()}


FUSED_AS = {"conv-relu": "ConvReLU2d", "conv-relu-winograd": "ConvReLU2d", "bn2d-relu": "BatchNormReLU",
            "bn1d-relu": "BatchNormReLU", "conv-bn": None, "conv-bn-relu": "BatchNormReLU",
            "block": "ResidualReLU", "block-stride2": "ResidualReLU", "block-winograd": "ResidualReLU"}
INFERENCE_AS = dict(FUSED_AS, **{"conv-bn": "ConvBn2d", "conv-bn-relu": "ConvBnReLU2d"})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["train", "eval", "inference"])
@pytest.mark.parametrize("case", list(FUSED_AS))
def test_every_fused_module_equals_its_layers(case, mode, dtype):
    """Output, input gradient, every parameter gradient and (training) the running statistics."""
    plain, x = chain(case, dtype)
    if mode != "train":
        plain.eval()
    fused = npnet.fuse(copy.deepcopy(plain), inference=mode == "inference")
    kinds = [type(m).__name__ for _, m in fused.named_modules() if isinstance(m, (F.Fused, F.ResidualReLU))]
    want = (INFERENCE_AS if mode == "inference" else FUSED_AS)[case]
    assert (kinds[:1] if want else kinds) == ([want] if want else [])
    dout = np.random.default_rng(2).standard_normal(plain(x).shape).astype(dtype)
    plain.load_state_dict(fused.state_dict())          # the call above moved training statistics
    ours, theirs = step(fused, x, dout), step(plain, x, dout)
    exact = dtype == np.float64 or (mode != "inference" and "block" not in case)
    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (2e-5, 2e-6)
    if exact and dtype == np.float32:
        np.testing.assert_array_equal(ours[0], theirs[0])           # the same passes, one fewer
    for got, exp in [(ours[0], theirs[0]), (ours[1], theirs[1])] + [(ours[2][k], theirs[2][k]) for k in theirs[2]]:
        assert got.dtype == exp.dtype == dtype
        np.testing.assert_allclose(got, exp, rtol=rtol, atol=atol * max(1.0, np.abs(exp).max()))
    for k, v in plain.state_dict().items():
        np.testing.assert_allclose(fused.state_dict()[k], v, rtol=1e-6, err_msg=k)
    with npnet.no_grad():
        np.testing.assert_allclose(fused(x), plain(x), rtol=rtol, atol=atol * max(1.0, np.abs(theirs[0]).max()))


@pytest.mark.parametrize("mode", ["train", "inference"])
@pytest.mark.parametrize("case", ["conv-relu", "bn2d-relu", "conv-bn-relu", "block-stride2"])
def test_gradcheck_through_fused_modules(case, mode):
    model, x = chain(case, np.float64)
    if mode == "inference":
        model.eval()
    check_module(npnet.fuse(model, inference=mode == "inference"), x, tol=1e-6)


def test_print_shows_every_fusion_and_the_state_dict_is_unchanged():
    model = build_model("resnet32", (3, 8, 8), 10, rng=0)
    keys = list(model.state_dict())
    npnet.fuse(model)
    text = repr(model)
    assert text.count("ResidualReLU(") == 15 and text.count("BatchNormReLU(") == 16
    assert "(1): BatchNormReLU(" in text and "(2): Merged(into='1')" in text
    assert "(relu1): Merged(into='bn1')" in text and "algorithm='winograd'" in text
    assert list(model.state_dict()) == keys and fused_modules(model)[:2] == ["1+2", "3"]
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in build_model("resnet32", (3, 8, 8), 10, rng=0).named_parameters()]


def test_state_dicts_load_both_ways_strictly():
    plain = randomize_batchnorm(build_model("cnn-bn", (1, 12, 12), 10, rng=0))
    fused = npnet.fuse(build_model("cnn-bn", (1, 12, 12), 10, rng=1))
    fused.load_state_dict(plain.state_dict(), strict=True)
    back = build_model("cnn-bn", (1, 12, 12), 10, rng=2)
    back.load_state_dict(fused.state_dict(), strict=True)
    for k, v in plain.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v)
    x = np.random.default_rng(0).standard_normal((2, 1, 12, 12)).astype(np.float32)
    with npnet.no_grad():
        np.testing.assert_array_equal(fused.eval()(x), plain.eval()(x))


def test_unfuse_puts_back_the_same_layers_and_fusing_twice_changes_nothing():
    model = build_model("resnet32", (3, 8, 8), 10, rng=0)
    layers = list(model.modules())
    npnet.fuse(model)
    once = repr(model)
    assert repr(npnet.fuse(model)) == once
    npnet.unfuse(model.eval())
    assert list(model.modules()) == layers and not fused_modules(model)
    assert not any(m.training for m in model.modules())        # the mode set while fused holds
    npnet.fuse(model, inference=True)
    assert "ConvBnReLU2d(" in repr(model) and "ConvBn2d(" in repr(model)
    npnet.unfuse(model)
    assert list(model.modules()) == layers


def test_folded_modules_refuse_training_and_fold_needs_eval():
    model, x = chain("conv-bn-relu", np.float32)
    with pytest.raises(ValueError, match=r"call model.eval\(\) first"):
        npnet.fuse(model, inference=True)
    npnet.fuse(model.eval(), inference=True)
    model.train()
    with pytest.raises(RuntimeError, match=r"ConvBnReLU2d: folded for inference.*npnet.unfuse"):
        model(x)


class OwnReLU(nn.ReLU):
    def forward(self, x):
        return super().forward(x) * 1.0


class OwnConv(nn.Conv2d):
    def convolve(self, x, *args, **kwargs):
        return super().convolve(x, *args, **kwargs) + 1


class StatsOnlyBN(nn.BatchNorm2d):
    """Overrides how the statistics are taken (as SyncBatchNorm does): its own code still runs fused."""

    def _batch_stats(self, x3):
        self.asked = True
        return super()._batch_stats(x3)


@pytest.mark.parametrize("chain_of, fuses", [
    (lambda: [nn.Conv2d(3, 4, 3), nn.LeakyReLU()], False),      # another activation
    (lambda: [nn.Conv2d(3, 4, 3), OwnReLU()], False),           # a ReLU with its own forward
    (lambda: [OwnConv(3, 4, 3), nn.ReLU()], False),             # a Conv2d with its own convolve
    (lambda: [nn.BatchNorm2d(3), OwnReLU()], False),
    (lambda: [nn.ReLU(), nn.Conv2d(3, 4, 3)], False),           # the wrong order
    (lambda: [StatsOnlyBN(3), nn.ReLU()], True),
])
def test_only_the_plain_layers_fuse(chain_of, fuses):
    model = nn.Sequential(*chain_of())
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    want = model(x)
    npnet.fuse(model)
    assert bool(fused_modules(model)) == fuses
    np.testing.assert_allclose(model(x), want, rtol=1e-6)
    if isinstance(model[0], StatsOnlyBN) or isinstance(getattr(model[0], "layers", [None])[0], StatsOnlyBN):
        assert model[0].layers[0].asked


def test_a_hooked_layer_is_left_unfused_and_fuse_says_so():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.ReLU())
    model[3].register_forward_hook(lambda m, i, o: None)
    with pytest.warns(UserWarning, match=r"2, 3 left unfused: a layer there has a hook"):
        npnet.fuse(model)
    assert fused_modules(model) == ["0+1"]
    block = BasicBlock(4, 4)
    block.relu2.register_full_backward_hook(lambda m, gi, go: None)
    with pytest.warns(UserWarning, match="its ending is left unfused"):
        npnet.fuse(nn.Sequential(block))


def test_relu_runs_once_forward_and_once_backward_per_step_unfused(monkeypatch):
    calls = {"forward": 0, "backward": 0}
    for name in calls:
        real = getattr(nn.ReLU, name)
        monkeypatch.setattr(nn.ReLU, name, lambda self, *a, _r=real, _n=name, **k: calls.__setitem__(_n, calls[_n] + 1) or _r(self, *a, **k))
    model = build_model("cnn-bn", (1, 12, 12), 10, rng=0)
    relus = sum(isinstance(m, nn.ReLU) for m in model.modules())
    out = model(np.random.default_rng(0).standard_normal((2, 1, 12, 12)).astype(np.float32))
    model.backward(np.ones_like(out))
    assert relus > 0 and calls == {"forward": relus, "backward": relus}


def test_fused_resnet_block_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    model = npnet.fuse(randomize_batchnorm(nn.Sequential(BasicBlock(16, 16, 1, rng=rng))).eval(), inference=True)
    block = model[0]
    tconv = [torch.nn.Conv2d(16, 16, 3, padding=1, bias=False) for _ in range(2)]
    tbn = [torch.nn.BatchNorm2d(16) for _ in range(2)]
    layers = [block.conv1.layers[0], block.conv2.layers[0], block.conv1.layers[1], block.conv2.layers[1]]
    for t, m in zip(tconv + tbn, layers):
        t.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in m.state_dict().items()})
    tb = torch.nn.Sequential(tconv[0], tbn[0], torch.nn.ReLU(), tconv[1], tbn[1]).eval()
    x = rand(rng, (4, 16, 10, 10), np.float32)
    with torch.no_grad():
        tx = torch.from_numpy(x)
        want = torch.relu(tb(tx) + tx).numpy()
    with npnet.no_grad():
        np.testing.assert_allclose(model(x), want, rtol=1e-4, atol=1e-5)


def test_layer_stats_refuses_a_fused_model_and_watches_the_unfused_one():
    from npnet import losses, optim
    from npnet.train import LayerStats, Trainer
    model = npnet.fuse(build_model("cnn-bn", (1, 12, 12), 10, rng=0))
    trainer = Trainer(model, losses.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1),
                      callbacks=[LayerStats(1)])
    with pytest.raises(ValueError, match=r"LayerStats watches each layer's own output.*npnet.unfuse"):
        trainer.callbacks[0].on_fit_begin(trainer)
    npnet.unfuse(model)
    trainer.callbacks[0].on_fit_begin(trainer)
    with pytest.warns(UserWarning, match="left unfused: a layer there has a hook"):
        npnet.fuse(model)
    assert fused_modules(model) == []


class _Float64(nn.Module):
    """A shortcut that (wrongly) returns float64: the block must say so, fused or not."""

    def forward(self, x):
        return x.astype(np.float64)

    def backward(self, dout, input_grad=True):
        return dout.astype(np.float32)


@pytest.mark.parametrize("mode", ["plain", "train", "inference"])
def test_a_block_whose_shortcut_differs_is_one_clear_error_fused_or_not(mode):
    block = BasicBlock(8, 8, rng=0)
    block.shortcut = _Float64()
    model = nn.Sequential(block)
    if mode != "plain":
        model = npnet.fuse(model.eval() if mode == "inference" else model, inference=mode == "inference")
        assert fused_modules(model)
    x = np.ones((2, 8, 6, 6), np.float32)
    with pytest.raises(ValueError, match=r"BasicBlock: branch output float32 \(2, 8, 6, 6\) and shortcut "
                                         r"output float64 \(2, 8, 6, 6\) differ"):
        model(x)
