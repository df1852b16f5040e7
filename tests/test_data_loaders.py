"""Dataset loaders: official file layouts written here, a hostile pickle, verified downloads from a
local HTTP server on 127.0.0.1, the embedded mini set and (if installed) Debian's Fashion-MNIST."""
import functools
import gzip
import hashlib
import http.server
import copy
import importlib.util
import io
import os
import pickle
import shutil
import socket
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

import npnet.data as data
from npnet.data import cifar, fashion_mnist, mini
from npnet.data import ChecksumError, DatasetNotFoundError

REPO = Path(__file__).resolve().parents[1]
DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def md5(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving `tmp_path / "srv"`; yields (base_url, folder)."""
    folder = tmp_path / "srv"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=folder))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", folder
    httpd.shutdown()
    httpd.server_close()


def closed_port_url(name):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


# ----------------------------------------------------------------------------------------- CIFAR-10

class Py2Pickler(pickle._Pickler):
    """Pickles like Python 2's cPickle did for the official batches: bytes become Python 2 `str`
    (SHORT_BINSTRING / BINSTRING, read back as latin1 text) and numpy's array rebuilder is named
    `numpy.core.multiarray._reconstruct`, its numpy 1.x home."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        if obj is np.ndarray.__reduce__(np.zeros(0))[0]:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def py2_dumps(obj):
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def write_cifar(root, kind, n=12, seed=0):
    """Write CIFAR-10 in the official `kind` layout (n images per batch); return the 4 arrays."""
    rng = np.random.default_rng(seed)
    folder = root / cifar._FOLDERS[kind]
    folder.mkdir(parents=True)
    parts = [(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n))
             for _ in range(6)]
    for i, (name, (x, y)) in enumerate(zip(cifar._BATCHES[kind], parts)):
        if kind == "python":  # text as Python 2 str, like the official files
            batch = {b"batch_label": name.encode(), b"labels": y.tolist(), b"data": x.reshape(n, 3072),
                     b"filenames": [f"img_{i}_{j}.png".encode() for j in range(n)]}
            # the test batch as Python 3 would re-pickle it, to cover both kinds of file
            blob = pickle.dumps(batch, protocol=2) if name == "test_batch" else py2_dumps(batch)
            (folder / name).write_bytes(blob)
        else:
            records = np.concatenate([y[:, None].astype(np.uint8), x.reshape(n, -1)], axis=1)
            (folder / name).write_bytes(records.tobytes())
    meta = {b"label_names": [c.encode() for c in data.CLASSES["cifar10"]],
            b"num_cases_per_batch": n, b"num_vis": 3072}
    if kind == "python":
        (folder / "batches.meta").write_bytes(py2_dumps(meta))
    else:
        (folder / "batches.meta.txt").write_text("\n".join(data.CLASSES["cifar10"]) + "\n\n")
    xs, ys = zip(*parts)
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5]


def to_archive(root, kind):
    """Pack the extracted folder into its official .tar.gz name and remove the folder."""
    folder, archive = root / cifar._FOLDERS[kind], root / cifar._ARCHIVES[kind]
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    shutil.rmtree(folder)
    return archive


def assert_same(loaded, expected):
    assert len(loaded) == 4
    for got, want in zip(loaded, expected):
        np.testing.assert_array_equal(got, want)
    assert loaded.x_train.dtype == np.uint8 and loaded.y_train.dtype == np.int64
    assert loaded.y_test.dtype == np.int64


@pytest.mark.parametrize("kind", ["python", "binary"])
def test_cifar_extracted_folder_loads_back(tmp_path, kind):
    expected = write_cifar(tmp_path, kind)
    loaded = data.load_cifar10(tmp_path, download=False)
    assert_same(loaded, expected)
    assert loaded.x_train.shape == (60, 3, 32, 32) and loaded.x_test.shape == (12, 3, 32, 32)
    assert loaded.classes == data.CLASSES["cifar10"] and loaded.classes[0] == "airplane"
    assert copy.deepcopy(loaded).classes == loaded.classes


@pytest.mark.parametrize("kind", ["python", "binary"])
def test_cifar_archive_loads_back(tmp_path, monkeypatch, kind):
    expected = write_cifar(tmp_path, kind, seed=1)
    archive = to_archive(tmp_path, kind)
    monkeypatch.setitem(data.CIFAR10_MD5, kind, md5(archive))
    assert_same(data.load_cifar10(tmp_path, download=False), expected)


