"""Every code block of ``docs/guide/coming_from_pytorch.md`` runs as the page shows it, and so does
every ``python`` block of ``docs/guide/sequences.md`` (the last test).

The page's ``python`` blocks say on their first line whose they are: ``# npnet``, ``# PyTorch`` or
``# npnet + PyTorch``. The npnet blocks run in page order in one namespace (in a temporary folder);
with torch installed the PyTorch blocks run too, in their own namespace, each before the npnet
block that follows it (the npnet side loads the file the PyTorch side saved); without torch, the
file PyTorch would have written is written by npnet from the same architecture. The run folder the
last block loads is a short ``npnet train`` run (as ``tests/test_trained_run.py`` trains).
"""
import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

PAGE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "coming_from_pytorch.md"
# a fence at the start of a line or of a list-table cell ("* - ```python", "  - ```python")
FENCE = re.compile(r"^(?P<lead>[ *-]*)```python\n(?P<body>.*?)^[ ]*```[ ]*$", re.M | re.S)
CONFIG = {"seed": 2,
          "train": {"batch_size": 50, "learning_rate": 0.05, "epochs": 1, "momentum": 0.9},
          "network": {"model": "cnn-small"},
          "data": {"dataset": "fashion-mnist-mini", "val_fraction": 0.2, "max_train": 200,
                   "max_test": 40}}


def blocks(text=None):
    """``(side, code)`` for every python block of the page, in page order, dedented."""
    text = PAGE.read_text(encoding="utf-8") if text is None else text
    found = []
    for m in FENCE.finditer(text):
        indent = len(m.group("lead"))
        code = "\n".join(line[indent:] for line in m.group("body").splitlines())
        side = code.splitlines()[0].lstrip("# ").strip()
        found.append((side, code))
    return found


def test_the_page_has_both_sides_of_a_training_step_and_of_predicting():
    found = blocks()
    assert {side for side, _ in found} == {"npnet", "PyTorch", "npnet + PyTorch"}
    npnet_code = "\n".join(code for side, code in found if side == "npnet")
    torch_code = "\n".join(code for side, code in found if side == "PyTorch")
    for line in ("optimizer.zero_grad()", "logits = model(x)", "loss = criterion(logits, y)",
                 "model.backward(criterion.backward(), input_grad=False)", "optimizer.step()",
                 "npnet.load(", "load_state_dict(", "npnet.load_run(run_folder)", ".predict(images)"):
        assert line in npnet_code, line
    for line in ("optimizer.zero_grad()", "loss.backward()", "optimizer.step()", "load_state_dict("):
        assert line in torch_code, line


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    from npnet.run.cli import main
    tmp = tmp_path_factory.mktemp("guide_run")
    (tmp / "c.yaml").write_text(yaml.safe_dump(CONFIG))
    assert main(["train", str(tmp / "c.yaml"), "--out", str(tmp / "runs"), "--quiet"]) == 0
    (run,) = os.listdir(tmp / "runs")
    return str(tmp / "runs" / run)


def _run(with_torch, run_folder, tmp_path, monkeypatch):
    import npnet
    monkeypatch.chdir(tmp_path)
    images = np.random.default_rng(0).integers(0, 256, (4, 1, 28, 28), dtype=np.uint8)
    ours, theirs = {"run_folder": run_folder, "images": images}, {}
    ran = []
    for side, code in blocks():
        if side == "npnet":
            if "cnn.safetensors" in code and not os.path.exists("cnn.safetensors"):
                npnet.save(ours["model"].state_dict(), "cnn.safetensors")  # what PyTorch saves
            exec(compile(code, f"{PAGE.name}:npnet", "exec"), ours)
        elif with_torch and side == "PyTorch":
            exec(compile(code, f"{PAGE.name}:PyTorch", "exec"), theirs)
        elif with_torch and side == "npnet + PyTorch":
            ours.update(load_file=theirs["load_file"])
            exec(compile(code, f"{PAGE.name}:npnet + PyTorch", "exec"), ours)
        else:
            continue
        ran.append(side)
    return ours, theirs, ran


def test_npnet_blocks_run(run_folder, tmp_path, monkeypatch, capsys):
    ours, _, ran = _run(False, run_folder, tmp_path, monkeypatch)
    assert ran.count("npnet") == 4
    assert ours["probs"].shape == (4, 10)
    assert "loss" in capsys.readouterr().out


def test_pytorch_blocks_run_beside_them(run_folder, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("safetensors.torch")
    ours, theirs, ran = _run(True, run_folder, tmp_path, monkeypatch)
    assert ran.count("PyTorch") == 2 and "npnet + PyTorch" in ran
    assert tuple(theirs["probs"].shape) == (32, 10)


SEQUENCES = PAGE.with_name("sequences.md")


def test_sequence_guide_blocks_run(tmp_path, monkeypatch, capsys):
    """Every ``python`` block of ``docs/guide/sequences.md`` runs, in page order, in one namespace
    (a few seconds: small layers, the embedded corpus and Fashion-MNIST subset)."""
    monkeypatch.chdir(tmp_path)
    found = [code for _, code in blocks(SEQUENCES.read_text(encoding="utf-8"))]
    assert len(found) >= 4
    namespace = {}
    for i, code in enumerate(found):
        exec(compile(code, f"{SEQUENCES.name}:block {i + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "python-source-mini" in out and "(64, 10)" in out
