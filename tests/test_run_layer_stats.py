"""``npnet train`` with a ``log:`` section: LayerStats on, its CSV, figure, TensorBoard events and
last values in metrics.json; a bad log section is refused before anything runs."""
import csv
import glob
import json
import os

import pytest

from npnet.run.cli import main
from npnet.run.config import ConfigError, validate_config

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "configs", "fashion_mnist", "cnn_small.yaml")
TINY = ["--set", "data.dataset=fashion-mnist-mini", "--set", "train.epochs=1",
        "--set", "data.max_train=300", "--set", "data.max_test=100"]


def test_log_section_switches_layer_stats_on(tmp_path):
    pytest.importorskip("tensorboardX")
    code = main(["train", CONFIG, *TINY, "--set", "log.layer_stats=2", "--set", "log.tensorboard=true",
                 "--out", str(tmp_path), "--quiet"])
    assert code == 0
    (run,) = glob.glob(str(tmp_path / "*"))
    with open(os.path.join(run, "layer_stats.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["statistic"] for r in rows} >= {"out_mean", "zero_fraction", "dead_fraction", "update_ratio"}
    with open(os.path.join(run, "layer_stats.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert len(os.listdir(os.path.join(run, "tensorboard"))) == 1
    with open(os.path.join(run, "metrics.json")) as f:
        last = json.load(f)["layer_stats"]
    assert 0.0 <= last["1"]["dead_fraction"] <= 1.0  # the first ReLU of cnn-small


def test_without_log_section_no_layer_stats(tmp_path):
    assert main(["train", CONFIG, *TINY, "--out", str(tmp_path), "--quiet"]) == 0
    (run,) = glob.glob(str(tmp_path / "*"))
    assert not os.path.exists(os.path.join(run, "layer_stats.csv"))
    with open(os.path.join(run, "metrics.json")) as f:
        assert "layer_stats" not in json.load(f)


def test_tensorboard_without_layer_stats_is_refused():
    with pytest.raises(ConfigError, match="'log.tensorboard' needs log.layer_stats > 0"):
        validate_config({"network": {"model": "linear"}, "log": {"tensorboard": True}})
