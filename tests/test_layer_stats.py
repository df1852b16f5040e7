"""LayerStats: dead and healthy ReLUs, saturated Sigmoids and Tanhs, gradient norms, update
ratios, layers found by type, its CSV / PNG / TensorBoard output and its resume state."""
import os
import struct

import numpy as np
import matplotlib.colors
import pytest

from npnet import nn, plots
from npnet.data import DataLoader
from npnet.losses import CrossEntropyLoss
from npnet.optim import SGD
from npnet.train import LayerStats, Trainer, read_layer_stats_csv
from npnet.train.layer_stats import saturation


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def model(dead_bias=None):
    """Linear(6, 8) -> ReLU -> Linear(8, 8) -> ReLU -> Linear(8, 2); ``dead_bias`` sets the second
    Linear's bias (and zero weights), so that the ReLU after it never fires."""
    rng = np.random.default_rng(1)
    m = nn.Sequential(nn.Linear(6, 8, rng=rng), nn.ReLU(), nn.Linear(8, 8, rng=rng), nn.ReLU(),
                      nn.Linear(8, 2, rng=rng))
    if dead_bias is not None:
        m[2].bias.data[...] = dead_bias
    return m


def fit(net, stats, epochs=2, lr=0.1, momentum=0.0, batch=16):
    x, y = data()
    opt = SGD(net.parameters(), lr=lr, momentum=momentum)
    trainer = Trainer(net, CrossEntropyLoss(), opt, callbacks=[stats], progress=False)
    trainer.fit(DataLoader(x, y, batch, shuffle=True, seed=0), epochs=epochs)
    return trainer


def last(stats, layer, statistic):
    return stats.stats[layer][statistic][-1][1]


def test_a_relu_forced_negative_is_dead_and_passes_back_no_gradient():
    stats = LayerStats(every=1)
    fit(model(dead_bias=-100.0), stats)
    assert [v for _, v in stats.stats["3"]["dead_fraction"]] == [1.0, 1.0]  # one value per epoch
    assert all(v == 1.0 for _, v in stats.stats["3"]["zero_fraction"])
    assert all(v == 0.0 for _, v in stats.stats["3"]["grad_norm"])
    assert last(stats, "2", "grad_norm") == 0.0  # nothing flows back through the dead layer


def test_a_healthy_network_has_no_dead_units():
    stats = LayerStats(every=1)
    fit(model(), stats)
    assert last(stats, "1", "dead_fraction") == 0.0 and last(stats, "3", "dead_fraction") == 0.0
    assert 0 < last(stats, "1", "zero_fraction") < 1
    assert last(stats, "3", "grad_norm") > 0
    assert "grad_norm" not in stats.stats["0"]  # the first layer is asked for no dx in training


def test_dead_units_are_counted_per_channel_of_a_conv_output():
    stats = LayerStats(every=1)
    rng = np.random.default_rng(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=rng), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 16, 2, rng=rng))
    net[0].bias.data[:2] = -100.0  # two of the four channels never fire
    x = rng.standard_normal((32, 1, 4, 4)).astype(np.float32)
    trainer = Trainer(net, CrossEntropyLoss(), SGD(net.parameters(), lr=0.01), callbacks=[stats],
                      progress=False)
    trainer.fit(DataLoader(x, (x[:, 0, 0, 0] > 0).astype(np.int64), 8), epochs=1)
    assert last(stats, "1", "dead_fraction") == 0.5


def test_update_ratio_of_plain_sgd_is_lr_times_gradient_over_weight():
    net, lr = model(), 0.1
    x, y = data()
    stats = LayerStats(every=1)
    w0 = net[0].weight.data.copy()
    grads = []
    net[0].register_full_backward_hook(lambda m, gi, go: grads.append(m.weight.grad.copy()))
    trainer = Trainer(net, CrossEntropyLoss(), SGD(net.parameters(), lr=lr), callbacks=[stats],
                      progress=False)
    trainer.fit(DataLoader(x[:16], y[:16], 16), epochs=1)  # one step
    step, ratio = stats.stats["0.weight"]["update_ratio"][0]
    want = np.linalg.norm(lr * grads[0]) / np.linalg.norm(w0)
    assert step == 0 and ratio == pytest.approx(want, rel=1e-5)


def test_every_samples_the_statistics_and_eval_passes_are_ignored():
    stats = LayerStats(every=3)
    x, y = data()
    net = model()
    trainer = Trainer(net, CrossEntropyLoss(), SGD(net.parameters(), lr=0.1), callbacks=[stats],
                      progress=False)
    trainer.fit(DataLoader(x, y, 16), DataLoader(x, y, 32), epochs=2)  # 8 steps, validation too
    assert [s for s, _ in stats.stats["1"]["out_mean"]] == [0, 3, 6]


