"""``npnet train`` with a ``log:`` section: LayerStats on, its CSV, figure, TensorBoard events and
last values in metrics.json; a bad log section is refused before anything runs."""
import csv
import glob
import importlib.util
import json
import os

import pytest

from npnet.run.cli import main
from npnet.run.config import ConfigError, load_config, validate_config
from npnet.run.runner import run_experiment
from npnet.train import Callback

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "configs", "fashion_mnist", "cnn_small.yaml")
TINY = ["--set", "data.dataset=fashion-mnist-mini", "--set", "train.epochs=1",
        "--set", "data.max_train=300", "--set", "data.max_test=100"]


class DeadUnits(Callback):
    """Kills ``kill`` channels of the first convolution (a bias of -1000: its ReLU outputs 0
    there, whatever the image, and passes back no gradient to revive them), and computes the
    dead fraction of that ReLU on its own, from a forward hook: the share of channels that were
    zero for every training sample of the (only) epoch."""

    def __init__(self, kill):
        self.kill, self.active, self.handle = kill, None, None

    def on_fit_begin(self, trainer):
        layers = dict(trainer.model.named_modules())  # cnn-small: "0" Conv2d, "1" ReLU, ...
        layers["0"].bias.data[:self.kill] = -1000.0
        self.handle = layers["1"].register_forward_hook(self.hook)

    def hook(self, module, inputs, out):  # out: (N, C, H, W)
        if module.training:
            seen = (out != 0).any(axis=(0, 2, 3))
            self.active = seen if self.active is None else self.active | seen

    def on_fit_end(self, trainer):
        self.handle.remove()


def test_log_section_switches_layer_stats_on(tmp_path):
    board = importlib.util.find_spec("tensorboardX") is not None
    config = load_config(CONFIG, [s for s in TINY if s != "--set"] + [
        "log.layer_stats=2", f"log.tensorboard={str(board).lower()}"])
    dead = DeadUnits(kill=8)
    result = run_experiment(config, out=str(tmp_path), progress=False, log=lambda *a: None,
                            callbacks=[dead])
    run = result["run"]
    with open(os.path.join(run, "layer_stats.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["statistic"] for r in rows} >= {"out_mean", "zero_fraction", "dead_fraction", "update_ratio"}
    with open(os.path.join(run, "layer_stats.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    if board:
        assert len(os.listdir(os.path.join(run, "tensorboard"))) == 1
    with open(os.path.join(run, "metrics.json")) as f:
        last = json.load(f)["layer_stats"]
    assert dead.active.shape == (32,) and not dead.active[:8].any()
    expected = 1.0 - dead.active.mean()  # 8 of 32 dead, and any that died on their own
    assert expected >= 0.25 and last["1"]["dead_fraction"] == pytest.approx(expected, abs=1e-12)


def test_without_log_section_no_layer_stats(tmp_path):
    assert main(["train", CONFIG, *TINY, "--out", str(tmp_path), "--quiet"]) == 0
    (run,) = glob.glob(str(tmp_path / "*"))
    assert not os.path.exists(os.path.join(run, "layer_stats.csv"))
    with open(os.path.join(run, "metrics.json")) as f:
        assert "layer_stats" not in json.load(f)


def test_tensorboard_without_layer_stats_is_refused():
    with pytest.raises(ConfigError, match="'log.tensorboard' needs log.layer_stats > 0"):
        validate_config({"network": {"model": "linear"}, "log": {"tensorboard": True}})