def test_cifar_planes_are_rgb():
    x = np.zeros((1, 3, 32, 32), np.uint8)
    x[0, 0, 0, 1], x[0, 2, 31, 31] = 7, 9  # red at (0, 1), blue at (31, 31)
    blob = pickle.dumps({"data": x.reshape(1, -1), "labels": [3]}, protocol=2)
    images, labels = cifar._parse_python(blob, "batch")
    assert images[0, 0, 0, 1] == 7 and images[0, 2, 31, 31] == 9 and images.sum() == 16
    assert labels.tolist() == [3]


def test_cifar_archive_checksum_mismatch_is_reported(tmp_path):
    write_cifar(tmp_path, "python")
    archive = to_archive(tmp_path, "python")
    with pytest.raises(ChecksumError, match=r"cifar-10-python\.tar\.gz.*expected c58f3010"):
        data.load_cifar10(tmp_path, download=False)
    assert archive.is_file()  # the user's own file is reported, not deleted


class Hostile:
    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def hostile_payloads(marker):
    return [Hostile(os.system, f"touch {marker}"),
            Hostile(exec, f"open({str(marker)!r}, 'w').close()"),
            {"data": Hostile(os.system, f"touch {marker}"), "labels": [0]}]


@pytest.mark.parametrize("which", [0, 1, 2])
def test_hostile_payloads_are_live(tmp_path, which):
    """Control: a plain unpickler does run the payloads, so the refusal test below means something."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(hostile_payloads(marker)[which], protocol=2))
    assert marker.exists()


@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.parametrize("packed", [False, True])
def test_cifar_hostile_pickle_is_refused_without_running(tmp_path, monkeypatch, which, packed):
    root, marker = tmp_path / "data", tmp_path / "pwned"
    write_cifar(root, "python")
    payload = hostile_payloads(marker)[which]
    (root / "cifar-10-batches-py" / "data_batch_2").write_bytes(pickle.dumps(payload, protocol=2))
    if packed:
        monkeypatch.setitem(data.CIFAR10_MD5, "python", md5(to_archive(root, "python")))
    with pytest.raises(ValueError, match=r"data_batch_2.*refused"):
        data.load_cifar10(root, download=False)
    assert not marker.exists()


def test_cifar_rejects_malformed_batch(tmp_path):
    write_cifar(tmp_path, "python")
    bad = {"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4}
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(ValueError, match=r"test_batch.*\(N, 3072\).*\(4, 100\)"):
        data.load_cifar10(tmp_path, download=False)


def test_cifar_download_from_local_server(tmp_path, monkeypatch, server):
    base, srv = server
    expected = write_cifar(srv, "python", seed=2)
    archive = to_archive(srv, "python")
    monkeypatch.setitem(data.CIFAR10_URLS, "python", base + archive.name)
    monkeypatch.setitem(data.CIFAR10_MD5, "python", md5(archive))
    root = tmp_path / "cache"
    assert_same(data.load_cifar10(root, progress=False), expected)
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz"]
    assert md5(root / "cifar-10-python.tar.gz") == md5(archive)


def test_cifar_corrupt_download_leaves_nothing(tmp_path, monkeypatch, server):
    base, srv = server
    (srv / "cifar-10-python.tar.gz").write_bytes(b"not the archive you are looking for")
    monkeypatch.setitem(data.CIFAR10_URLS, "python", base + "cifar-10-python.tar.gz")
    root = tmp_path / "cache"
    with pytest.raises(ChecksumError, match=r"download of http://127\.0\.0\.1.*expected c58f3010"):
        data.load_cifar10(root, progress=False)
    assert list(root.iterdir()) == []


def test_cifar_http_error_leaves_nothing(tmp_path, monkeypatch, server):
    base, _ = server
    monkeypatch.setitem(data.CIFAR10_URLS, "python", base + "missing.tar.gz")
    root = tmp_path / "cache"
    with pytest.raises(DatasetNotFoundError, match="HTTP 404"):
        data.load_cifar10(root, progress=False)
    assert list(root.iterdir()) == []


def test_cifar_offline_error_names_root_and_remedy(tmp_path, monkeypatch):
    monkeypatch.setitem(data.CIFAR10_URLS, "python", closed_port_url("cifar-10-python.tar.gz"))
    for kwargs in ({"download": False}, {"progress": False}):
        with pytest.raises(DatasetNotFoundError) as info:
            data.load_cifar10(tmp_path, **kwargs)
        message = str(info.value)
        assert str(tmp_path) in message and "cifar-10-batches-py/" in message
        assert "NPNET_DATA" in message and "c58f30108f718f92721af3b95e74349a" in message
    assert list(tmp_path.iterdir()) == []


def test_default_root_follows_npnet_data(tmp_path, monkeypatch):
    monkeypatch.setenv("NPNET_DATA", str(tmp_path))
    assert data.resolve_root() == tmp_path
    monkeypatch.delenv("NPNET_DATA")
    assert data.resolve_root() == Path.home() / ".cache" / "npnet"


# ------------------------------------------------------------------------------------ Fashion-MNIST

def idx_bytes(array):
    return bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">u4").tobytes() + array.tobytes()


def write_idx_set(folder, gz, n_train=30, n_test=10, seed=0):
    """Write the four Fashion-MNIST files; return (arrays as the loader gives them, raw md5s)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = []
    for n in (n_train, n_test):
        arrays += [rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)]
    sums = {}
    for name, array in zip(fashion_mnist.FILES, arrays):
        raw = idx_bytes(array)
        sums[name] = hashlib.md5(raw).hexdigest()
        path = folder / (name + ".gz" if gz else name)
        path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    expected = (arrays[0][:, None], arrays[1].astype(np.int64),
                arrays[2][:, None], arrays[3].astype(np.int64))
    return expected, sums


