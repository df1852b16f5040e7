"""Autotuning (``npnet.kernels.autotune``): each pass of a 3x3 stride-1 convolution takes the
algorithm measured faster, chosen once per shape, kept in an atomic on-disk cache keyed by the
machine setting; the switch restores the fixed rule; concurrent processes share the cache safely."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npnet import kernels as K
from npnet.kernels import autotune

ROOT = str(Path(__file__).resolve().parents[1])


@pytest.fixture
def tuning(tmp_path, monkeypatch):
    """Autotuning on, with an empty cache folder of its own and no choices in memory."""
    monkeypatch.setenv("NPNET_AUTOTUNE_CACHE", str(tmp_path))
    monkeypatch.setitem(autotune._state, "choices", {})
    monkeypatch.setitem(autotune._state, "used", {})
    monkeypatch.setitem(autotune._state, "loaded", None)
    previous = autotune.set_enabled(True)
    yield tmp_path
    autotune.set_enabled(previous)


def data(seed=0, N=2, C=16, O=16, H=10, W=10, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(s).astype(dtype) for s in ((N, C, H, W), (O, C, 3, 3), (O,), (N, O, H, W)))


def test_each_pass_is_chosen_once_and_cached(tuning, monkeypatch):
    x, w, b, dy = data()
    timed = []
    real = autotune._timed
    monkeypatch.setattr(autotune, "_timed", lambda run: (timed.append(1), real(run))[1])
    y = K.conv2d_forward(x, w, b, 1, 1, 1, 1)
    dx, dw, db = K.conv2d_backward(x, w, dy, 1, 1, 1, 1)
    np.testing.assert_allclose(y, K.conv2d_forward_ref(x, w, b, 1, 1, 1, 1, algorithm="im2col"), rtol=1e-4, atol=1e-4)
    rdx, rdw, rdb = K.conv2d_backward_ref(x, w, dy, 1, 1, 1, 1, algorithm="im2col")
    for got, want in ((dx, rdx), (dw, rdw), (db, rdb)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    chosen = autotune.choices()
    assert sorted(k.split()[0] for k in chosen) == sorted(autotune.PASSES)
    assert set(chosen.values()) <= set(K.CONV_ALGORITHMS)
    assert len(timed) == 3 * 2 * 2                            # 3 passes x 2 algorithms x 2 timings
    K.conv2d_forward(x, w, b, 1, 1, 1, 1)
    K.conv2d_backward(x, w, dy, 1, 1, 1, 1)
    assert len(timed) == 12                                   # known shapes are not measured again
    saved = json.loads(Path(autotune.cache_file()).read_text())
    assert saved["choices"] == chosen and saved["setting"] == autotune.machine_setting()
    autotune._state["used"].clear()
    K.conv2d_forward(x[:1], w, b, 1, 1, 1, 1)                 # another batch size: another shape
    assert list(autotune.choices()) == [autotune.shape_key("forward", x[:1], w, 1, 1)]
    assert Path(autotune.cache_file()).parent == tuning and not list(tuning.glob(".*.tmp"))


def test_the_cached_choice_is_what_runs_each_pass_separately(tuning):
    x, w, b, dy = data(1)
    pick = {"forward": "winograd", "input_grad": "im2col", "weight_grad": "winograd"}
    Path(autotune.cache_file()).write_text(json.dumps(
        {"choices": {autotune.shape_key(p, x, w, 1, 1): a for p, a in pick.items()}}))
    Path(autotune.cache_file()).with_name("other.json").write_text("{not json")  # other settings' files
    y = K.conv2d_forward(x, w, b, 1, 1, 1, 1)
    dx, dw, db = K.conv2d_backward(x, w, dy, 1, 1, 1, 1)
    np.testing.assert_array_equal(y, K.conv2d_forward(x, w, b, 1, 1, 1, 1, algorithm="winograd"))
    np.testing.assert_array_equal(dx, K.conv2d_backward(x, w, dy, 1, 1, 1, 1, algorithm="im2col")[0])
    np.testing.assert_array_equal(dw, K.conv2d_backward(x, w, dy, 1, 1, 1, 1, algorithm="winograd")[1])
    assert not np.array_equal(dx, K.conv2d_backward(x, w, dy, 1, 1, 1, 1, algorithm="winograd")[0])
    assert autotune.choices() == {autotune.shape_key(p, x, w, 1, 1): a for p, a in pick.items()}


def test_switched_off_it_is_the_fixed_rule_bit_for_bit(tuning):
    x, w, b, dy = data(2, C=3)                                # 3 input channels: the rule says im2col
    with autotune.disabled():
        y = K.conv2d_forward(x, w, b, 1, 1, 1, 1)
        g = K.conv2d_backward(x, w, dy, 1, 1, 1, 1)
    assert autotune.choices() == {} and autotune.is_enabled()
    np.testing.assert_array_equal(y, K.conv2d_forward(x, w, b, 1, 1, 1, 1, algorithm="im2col"))
    for a, c in zip(g, K.conv2d_backward(x, w, dy, 1, 1, 1, 1, algorithm="im2col")):
        np.testing.assert_array_equal(a, c)


def test_only_the_bias_gradient_and_strided_layers_are_not_tuned(tuning):
    x, w, b, dy = data(3)
    _, _, db = K.conv2d_backward(x, w, dy, 1, 1, 1, 1, need_dx=False, need_dw=False)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-5)
    K.conv2d_forward(x, w, b, 2, 2, 1, 1)                     # stride 2: im2col only
    assert autotune.choices() == {}


def test_concurrent_processes_share_one_valid_cache(tuning):
    code = ("import sys, numpy as np; from npnet import kernels as K\n"
            "H = int(sys.argv[1]); x = np.ones((1, 16, H, H), 'f4'); w = np.ones((16, 16, 3, 3), 'f4')\n"
            "K.conv2d_forward(x, w, None, 1, 1, 1, 1)\n")
    env = {**os.environ, "NPNET_AUTOTUNE": "1", "NPNET_AUTOTUNE_CACHE": str(tuning),
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(h)], env=env) for h in (6, 8, 10, 12)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    files = list(tuning.glob("*.json"))
    assert len(files) == 1 and not list(tuning.glob(".*.tmp"))
    keys = json.loads(files[0].read_text())["choices"]
    assert all(k.startswith("forward (1, 16, ") for k in keys) and 1 <= len(keys) <= 4  # last writer may win


def test_an_unwritable_cache_still_tunes_in_memory(tuning, monkeypatch, caplog):
    blocker = tuning / "file"
    blocker.write_text("")
    monkeypatch.setenv("NPNET_AUTOTUNE_CACHE", str(blocker / "sub"))   # a folder below a file: cannot exist
    x, w, b, _ = data(4)
    K.conv2d_forward(x, w, b, 1, 1, 1, 1)
    assert len(autotune.choices()) == 1 and "could not write" in caplog.text
