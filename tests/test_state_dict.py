"""State dicts with PyTorch's names, shapes and ``load_state_dict`` semantics (strict, a missing
``num_batches_tracked``, exact casts only, a failed load changes nothing)."""
import numpy as np
import pytest

from npnet import nn
from test_module import small_model


def rand(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def test_state_dict_uses_pytorch_names_and_shapes():
    sd = small_model().state_dict()
    assert list(sd) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                        "1.running_var", "1.num_batches_tracked", "6.weight", "6.bias"]
    assert sd["0.weight"].shape == (2, 1, 3, 3) and sd["6.weight"].shape == (3, 8)
    assert sd["1.num_batches_tracked"].dtype == np.int64


def test_batchnorm_buffers_stay_in_state_dict_after_training_steps():
    model = small_model()
    keys = list(model.state_dict())
    for _ in range(2):
        model(np.random.default_rng(0).standard_normal((4, 1, 4, 4)).astype(np.float32))
    assert list(model.state_dict()) == keys
    assert model.state_dict()["1.running_mean"].any()


def test_load_state_dict_round_trip_gives_same_outputs():
    a, b = small_model(0).eval(), small_model(1).eval()
    x = np.random.default_rng(2).standard_normal((2, 1, 4, 4)).astype(np.float32)
    assert not np.allclose(a(x), b(x))
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x), b(x))


def test_load_state_dict_lists_every_problem():
    model = small_model()
    sd = model.state_dict()
    del sd["0.bias"]
    sd["extra.weight"] = np.zeros(1)
    sd["6.weight"] = np.zeros((4, 8))
    with pytest.raises(ValueError) as err:
        model.load_state_dict(sd)
    msg = str(err.value)
    assert "missing keys: 0.bias" in msg and "unexpected keys: extra.weight" in msg
    assert "6.weight: shape mismatch, expected (3, 8), got (4, 8)" in msg


def bn_model():
    return nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2, rng=1))


def arrays(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_missing_num_batches_tracked_loads_and_keeps_the_current_value():
    src, dst = bn_model(), bn_model()
    src[1].num_batches_tracked[...] = 7
    dst[1].num_batches_tracked[...] = 3
    sd = src.state_dict()
    del sd["1.num_batches_tracked"]
    assert dst.load_state_dict(sd) == ([], [])
    assert int(dst[1].num_batches_tracked) == 3
    np.testing.assert_array_equal(dst[1].running_var, src[1].running_var)


def test_strict_false_returns_missing_and_unexpected_keys():
    model = bn_model()
    sd = model.state_dict()
    del sd["3.bias"]
    sd["head.weight"] = np.zeros(2, np.float32)
    result = model.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["3.bias"] and result.unexpected_keys == ["head.weight"]


@pytest.mark.parametrize("bad, fragment", [
    ({"0.weight": np.zeros((2, 1, 3, 3), np.float64)}, "0.weight: dtype float64 does not convert exactly"),
    ({"3.bias": [0.5, 0.25]}, "3.bias: dtype float64"),
    ({"3.weight": np.zeros((3, 8), np.float32)}, "3.weight: shape mismatch, expected (2, 8), got (3, 8)"),
    ({"1.num_batches_tracked": np.array(2.5)}, "1.num_batches_tracked: dtype float64"),
    ({"extra": np.zeros(1, np.float32)}, "unexpected keys: extra"),
])
def test_a_failed_load_names_the_key_and_changes_nothing(bad, fragment):
    model = bn_model()
    before = arrays(model)
    sd = {k: v + 1 if v.dtype.kind == "f" else v + 1 for k, v in model.state_dict().items()}
    sd.update(bad)
    with pytest.raises(ValueError) as err:
        model.load_state_dict(sd)
    assert fragment in str(err.value)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_exact_casts_are_accepted():
    model = bn_model()
    sd = model.state_dict()
    sd["3.bias"] = np.array([1, -2])  # int64 that float32 represents exactly
    sd["1.num_batches_tracked"] = np.array(4, np.int32)
    model.load_state_dict(sd)
    assert model[3].bias.data.dtype == np.float32 and model[3].bias.data.tolist() == [1.0, -2.0]
    assert model[1].num_batches_tracked.dtype == np.int64 and int(model[1].num_batches_tracked) == 4
    wide = bn_model().astype(np.float64)
    wide.load_state_dict(model.state_dict())  # float32 -> float64 is exact
    assert wide[0].weight.data.dtype == np.float64


def test_an_inexact_integer_cast_is_refused():
    model = bn_model()
    sd = model.state_dict()
    sd["3.bias"] = np.array([2**24 + 1, 0])  # not representable in float32
    with pytest.raises(ValueError, match="3.bias: dtype int64 does not convert exactly"):
        model.load_state_dict(sd)