@pytest.fixture
def no_system_dirs(monkeypatch):
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_SYSTEM_DIRS", [])


@pytest.mark.parametrize("gz, subfolder", [(True, True), (False, False), (True, False)])
def test_fashion_idx_loads_back(tmp_path, monkeypatch, no_system_dirs, gz, subfolder):
    expected, sums = write_idx_set(tmp_path / "fashion-mnist" if subfolder else tmp_path, gz)
    for name, digest in sums.items():
        monkeypatch.setitem(data.FASHION_MNIST_MD5, name, digest)
    loaded = data.load_fashion_mnist(tmp_path, download=False)
    assert_same(loaded, expected)
    assert loaded.x_train.shape == (30, 1, 28, 28) and loaded.classes[9] == "Ankle boot"


def test_fashion_found_in_system_dir(tmp_path, monkeypatch):
    expected, sums = write_idx_set(tmp_path / "debian", gz=True)
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_SYSTEM_DIRS", [str(tmp_path / "debian")])
    for name, digest in sums.items():
        monkeypatch.setitem(data.FASHION_MNIST_MD5, name, digest)
    assert_same(data.load_fashion_mnist(tmp_path / "empty", download=False), expected)


def test_fashion_checksum_is_of_decompressed_bytes(tmp_path, no_system_dirs):
    write_idx_set(tmp_path, gz=True)  # official md5s do not match these synthetic files
    with pytest.raises(ChecksumError, match=r"train-images-idx3-ubyte\.gz: md5 of decompressed.*"
                                            r"expected f4a8712d7a061bf5bd6d2ca38dc4d50a"):
        data.load_fashion_mnist(tmp_path, download=False)


