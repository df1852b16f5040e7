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
    _, dw_only, _ = K.conv2d_backward(x, w, dy, 1, 1, 1, 1, need_dx=False)
    dx_only, _, _ = K.conv2d_backward(x, w, dy, 1, 1, 1, 1, need_dw=False)
    np.testing.assert_allclose(y, K.conv2d_forward_ref(x, w, b, 1, 1, 1, 1, algorithm="im2col"), rtol=1e-4, atol=1e-4)
    rdx, rdw, rdb = K.conv2d_backward_ref(x, w, dy, 1, 1, 1, 1, algorithm="im2col")
    for got, want in ((dx, rdx), (dw, rdw), (db, rdb), (dx_only, rdx), (dw_only, rdw)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    chosen = autotune.choices()
    assert sorted(k.split()[0] for k in chosen) == sorted(autotune.PASSES)
    assert set(chosen.values()) <= set(K.CONV_ALGORITHMS) and K.CONV_ALGORITHMS == autotune.ALGORITHMS
    measured = 4 * len(K.CONV_ALGORITHMS) * autotune.ROUNDS  # 4 passes x each algorithm x rounds
    assert len(timed) == measured
    K.conv2d_forward(x, w, b, 1, 1, 1, 1)
    K.conv2d_backward(x, w, dy, 1, 1, 1, 1)
    assert len(timed) == measured                             # known shapes are not measured again
    saved = json.loads(Path(autotune.cache_file()).read_text())
    assert saved["choices"] == chosen and saved["setting"] == autotune.machine_setting()
    assert saved["setting"]["algorithms"] == list(K.CONV_ALGORITHMS)
    autotune._state["used"].clear()
    K.conv2d_forward(x[:1], w, b, 1, 1, 1, 1)                 # another batch size: another shape
    assert list(autotune.choices()) == [autotune.shape_key("forward", x[:1], w, 1, 1)]
    assert Path(autotune.cache_file()).parent == tuning and not list(tuning.glob(".*.tmp"))


def test_the_cached_choice_is_what_runs_each_pass_separately(tuning):
    x, w, b, dy = data(1)
    pick = {"forward": "winograd", "backward": "winograd4", "input_grad": "im2col", "weight_grad": "winograd"}
    Path(autotune.cache_file()).write_text(json.dumps(
        {"choices": {autotune.shape_key(p, x, w, 1, 1): a for p, a in pick.items()}}))
    Path(autotune.cache_file()).with_name("other.json").write_text("{not json")  # other settings' files
    y = K.conv2d_forward(x, w, b, 1, 1, 1, 1)
    both = K.conv2d_backward(x, w, dy, 1, 1, 1, 1)
    dx = K.conv2d_backward(x, w, dy, 1, 1, 1, 1, need_dw=False)[0]
    dw = K.conv2d_backward(x, w, dy, 1, 1, 1, 1, need_dx=False)[1]
    np.testing.assert_array_equal(y, K.conv2d_forward(x, w, b, 1, 1, 1, 1, algorithm="winograd"))
    for got, want in zip(both, K.conv2d_backward(x, w, dy, 1, 1, 1, 1, algorithm="winograd4")):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(dx, K.conv2d_backward(x, w, dy, 1, 1, 1, 1, algorithm="im2col")[0])
    np.testing.assert_array_equal(dw, K.conv2d_backward(x, w, dy, 1, 1, 1, 1, algorithm="winograd")[1])
    assert not np.array_equal(both[0], dx)                    # different algorithms round differently
    assert autotune.choices() == {autotune.shape_key(p, x, w, 1, 1): a for p, a in pick.items()}


def test_a_cache_without_an_algorithm_is_another_setting(tuning, monkeypatch):
    """A cache written before an algorithm existed is not taken as measured against it, and the CPU is
    named with its family and model ("AMD EPYC" alone names several generations)."""
    import hashlib
    x, w, b, _ = data(5)
    key = autotune.shape_key("forward", x, w, 1, 1)
    old = dict(autotune.machine_setting(), algorithms=["im2col", "winograd"])
    name = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16] + ".json"
    (tuning / name).write_text(json.dumps({"setting": old, "choices": {key: "im2col"}}))
    timed = []
    real = autotune._timed
    monkeypatch.setattr(autotune, "_timed", lambda run: (timed.append(1), real(run))[1])
    K.conv2d_forward(x, w, b, 1, 1, 1, 1)
    assert len(timed) == autotune.ROUNDS * len(K.CONV_ALGORITHMS)  # measured again, against every algorithm
    assert Path(autotune.cache_file()).name != name
    if Path("/proc/cpuinfo").exists():
        assert "cpu family" in autotune.machine_setting()["cpu"]


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


def test_the_candidates_can_be_limited(tuning, monkeypatch):
    """``only`` / ``set_algorithms`` / NPNET_AUTOTUNE_ALGORITHMS limit the choice; one name is used
    unmeasured wherever it applies; each selection has its own cache file; bad names fail clearly."""
    x, w, b, dy = data(6)
    timed = []
    real = autotune._timed
    monkeypatch.setattr(autotune, "_timed", lambda run: (timed.append(1), real(run))[1])
    full_file = autotune.cache_file()
    with autotune.only("im2col", "winograd"):
        K.conv2d_forward(x, w, b, 1, 1, 1, 1)
        assert len(timed) == 2 * autotune.ROUNDS and autotune.cache_file() != full_file
        assert autotune.machine_setting()["algorithms"] == ["im2col", "winograd"]
    with autotune.only("winograd4"):
        y = K.conv2d_forward(x[:1], w, b, 1, 1, 1, 1)
        assert len(timed) == 2 * autotune.ROUNDS              # a single candidate is not measured
    np.testing.assert_array_equal(y, K.conv2d_forward(x[:1], w, b, 1, 1, 1, 1, algorithm="winograd4"))
    assert autotune.algorithms() == autotune.ALGORITHMS
    with pytest.raises(ValueError, match="non-empty selection of"):
        autotune.set_algorithms(["fft"])
    with pytest.raises(ValueError, match="non-empty selection of"):
        autotune.set_algorithms("")
    code = "from npnet.kernels import autotune; print(','.join(autotune.algorithms()))"
    env = {**os.environ, "NPNET_AUTOTUNE_ALGORITHMS": " winograd4, im2col", "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "im2col,winograd4"
