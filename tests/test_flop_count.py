"""The FLOP count of ``benchmarks/bench_models.py`` (``benchmarks/_common.forward_flops``) against
hand computations from each model's architecture: every Conv2d and Linear is counted, also where a
Sequential fuses its layers (the old counter patched ``Module.__call__`` and missed the fused ones)."""
import sys
from pathlib import Path

import numpy as np
import pytest

from npnet.models import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
_common = pytest.importorskip("_common")


def conv(c_in, c_out, k, out_hw):
    """MACs of a k x k convolution with an out_hw x out_hw output."""
    return c_out * out_hw * out_hw * c_in * k * k


HAND_MACS = {
    # 3 x [conv 3x3 same, pool 2]: 32x32, 16x16, 8x8 outputs; flatten 64*4*4; Linear 1024-64-10
    "cnn-small": conv(3, 32, 3, 32) + conv(32, 64, 3, 16) + conv(64, 64, 3, 8) + 1024 * 64 + 64 * 10,
    # 3 convs at 32x32 (32/64/128), one pool, flatten 128*16*16; Linear 32768-256-10
    "cnn-bn": conv(3, 32, 3, 32) + conv(32, 64, 3, 32) + conv(64, 128, 3, 32) + 32768 * 256 + 256 * 10,
    # stem, 10 convs 16->16 at 32, a stride-2 16->32 at 16 + 9 32->32, a stride-2 32->64 at 8 + 9 64->64
    "resnet32": (conv(3, 16, 3, 32) + 10 * conv(16, 16, 3, 32) + conv(16, 32, 3, 16) + 9 * conv(32, 32, 3, 16)
                 + conv(32, 64, 3, 8) + 9 * conv(64, 64, 3, 8) + 64 * 10),
    "mlp": 3072 * 200 + 200 * 10,
    "linear": 3072 * 10,
}


@pytest.mark.parametrize("name", list(HAND_MACS))
def test_forward_flops_equal_the_hand_count(name):
    model = build_model(name, (3, 32, 32), 10, rng=0)
    assert _common.forward_flops(model, (3, 32, 32)) == 2 * HAND_MACS[name]
    assert not any(m.has_hooks() for m in model.modules())       # the counting hooks are gone
    assert all(m.cache is None for m in model.modules()) and model.training


def test_the_counts_quoted_in_the_issue():
    """cnn-small's convolutions ~2.0 GFLOP and cnn-bn's ~26.5 per batch of 128; ResNet-32 ~69 M MACs."""
    assert 2 * 128 * (HAND_MACS["cnn-small"] - 1024 * 64 - 640) / 1e9 == pytest.approx(2.04, abs=0.01)
    assert 2 * 128 * HAND_MACS["cnn-bn"] / 1e9 == pytest.approx(26.5, abs=0.1)
    assert HAND_MACS["resnet32"] / 1e6 == pytest.approx(68.9, abs=0.1)


def test_record_layer_inputs_sees_every_fused_layer():
    model = build_model("cnn-small", (3, 32, 32), 10, rng=0)
    seen = _common.record_layer_inputs(model, np.zeros((1, 3, 32, 32), np.float32))
    assert [type(m).__name__ for m, _ in seen][:3] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert len(seen) == len([m for m in model.modules() if not m._modules])


FIRST_LAYER_MACS = {"cnn-small": conv(3, 32, 3, 32), "cnn-bn": conv(3, 32, 3, 32),
                    "resnet32": conv(3, 16, 3, 32), "mlp": 3072 * 200, "linear": 3072 * 10}


@pytest.mark.parametrize("name", list(HAND_MACS))
def test_train_flops_leave_out_the_first_layers_input_gradient(name):
    """A train step: forward, weight gradient and input gradient of every layer, but no gradient
    for the images (the first layer's input)."""
    model = build_model(name, (3, 32, 32), 10, rng=0)
    assert _common.train_flops(model, (3, 32, 32)) == 2 * (3 * HAND_MACS[name] - FIRST_LAYER_MACS[name])


def test_a_train_step_does_not_compute_the_first_layers_input_gradient():
    """What train_flops assumes, seen on the model: the first Linear of the mlp is asked for no
    input gradient by ``train_step``, the second is."""
    from npnet import losses, nn, optim
    from npnet.train import train_step
    model = build_model("mlp", (3, 32, 32), 10, rng=0)
    asked = []
    for layer in [m for m in model.modules() if isinstance(m, nn.Linear)]:
        layer.register_full_backward_hook(lambda mod, gin, gout: asked.append(gin[0] is not None))
    x = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    train_step(model, losses.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), x, np.arange(8) % 10)
    assert asked == [True, False]   # backward order: the last Linear first