def test_fashion_rejects_bad_idx_header():
    with pytest.raises(ValueError, match="not a uint8 IDX file"):
        fashion_mnist.parse_idx(b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd", "x.idx")
    with pytest.raises(ValueError, match="x.idx: 9 bytes, expected 10"):
        fashion_mnist.parse_idx(b"\x00\x00\x08\x01\x00\x00\x00\x02a", "x.idx")


def serve_idx(monkeypatch, base, srv, seed=3):
    expected, sums = write_idx_set(srv, gz=True, seed=seed)
    for name, digest in sums.items():
        monkeypatch.setitem(data.FASHION_MNIST_URLS, name, f"{base}{name}.gz")
        monkeypatch.setitem(data.FASHION_MNIST_MD5, name, digest)
    return expected


def test_fashion_download_from_local_server(tmp_path, monkeypatch, server, no_system_dirs):
    expected = serve_idx(monkeypatch, *server)
    assert_same(data.load_fashion_mnist(tmp_path / "cache", progress=False), expected)
    got = sorted(p.name for p in (tmp_path / "cache" / "fashion-mnist").iterdir())
    assert got == sorted(n + ".gz" for n in fashion_mnist.FILES)


def test_fashion_corrupt_download_leaves_nothing(tmp_path, monkeypatch, server, no_system_dirs):
    base, srv = server
    serve_idx(monkeypatch, base, srv)
    name = "t10k-images-idx3-ubyte"
    (srv / f"{name}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01x"))
    with pytest.raises(ChecksumError, match=f"{name}.gz: md5 of decompressed content"):
        data.load_fashion_mnist(tmp_path, progress=False)
    assert not (tmp_path / "fashion-mnist" / f"{name}.gz").exists()
    assert not [p for p in (tmp_path / "fashion-mnist").iterdir() if p.name.startswith(".")]
    (srv / f"{name}.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ChecksumError, match="not a valid gzip"):
        data.load_fashion_mnist(tmp_path, progress=False)
    assert not (tmp_path / "fashion-mnist" / f"{name}.gz").exists()


def test_fashion_offline_error_names_folders_and_remedy(tmp_path, monkeypatch, no_system_dirs):
    for name in fashion_mnist.FILES:
        monkeypatch.setitem(data.FASHION_MNIST_URLS, name, closed_port_url(name + ".gz"))
    for kwargs in ({"download": False}, {"progress": False}):
        with pytest.raises(DatasetNotFoundError) as info:
            data.load_fashion_mnist(tmp_path, **kwargs)
        message = str(info.value)
        assert str(tmp_path / "fashion-mnist") in message
        assert "apt-get install dataset-fashion-mnist" in message
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian(tmp_path):
    full = data.load_fashion_mnist(tmp_path, download=False)  # nothing in tmp_path: Debian's copy
    assert full.x_train.shape == (60000, 1, 28, 28) and full.x_test.shape == (10000, 1, 28, 28)
    assert np.bincount(full.y_train).tolist() == [6000] * 10
    assert np.bincount(full.y_test).tolist() == [1000] * 10
    pixels = full.x_train / np.float32(255)
    assert abs(pixels.mean() - 0.2860) < 1e-4 and abs(pixels.std() - 0.3530) < 1e-4
    mini_set = data.load_fashion_mnist_mini()
    with np.load(mini.MINI_PATH, allow_pickle=False) as npz:
        train_index, test_index = npz["train_index"], npz["test_index"]
    np.testing.assert_array_equal(mini_set.x_train, full.x_train[train_index])
    np.testing.assert_array_equal(mini_set.y_test, full.y_test[test_index])


# -------------------------------------------------------------------------------------- mini set

def test_mini_loads_offline_and_matches_checksum(monkeypatch):
    monkeypatch.setattr("urllib.request.urlopen", None)  # any network use would fail loudly
    x_train, y_train, x_test, y_test = data.load_fashion_mnist_mini()
    assert hashlib.sha256(mini.MINI_PATH.read_bytes()).hexdigest() == mini.MINI_SHA256
    assert mini.MINI_PATH.stat().st_size <= 5_000_000
    assert x_train.shape == (10000, 1, 28, 28) and x_test.shape == (1000, 1, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64 and y_test.dtype == np.int64
    assert np.bincount(y_train, minlength=10).tolist() == [1000] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [100] * 10
    assert 0.25 < x_train.mean() / 255 < 0.32  # real images, not noise (full set: 0.286)
    assert (REPO / "npnet" / "data" / "LICENSE-fashion-mnist.txt").read_text().count("Zalando SE") >= 1


def test_mini_tampered_file_is_refused(tmp_path):
    copy = tmp_path / "mini.npz"
    blob = bytearray(mini.MINI_PATH.read_bytes())
    blob[-100] ^= 1
    copy.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=f"mini.npz: sha256 is .*expected {mini.MINI_SHA256}"):
        data.load_fashion_mnist_mini(copy)


def load_build_script():
    path = REPO / "scripts" / "build_fashion_mnist_mini.py"
    spec = importlib.util.spec_from_file_location("build_mini", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mini_builder_is_deterministic(monkeypatch):
    script = load_build_script()
    arrays = {"x": np.arange(600, dtype=np.uint8).reshape(2, 3, 10, 10), "y": np.array([1, 2])}
    first = script.npz_bytes(arrays)
    monkeypatch.setattr("time.time", lambda: 2e9)  # a different "now" must not change the bytes
    assert script.npz_bytes(arrays) == first
    assert script.first_per_class(np.array([2, 0, 1, 0, 2, 1, 0]), 2).tolist() == [0, 1, 2, 3, 4, 5]


def test_load_dataset_dispatch(tmp_path):
    assert data.load_dataset("fashion-mnist-mini").name == "fashion-mnist-mini"
    same = data.load_dataset("fashion-mnist-mini", root="/nonexistent", download=False)
    assert same.classes[0] == "T-shirt/top"
    with pytest.raises(ValueError, match="cifar10, fashion-mnist, fashion-mnist-mini"):
        data.load_dataset("mnist")
    with pytest.raises(DatasetNotFoundError, match="CIFAR-10 not found"):
        data.load_dataset("cifar10", root=tmp_path, download=False)