def test_csv_and_png_are_written_atomically(tmp_path):
    stats = LayerStats(every=2, folder=tmp_path)
    fit(model(), stats)
    csv_path = tmp_path / "layer_stats.csv"
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "step,layer,statistic,value" and len(lines) == len(stats.rows()) + 1
    assert read_layer_stats_csv(str(csv_path)) == {
        layer: {s: [(int(a), pytest.approx(b)) for a, b in pts] for s, pts in by.items()}
        for layer, by in stats.stats.items()}
    png = tmp_path / "layer_stats.png"
    plots.plot_layer_stats(str(csv_path), path=png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["layer_stats.csv", "layer_stats.png"]  # no temp files

    def broken(f):
        f.write(b"partial")
        raise OSError("disk full")
    from npnet import _io
    with pytest.raises(OSError):
        _io.atomic_write(csv_path, broken)
    assert csv_path.read_text().splitlines() == lines  # the old file is intact


def test_the_figure_takes_the_records_the_callback_or_its_file(tmp_path):
    stats = LayerStats(every=2, folder=tmp_path)
    fit(model(), stats, epochs=1)
    figures = [plots.plot_layer_stats(s) for s in (stats.stats, stats, tmp_path / "layer_stats.csv")]
    panels = [[(ax.get_title(), [line.get_label() for line in ax.lines]) for ax in fig.axes] for fig in figures]
    assert panels[0] == panels[1] == panels[2] and panels[0][0][0] == "out_mean"
    with pytest.raises(TypeError, match="expected LayerStats.stats, a LayerStats or the path"):
        plots.plot_layer_stats([("0", "out_mean", 0, 1.0)])


def test_the_csv_reader_refuses_another_file(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n1,0.5\n")
    with pytest.raises(ValueError, match="history.csv: not a layer_stats.csv"):
        read_layer_stats_csv(path)


def test_state_dict_round_trip_keeps_the_statistics():
    stats = LayerStats(every=1)
    fit(model(), stats, epochs=1)
    again = LayerStats(every=1)
    again.load_state_dict(stats.state_dict())
    assert again.stats == stats.stats


def _events(path):
    """The Event protos of a TensorBoard event file (TFRecord framing: length, crc, data, crc)."""
    from tensorboardX.proto import event_pb2
    blob, out, i = open(path, "rb").read(), [], 0
    while i < len(blob):
        (n,) = struct.unpack("<Q", blob[i:i + 8])
        out.append(event_pb2.Event.FromString(blob[i + 12:i + 12 + n]))
        i += 12 + n + 4
    return out


def test_tensorboard_export_holds_the_scalars_and_histograms(tmp_path):
    pytest.importorskip("tensorboardX")
    stats = LayerStats(every=2, tensorboard=tmp_path / "tb")
    fit(model(), stats)
    files = os.listdir(tmp_path / "tb")
    assert len(files) == 1
    tags = {(v.tag, v.HasField("histo")) for e in _events(tmp_path / "tb" / files[0]) for v in e.summary.value}
    assert ("dead_fraction/3", False) in tags and ("update_ratio/0.weight", False) in tags
    assert ("output/1", True) in tags


def test_saturation_counts_the_flat_tails_by_hand():
    y = np.array([[0.009, 0.011, 0.5, 0.989, 0.991, 0.999]], np.float32)  # 3 of 6 outside [.01, .99]
    assert saturation(nn.Sigmoid(), y) == 0.5
    t = np.array([0.995, -0.995, 0.985, -0.985, 0.0], np.float32)  # |y| > 0.99: 2 of 5
    assert saturation(nn.Tanh(), t) == pytest.approx(0.4)
    assert saturation(nn.ReLU(), y) is None and saturation(nn.Linear(2, 2), y) is None


def head(activation, bias):
    """Linear(6, 4) with zero weights and ``bias`` -> activation -> Linear(4, 2): at step 0 the
    activation's outputs are activation(bias) for every sample."""
    rng = np.random.default_rng(1)
    net = nn.Sequential(nn.Linear(6, 4, rng=rng), activation, nn.Linear(4, 2, rng=rng))
    net[0].weight.data[...] = 0.0
    net[0].bias.data[...] = bias
    return net


@pytest.mark.parametrize("activation, bias", [
    (nn.Sigmoid(), [10.0, -10.0, 0.0, 2.0]),   # 0.99995, 0.00005 saturated; 0.5, 0.88 not
    (nn.Tanh(), [3.0, -3.0, 0.5, 2.5])])       # |tanh| 0.995, 0.995 saturated; 0.46, 0.987 not
def test_saturation_through_the_hooks_of_a_training_run(activation, bias):
    stats = LayerStats(every=1)
    fit(head(activation, bias), stats, epochs=1)
    step, value = stats.stats["1"]["saturation"][0]
    assert step == 0 and value == 0.5
    assert "zero_fraction" not in stats.stats["1"] and "dead_fraction" not in stats.stats["1"]
    assert "saturation" not in stats.stats["0"] and "saturation" not in stats.stats["2"]


def test_a_saturated_sigmoid_passes_back_less_gradient():
    """Same net, same weights after the first layer: biases of +-8 (every output saturated)
    against 0 (every output 0.5) shrink the gradient reaching the first layer's output."""
    grads = {}
    for b in (0.0, 8.0):
        stats = LayerStats(every=1)
        fit(head(nn.Sigmoid(), [b, -b, b, -b]), stats, epochs=1)
        grads[b] = stats.stats["1"]["grad_norm"][0][1]
        assert stats.stats["1"]["saturation"][0][1] == (1.0 if b else 0.0)
    assert grads[8.0] < 0.01 * grads[0.0]  # sigmoid'(8) / sigmoid'(0) = 0.0013


class Clipped(nn.ReLU):
    """A user's subclass of ReLU: still a ReLU, so LayerStats counts its zeros."""


class Reshape(nn.Flatten):
    """A user's subclass of Flatten: only reshapes, so LayerStats skips it."""


def test_layers_are_found_by_type_so_subclasses_count():
    rng = np.random.default_rng(0)
    net = nn.Sequential(nn.Linear(6, 8, rng=rng), Clipped(), Reshape(), nn.Linear(8, 2, rng=rng))
    stats = LayerStats(every=1)
    fit(net, stats, epochs=1)
    assert set(stats.stats) == {"0", "1", "3", "0.weight", "0.bias", "3.weight", "3.bias"}
    assert "zero_fraction" in stats.stats["1"] and "dead_fraction" in stats.stats["1"]


def test_the_figure_has_a_saturation_panel(tmp_path):
    stats = LayerStats(every=1, folder=tmp_path)
    fit(head(nn.Sigmoid(), [10.0, -10.0, 0.0, 2.0]), stats, epochs=1)
    fig = plots.plot_layer_stats(str(tmp_path / "layer_stats.csv"))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["out_mean", "out_std", "saturation", "grad_norm", "update_ratio"]
    panel = fig.axes[titles.index("saturation")]
    assert [line.get_label() for line in panel.lines] == ["1"]
    assert panel.lines[0].get_ydata()[0] == 0.5


def test_statistic_by_run_shares_one_y_scale_across_the_runs():
    small = {"1": {"grad_norm": [(0, 1e-4), (1, 2e-4)]}}
    large = {"1": {"grad_norm": [(0, 0.5), (1, 1.0)]}, "2": {"saturation": [(0, 0.3)]}}
    fig = plots.plot_statistic_by_run({"a": small, "b": large}, "grad_norm")
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "log"]  # 1e-4 .. 1: four decades
    assert [len(ax.lines) for ax in fig.axes] == [1, 1]            # layer 2 has no grad_norm
    fig = plots.plot_statistic_by_run({"b": large}, "grad_norm")
    assert fig.axes[0].get_yscale() == "linear"


def test_twelve_layers_get_twelve_colours_the_same_in_every_run():
    # matplotlib's cycle has ten colours: layers 1 and 11 used to share one
    run = {str(k): {"grad_norm": [(0, float(k)), (1, float(k))]} for k in range(1, 13)}
    fig = plots.plot_statistic_by_run({"a": run, "b": run}, "grad_norm")
    colours = [[tuple(matplotlib.colors.to_rgba(line.get_color())) for line in ax.lines] for ax in fig.axes]
    assert len(set(colours[0])) == 12 and colours[0] == colours[1]
    fig = plots.plot_layer_stats(run)
    assert len({matplotlib.colors.to_rgba(line.get_color()) for line in fig.axes[0].lines}) == 12


def test_a_run_without_the_statistic_gets_a_panel_that_says_so():
    sig = {"2": {"saturation": [(0, 0.1), (1, 0.4)]}}
    relu = {"2": {"grad_norm": [(0, 1.0), (1, 2.0)]}}
    fig = plots.plot_statistic_by_run({"sigmoid": sig, "relu": relu}, "saturation")
    assert [len(ax.lines) for ax in fig.axes] == [1, 0]
    assert [t.get_text() for t in fig.axes[1].texts] == ["no layer records\nsaturation"]
    assert not fig.axes[0].texts
