"""Weights between npnet and PyTorch: safetensors files both ways, PyTorch state dicts without
``num_batches_tracked``, failed loads that change nothing, and ``import npnet`` staying light.

The PyTorch parts skip without torch; the file format, error and atomicity checks do not need it."""
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import npnet
from npnet import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cnn(lib):
    """The same small CNN in npnet (``lib=npnet.nn``) or PyTorch (``lib=torch.nn``): (4, 3, 12, 12)
    -> (4, 10) through Conv2d, BatchNorm2d, ReLU, MaxPool2d, Flatten, Linear."""
    return lib.Sequential(lib.Conv2d(3, 6, 3, padding=1), lib.BatchNorm2d(6), lib.ReLU(), lib.MaxPool2d(2),
                          lib.Conv2d(6, 8, 3), lib.BatchNorm2d(8), lib.ReLU(), lib.MaxPool2d(2),
                          lib.Flatten(), lib.Linear(8 * 2 * 2, 16), lib.ReLU(), lib.Linear(16, 10))


def images(seed=0):
    return np.random.default_rng(seed).standard_normal((4, 3, 12, 12)).astype(np.float32)


def random_state(model, seed=1):
    """``model``'s state dict with every entry redrawn: BatchNorm statistics far from 0 and 1, so
    that a load which dropped them would show in the logits."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = np.array(7, dtype=np.int64)
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 2.0, value.shape).astype(np.float32)
        else:
            state[key] = (0.5 * rng.standard_normal(value.shape)).astype(np.float32)
    return state


def npnet_logits(model, x):
    with npnet.no_grad():
        return model.eval()(x)


def torch_logits(torch, model, x):
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


def trained_torch_cnn(torch):
    """A PyTorch CNN with its own initialisation and BatchNorm statistics from 3 training-mode
    forwards (num_batches_tracked = 3)."""
    torch.manual_seed(0)
    model = cnn(torch.nn)
    with torch.no_grad():
        for seed in range(3):
            model.train()(torch.from_numpy(2 * images(seed) + 1))
    return model


def assert_close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # float32 convolutions in two libraries


# -- npnet <-> PyTorch through safetensors ------------------------------------------------------------
def test_npnet_file_loads_into_torch_twin_with_equal_logits(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file
    model = cnn(nn)
    model.load_state_dict(random_state(model))
    path = npnet.save(model.state_dict(), tmp_path / "model.safetensors")
    twin = cnn(torch.nn)
    twin.load_state_dict(load_file(path), strict=True)
    for key, value in twin.state_dict().items():  # dtypes and shapes are PyTorch's own
        assert value.dtype == (torch.int64 if key.endswith("num_batches_tracked") else torch.float32), key
    assert twin[1].num_batches_tracked.item() == 7
    x = images()
    assert_close(npnet_logits(model, x), torch_logits(torch, twin, x))


def test_torch_file_loads_into_npnet_with_equal_logits(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    twin = trained_torch_cnn(torch)
    save_file(twin.state_dict(), tmp_path / "twin.safetensors")
    model = cnn(nn)
    assert model.load_state_dict(npnet.load(tmp_path / "twin.safetensors"), strict=True) == ([], [])
    assert int(model[5].num_batches_tracked) == 3
    x = images(5)
    assert_close(npnet_logits(model, x), torch_logits(torch, twin, x))


@pytest.mark.parametrize("via_file", [False, True])
def test_torch_state_dict_without_num_batches_tracked(tmp_path, via_file):
    """An older or hand-made PyTorch state dict has no num_batches_tracked: it loads strictly and
    gives PyTorch's eval-mode outputs; the counters keep their value."""
    torch = pytest.importorskip("torch")
    twin = trained_torch_cnn(torch)
    state = {k: v.numpy() for k, v in twin.state_dict().items() if not k.endswith("num_batches_tracked")}
    if via_file:
        from safetensors.torch import save_file
        save_file({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "old.safetensors")
        state = npnet.load(tmp_path / "old.safetensors")
    model = cnn(nn)
    model.load_state_dict(state, strict=True)
    assert int(model[1].num_batches_tracked) == 0
    x = images(6)
    assert_close(npnet_logits(model, x), torch_logits(torch, twin, x))


def test_round_trip_npnet_torch_npnet_is_exact(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file
    model = cnn(nn)
    model.load_state_dict(random_state(model, seed=4))
    twin = cnn(torch.nn)
    twin.load_state_dict(load_file(npnet.save(model.state_dict(), tmp_path / "a.safetensors")))
    save_file(twin.state_dict(), tmp_path / "b.safetensors")
    back = npnet.load(tmp_path / "b.safetensors")
    for key, value in model.state_dict().items():
        assert back[key].dtype == value.dtype and np.array_equal(back[key], value), key


# -- the file format, without PyTorch -----------------------------------------------------------------
def test_save_load_round_trip_keeps_keys_dtypes_shapes_values(tmp_path):
    model = cnn(nn)
    state = random_state(model)
    path = tmp_path / "sub" / "model.safetensors"  # the folder is created
    assert npnet.save(state, path, metadata={"note": "test"}) == os.fspath(path)
    loaded = npnet.load(path)
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape, key
        assert np.array_equal(loaded[key], value), key
    assert loaded["1.num_batches_tracked"].shape == ()
    from safetensors import safe_open
    with safe_open(path, framework="np") as f:
        assert f.metadata() == {"format": "pt", "note": "test"}
    assert os.listdir(path.parent) == ["model.safetensors"]  # no temporary file left behind


def test_save_accepts_views_and_other_byte_orders(tmp_path):
    a = np.arange(12, dtype=">f4").reshape(3, 4)
    npnet.save({"t": a.T, "s": a[::2, 1:3]}, tmp_path / "v.safetensors")
    loaded = npnet.load(tmp_path / "v.safetensors")
    np.testing.assert_array_equal(loaded["t"], a.T)
    np.testing.assert_array_equal(loaded["s"], a[::2, 1:3])
    assert loaded["t"].dtype == np.float32


def test_failed_save_leaves_the_previous_file(tmp_path):
    path = tmp_path / "model.safetensors"
    npnet.save({"w": np.ones(3, np.float32)}, path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r"npnet.save\(.*model.safetensors\): bad: .*dtype object"):
        npnet.save({"w": np.zeros(3, np.float32), "bad": np.array([None])}, path)
    with pytest.raises(TypeError, match=r"keys must be str"):
        npnet.save({1: np.zeros(3)}, path)
    with pytest.raises(TypeError, match=r"pass model.state_dict\(\)"):
        npnet.save(cnn(nn), path)
    with pytest.raises(TypeError, match=r"metadata must be a dict of str -> str"):
        npnet.save({"w": np.zeros(3)}, path, metadata={"epoch": 3})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.safetensors"]
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OSError, match=r"npnet.save: cannot write .*a_file.*model.safetensors"):
        npnet.save({"w": np.zeros(3)}, blocker / "model.safetensors")


def handmade_file(path, header, data=b""):
    """A safetensors file written by hand: 8-byte little-endian header size, JSON header, bytes."""
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"npnet.load: no such file: .*missing.safetensors"):
        npnet.load(tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match=r"npnet.load: .*garbage.safetensors is not a safetensors file"):
        npnet.load(garbage)
    truncated = tmp_path / "truncated.safetensors"
    npnet.save({"w": np.ones((10, 10), np.float32)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"truncated.safetensors is not a safetensors file"):
        npnet.load(truncated)
    bf16 = handmade_file(tmp_path / "bf16.safetensors",
                         {"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4)
    with pytest.raises(ValueError, match=r"bf16.safetensors.*convert those tensors to float32"):
        npnet.load(bf16)


@pytest.mark.parametrize("damage", ["shape", "float64", "unexpected", "missing", "list"])
def test_failed_load_leaves_model_unchanged(tmp_path, damage):
    model = cnn(nn)
    model.load_state_dict(random_state(model))
    state = random_state(model, seed=9)
    if damage == "shape":
        state["9.weight"] = state["9.weight"][:, :-1]
    elif damage == "float64":
        state["4.bias"] = state["4.bias"].astype(np.float64)  # not an exact cast into float32
    elif damage == "unexpected":
        state["12.weight"] = np.zeros(3, np.float32)
    elif damage == "missing":
        del state["5.running_mean"]
    npnet.save(state, tmp_path / "bad.safetensors")
    before = model.state_dict()
    loaded = npnet.load(tmp_path / "bad.safetensors")
    if damage == "list":
        loaded["0.weight"] = loaded["0.weight"].tolist()  # float64 once read back: refused
    with pytest.raises(ValueError, match=r"Sequential.load_state_dict"):
        model.load_state_dict(loaded)
    after = model.state_dict()
    assert list(after) == list(before)
    for key in before:
        assert after[key].dtype == before[key].dtype and np.array_equal(after[key], before[key]), key


# -- import npnet -------------------------------------------------------------------------------------
def run_python(code):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600, check=True).stdout


def test_import_npnet_is_lazy_and_exposes_submodules():
    out = run_python(
        "import sys, npnet\n"
        "print(sorted(m for m in sys.modules if m.startswith(('npnet.', 'numba', 'scipy', 'matplotlib'))))\n"
        "print(npnet.save.__module__, npnet.load.__module__)\n"
        "import npnet.nn\n"
        "print('npnet.plots' in sys.modules, 'npnet.train' in sys.modules, 'npnet.models' in sys.modules)\n"
        "print(npnet.models.build_model.__name__, npnet.train.Trainer.__name__,"
        " npnet.data.DataLoader.__name__, npnet.plots.__name__, npnet.optim.SGD.__name__,"
        " npnet.nn.CrossEntropyLoss.__module__)\n"
        "print(npnet.no_grad is npnet.nn.no_grad, npnet.manual_seed is npnet.init.manual_seed)\n"
        "print(all(n in dir(npnet) for n in ('models', 'train', 'plots', 'data', 'save', 'nn')))\n")
    assert out.splitlines() == [
        "[]",  # `import npnet` imported no submodule (nor Numba, SciPy or matplotlib)
        "npnet.serialization npnet.serialization",
        "False False False",  # importing npnet.nn does not bring the higher floors either
        "build_model Trainer DataLoader npnet.plots SGD npnet.losses",
        "True True",
        "True"]


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'npnet' has no attribute 'nope'"):
        npnet.nope  # noqa: B018
    assert not hasattr(npnet, "_io_not_there")


# -- the kernels' BLAS threads, set through threadpoolctl ---------------------------------------------
def test_kernels_limit_scipy_blas_only_while_they_run():
    """Importing npnet changes no thread count; inside a kernel SciPy's bundled OpenBLAS (the one
    Numba's np.dot calls) runs 1 thread and every other BLAS, NumPy's included, keeps its count (2
    here, from the environment, so that limiting all of them would show); after the kernel the
    user's SciPy has its 2 threads again."""
    pytest.importorskip("threadpoolctl")
    code = ("import json, numpy, scipy.linalg.cython_blas, threadpoolctl\n"
            "count = lambda: {i['filepath']: i['num_threads'] for i in threadpoolctl.threadpool_info()}\n"
            "before = count()\n"
            "import npnet, npnet.kernels as K\n"
            "after_import = count()\n"
            "inside = K._threads.one_blas_thread(count)()\n"
            "K.conv2d_forward(numpy.ones((2, 3, 8, 8), 'f4'), numpy.ones((4, 3, 3, 3), 'f4'), None, 1, 1, 1, 1)\n"
            "print(json.dumps([K.blas_setup(), before, after_import, inside, count(), numpy.__path__[0] + '.libs']))\n")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600,
                         check=True).stdout
    setup, before, after_import, inside, after_kernel, numpy_libs = json.loads(out)
    if setup["library"] is None:
        pytest.skip("SciPy's bundled OpenBLAS not found; nothing was changed")
    # nothing global at import or after a kernel (Numba's run may load its OpenMP runtime: not compared)
    assert {k: after_import[k] for k in before} == before == {k: after_kernel[k] for k in before}
    assert "scipy" in setup["library"] and setup["threads"] == 1 and inside[setup["library"]] == 1
    assert before[setup["library"]] == 2 and setup["outside"] == 2
    others = {path: n for path, n in inside.items() if path != setup["library"]}
    assert others == {path: n for path, n in before.items() if path != setup["library"]}
    assert all(n == 2 for path, n in others.items() if path.startswith(numpy_libs))  # NumPy's wheel

def test_dir_npnet_shows_only_public_names():
    """What tab completion offers: the public names, the submodules and __version__; not the
    helpers npnet/__init__.py imports (functools, importlib, TYPE_CHECKING) nor the dunders."""
    names = dir(npnet)
    assert {"save", "load", "load_run", "manual_seed", "no_grad", "nn", "optim", "train",
            "__version__"} <= set(names)
    assert [n for n in names if n.startswith("_") and n != "__version__"] == []
    assert not {"functools", "importlib", "pkgutil", "TYPE_CHECKING"} & set(names)
    assert all(hasattr(npnet, n) for n in names)
