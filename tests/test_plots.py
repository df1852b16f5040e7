"""Figures: every plot writes a valid PNG (signature, read back by matplotlib), atomically, and
``import npnet`` does not import matplotlib."""
import os
import subprocess
import sys

import numpy as np
import pytest

from npnet import plots
from npnet.train import History

PNG = b"\x89PNG\r\n\x1a\n"
NAMES = ["cat", "dog", "ship"]


def assert_png(path):
    import matplotlib.image
    with open(path, "rb") as f:
        assert f.read(8) == PNG
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50


def history(shift):
    h = History()
    for e in range(1, 4):
        h.add_epoch(epoch=e, train_loss=1 / e + shift, train_accuracy=0.5 + 0.1 * e,
                    val_loss=1.2 / e + shift, val_accuracy=0.45 + 0.1 * e, lr=0.1, time=1.0)
    return h


def test_learning_curves_one_and_several_runs(tmp_path):
    plots.plot_learning_curves(history(0), path=tmp_path / "one.png")
    assert_png(tmp_path / "one.png")
    history(0).to_json(tmp_path / "h.json")
    fig = plots.plot_learning_curves({"sgd": history(0), "adam": tmp_path / "h.json",
                                      "dict": history(0.2).to_dict()}, path=tmp_path / "many.png")
    assert_png(tmp_path / "many.png")
    assert len(fig.axes[0].lines) == 6  # train and validation of three runs
    no_val = History()
    no_val.add_epoch(epoch=1, train_loss=1.0, train_accuracy=0.5, lr=0.1, time=1.0)
    plots.plot_learning_curves(no_val, path=tmp_path / "noval.png")
    assert_png(tmp_path / "noval.png")


def test_learning_curves_side_by_side_gives_each_run_its_own_column(tmp_path):
    fig = plots.plot_learning_curves({"gd": history(0), "cnn": history(0.5)}, side_by_side=True,
                                     path=tmp_path / "side.png")
    assert_png(tmp_path / "side.png")
    assert len(fig.axes) == 4                                  # (loss, accuracy) x 2 runs
    assert [ax.get_title() for ax in fig.axes] == ["gd", "cnn", "", ""]
    assert all(len(ax.lines) == 2 for ax in fig.axes)          # train and validation of one run
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), [1.5, 1.0, 0.5 + 1 / 3])


def test_side_by_side_epoch_axes_keep_few_labels():
    """400 full-batch GD epochs in a narrow column had 9 three-digit labels that ran together."""
    gd = History()
    for e in range(1, 401):
        gd.add_epoch(epoch=e, train_loss=1 / e, train_accuracy=0.5, lr=0.1, time=1.0)
    fig = plots.plot_learning_curves({"gd": gd, "cnn": history(0)}, side_by_side=True)
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert 2 <= len(ticks) <= 6 and all(t == int(t) for t in ticks), ticks


def test_confusion_matrix_and_per_class_bars(tmp_path):
    cm = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 6]])
    fig = plots.plot_confusion_matrix(cm, NAMES, tmp_path / "cm.png")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == NAMES
    assert_png(tmp_path / "cm.png")
    plots.plot_per_class_accuracy({"CE": [0.9, 0.5, 0.1], "focal": [0.8, 0.6, 0.4]}, NAMES,
                                  tmp_path / "bars.png")
    assert_png(tmp_path / "bars.png")


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_linear_weights_as_images(tmp_path, shape):
    w = np.random.default_rng(0).standard_normal((3, int(np.prod(shape)))).astype(np.float32)
    fig = plots.plot_linear_weights(w, shape, NAMES, tmp_path / "w.png")
    assert [ax.get_title() for ax in fig.axes if ax.images] == NAMES
    assert_png(tmp_path / "w.png")
    with pytest.raises(ValueError, match="expected a weight"):
        plots.plot_linear_weights(w[:, :10], shape)


def test_prediction_grid_marks_wrong_ones(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1],
                      [0.3, 0.4, 0.3]])
    labels = np.array([0, 1, 2, 2, 0])
    fig = plots.plot_predictions(images, labels, probs, NAMES, tmp_path / "pred.png", ncols=3)
    titles = [ax.title for ax in fig.axes if ax.images]
    assert titles[0].get_text() == "cat 90%" and titles[0].get_color() == "black"
    assert titles[3].get_text() == "cat 70%\n(true: ship)" and titles[3].get_color() == "red"
    assert_png(tmp_path / "pred.png")


def test_accuracy_heatmap_colours_and_cells_share_one_percent_scale(tmp_path):
    acc = np.array([[0.9, 0.25, np.nan], [0.0, 1.0, 0.555]])
    fig = plots.plot_accuracy_heatmap(acc, ["CE", "focal"], NAMES, tmp_path / "h.png")
    ax, bar = fig.axes
    image = ax.images[0]
    assert image.get_clim() == (0, 100) and bar.get_ylim() == (0, 100)
    np.testing.assert_allclose(image.get_array().filled(np.nan), 100 * acc)
    assert [t.get_text() for t in ax.texts] == ["90", "25", "0", "100", "56"]  # NaN stays blank
    assert "%" in bar.get_ylabel()
    assert_png(tmp_path / "h.png")


def test_plots_package_keeps_the_flat_names():
    from npnet.plots import layer_stats, run, sweep
    assert plots.plot_learning_curves is run.plot_learning_curves
    assert plots.plot_layer_stats is layer_stats.plot_layer_stats
    assert plots.plot_accuracy_heatmap is sweep.plot_accuracy_heatmap
    assert all(callable(getattr(plots, name)) for name in plots.__all__)


def test_save_is_atomic(tmp_path):
    fig = plots.plot_per_class_accuracy([0.1, 0.2, 0.3], NAMES, tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("renderer crashed")

    fig.savefig = broken
    with pytest.raises(RuntimeError, match="renderer crashed"):
        plots.save_figure(fig, tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes() == before and os.listdir(tmp_path) == ["a.png"]


def test_import_npnet_does_not_import_matplotlib():
    code = ("import sys, npnet, npnet.plots, npnet.train, npnet.models, npnet.run.cli; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr


def test_the_figures_do_not_import_the_trainer():
    """The floors: a figure takes the records it draws (histories, LayerStats.stats, their files),
    so npnet.plots loads neither npnet.train nor what it stands on (nn, the kernels, Numba)."""
    code = ("import sys, npnet.plots; bad = sorted(m for m in sys.modules if m.startswith("
            "('npnet.train', 'npnet.nn', 'npnet.kernels', 'numba'))); assert not bad, bad")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
