"""Using a trained run: ``npnet.load_run`` rebuilds a run folder's model with its weights and the
run's own test-time preprocessing (its test accuracy is the one metrics.json holds), and
``npnet predict`` / ``npnet evaluate`` use it from the command line."""
import gzip
import json
import os

import numpy as np
import pytest
import yaml

import npnet
from npnet.data import load_dataset
from npnet.run.cli import main
from npnet.run.experiment import prepare_data

CONFIG = {"seed": 2,
          "train": {"batch_size": 50, "learning_rate": 0.05, "epochs": 2, "momentum": 0.9},
          "network": {"model": "cnn-small"},
          "data": {"dataset": "fashion-mnist-mini", "val_fraction": 0.2, "max_train": 300,
                   "max_test": 60}}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    (tmp / "c.yaml").write_text(yaml.safe_dump(CONFIG))
    assert main(["train", str(tmp / "c.yaml"), "--out", str(tmp / "runs"), "--quiet"]) == 0
    (run,) = os.listdir(tmp / "runs")
    return str(tmp / "runs" / run)


def test_load_run_gives_the_runs_test_accuracy(run_folder):
    run = npnet.load_run(run_folder)
    assert run.checkpoint == os.path.join(run_folder, "best.npz") and not run.model.training
    assert run.classes[9] == "Ankle boot" and run.image_shape == (1, 28, 28)
    d = prepare_data(run.config)  # the run's own test images (data.max_test of them)
    probs = run.predict(d.x_test)
    assert probs.shape == (60, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    metrics = json.load(open(os.path.join(run_folder, "metrics.json")))
    assert metrics["weights"] == "best.npz"
    assert np.mean(probs.argmax(axis=1) == d.y_test) == metrics["test_accuracy"]
    one = run.predict(d.x_test[0])  # one image (C, H, W), or grey (H, W)
    np.testing.assert_allclose(one, probs[:1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run.predict(d.x_test[0, 0]), one, rtol=0, atol=0)
    float_probs = run.predict(d.x_test[:4].astype(np.float32) / 255)  # as float loaders give
    np.testing.assert_allclose(float_probs, probs[:4], rtol=1e-4, atol=1e-6)


def test_load_run_takes_a_checkpoint_file_and_says_what_is_wrong(run_folder, tmp_path):
    last = npnet.load_run(run_folder, weights="last")
    assert last.checkpoint == os.path.join(run_folder, "last.npz") and last.epoch == 2
    assert npnet.load_run(os.path.join(run_folder, "last.npz")).checkpoint == last.checkpoint
    with pytest.raises(ValueError, match="no best.npz or last.npz in this folder"):
        npnet.load_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such run folder or checkpoint file"):
        npnet.load_run(tmp_path / "nothing")
    np.savez(tmp_path / "other.npz", w=np.zeros(3))
    with pytest.raises(ValueError, match="not an npnet checkpoint"):
        npnet.load_run(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="weights must be 'best' or 'last', got 'first'"):
        npnet.load_run(run_folder, weights="first")
    with pytest.raises(ValueError, match=r"takes images of shape \(N, 1, 28, 28\).*got an array of "
                                         r"shape \(2, 3, 32, 32\)"):
        last.predict(np.zeros((2, 3, 32, 32), np.uint8))
    with pytest.raises(TypeError, match="expected uint8 images .* got dtype int64"):
        last.predict(np.zeros((2, 1, 28, 28), np.int64))
    assert "load_run" in dir(npnet)


def test_predict_prints_each_images_class_from_npy_png_and_idx(run_folder, tmp_path, capsys):
    import matplotlib.image
    x = load_dataset("fashion-mnist-mini").x_test[:3]  # (3, 1, 28, 28) uint8
    np.save(tmp_path / "three.npy", x)
    matplotlib.image.imsave(tmp_path / "one.png", x[1, 0], cmap="gray", vmin=0, vmax=255)  # RGBA
    header = np.array([0, 0, 8, 3], np.uint8).tobytes() + np.array([3, 28, 28], ">u4").tobytes()
    idx = tmp_path / "t10k-images-idx3-ubyte.gz"
    idx.write_bytes(gzip.compress(header + x[:, 0].tobytes()))
    assert main(["predict", run_folder, str(tmp_path / "three.npy"), str(tmp_path / "one.png"),
                 str(idx), "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    run = npnet.load_run(run_folder)
    probs = run.predict(x)
    names = [run.classes[c] for c in probs.argmax(axis=1)]
    expected = [f"{tmp_path / 'three.npy'}[{i}]: {names[i]}  ({names[i]} {probs[i].max():.3f}, "
                for i in range(3)]
    expected += [f"{tmp_path / 'one.png'}: {names[1]}  ({names[1]} {probs[1].max():.3f}, "]
    expected += [f"{idx}[{i}]: {names[i]}  ({names[i]} {probs[i].max():.3f}, " for i in range(3)]
    assert len(lines) == 7 and all(line.startswith(e) for line, e in zip(lines, expected)), lines
    assert all(line.count(", ") == 1 for line in lines)  # --top 2: two probabilities


def test_evaluate_and_predict_errors_are_one_message(run_folder, tmp_path, capsys):
    assert main(["evaluate", run_folder]) == 0
    out = capsys.readouterr().out
    run = npnet.load_run(run_folder)
    x, y = load_dataset("fashion-mnist-mini")[2:]  # the whole test split
    accuracy = np.mean(run.predict(x).argmax(axis=1) == y)
    assert f"fashion-mnist-mini test set, 1000 images: accuracy {accuracy:.4f}" in out, out
    (tmp_path / "a.txt").write_text("")
    np.save(tmp_path / "colour.npy", np.zeros((2, 3, 32, 32), np.uint8))
    for argv, said in [
            (["evaluate", run_folder, "--dataset", "cifar10"],
             "npnet evaluate: --dataset cifar10: its images are (3, 32, 32), the run's model takes (1, 28, 28)"),
            (["predict", str(tmp_path), str(tmp_path / "a.txt")],
             f"npnet predict: {tmp_path}: no best.npz or last.npz in this folder"),
            (["predict", run_folder, str(tmp_path / "a.txt")],
             f"npnet predict: {tmp_path / 'a.txt'}: not an image file npnet reads"),
            (["predict", run_folder, str(tmp_path / "colour.npy")],
             "npnet predict: " + str(tmp_path / "colour.npy") + ": TrainedRun.predict: this run's "
             "model takes images of shape (N, 1, 28, 28)"),
            (["predict", run_folder, str(tmp_path / "missing.npy")],
             f"npnet predict: {tmp_path / 'missing.npy'}: ")]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(said) and len(err.strip().splitlines()) == 1, err
