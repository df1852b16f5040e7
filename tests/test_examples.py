"""Smoke tests: each example runs in a few seconds with --quick and writes its table and figures,
and its printed results to results.md; --quick runs go to their own folder; Ctrl-C ends with one
line."""
import importlib.util
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG = b"\x89PNG\r\n\x1a\n"
# a script's sys.path starts at its own folder: this checkout's npnet, not another installed one
ENV = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join(
    [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]


def run_example(name, tmp_path, *args):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), "--quick",
                           "--out", str(tmp_path), *args], capture_output=True, text=True, env=ENV,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    with open(os.path.join(tmp_path, "results.md"), encoding="utf-8") as f:
        results = f.read()
    printed = proc.stdout.splitlines()
    for line in results.splitlines():  # the file holds what was printed, line for line
        assert line in printed, line
    assert results.count("\n| ") >= 2 and results.endswith("\n")
    return proc.stdout, proc.stderr


def assert_epoch_lines(err, epochs):
    """Piped (not a terminal), the Trainer writes one line per epoch on stderr."""
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == [f"epoch {e}/{epochs}" for e in range(1, epochs + 1)]
    assert all("train loss" in line and "val loss" in line and "img/s" in line for line in lines), lines


def assert_pngs(folder, names):
    for name in names:
        with open(os.path.join(folder, name), "rb") as f:
            assert f.read(8) == PNG, name


def markdown_table(out, first):
    """The markdown table of ``out`` whose header starts with the cell ``first``: (header, rows)."""
    lines = out.splitlines()
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    start = next(i for i, (line, c) in enumerate(zip(lines, cells)) if line.startswith("|") and c[0] == first)
    assert set(lines[start + 1]) <= set("|-"), lines[start + 1]
    rows = []
    for line, c in zip(lines[start + 2:], cells[start + 2:]):
        if not line.startswith("|"):
            break
        assert len(c) == len(cells[start]), line
        rows.append(c)
    return cells[start], rows


def test_compare_classifiers(tmp_path):
    out, err = run_example("compare_classifiers.py", tmp_path)
    for row in ("linear (MSE, GD)", "2-layer (MSE, GD)", "2-layer (MSE, SGD b500)", "cnn-small (CE, momentum)"):
        assert f"| {row}" in out
    assert "| model" in out and "test accuracy" in out
    assert_pngs(tmp_path, ["learning_curves.png", "linear_weights.png", "confusion_cnn.png"])


def test_long_tail_focal(tmp_path):
    out, err = run_example("long_tail_focal.py", tmp_path)
    header, rows = markdown_table(out, "loss")
    assert header == ["loss", "beta", "gamma", *FASHION, "overall", "balanced"]
    assert rows[0][0] == "(training images)"
    counts = [int(c) for c in rows[0][3:13]]
    assert counts == sorted(counts, reverse=True) and counts[-1] >= 1 and counts[0] >= 100 * counts[-1]
    assert rows[1][:3] == ["cross-entropy", "-", "-"]
    focal = rows[2:]
    assert [r[1] for r in focal[:4]] == ["0.9", "0.99", "0.999", "0.9999"]
    assert {r[2] for r in focal[:4]} == {"1"} and [r[2] for r in focal[4:]] == ["0.5", "2"]
    assert all(r[0] == "CB focal (sigmoid)" for r in focal) and focal[4][1] == focal[5][1]
    for r in rows[1:]:
        assert all(0 <= float(a) <= 100 for a in r[3:])
    assert "wall time" in out
    assert_pngs(tmp_path, ["per_class_accuracy.png", "per_class_sweep.png"])


def test_cnn_batchnorm(tmp_path):
    out, err = run_example("cnn_batchnorm.py", tmp_path)
    assert_epoch_lines(err, 2)
    _, epochs = markdown_table(out, "epoch")
    assert [r[0] for r in epochs] == ["1", "2"] and [r[1] for r in epochs] == ["0.01", "0.001"]
    header, rows = markdown_table(out, "model")
    assert "test accuracy" in header and [r[0] for r in rows] == ["cnn-bn"]
    assert "wall time" in out
    assert_pngs(tmp_path, ["learning_curves.png", "confusion.png"])


def test_optimizers(tmp_path):
    out, err = run_example("optimizers.py", tmp_path)
    header, rows = markdown_table(out, "run")
    assert header[:3] == ["run", "optimizer", "dropout"] and "test accuracy" in header
    assert [r[:3] for r in rows] == [["SGD", "SGD", "0"], ["Adam", "Adam", "0"],
                                     ["Adam + dropout", "Adam", "0.25"]]
    assert "wall time" in out
    assert_pngs(tmp_path, ["learning_curves.png", "predictions.png", "confusion_sgd.png",
                           "confusion_adam.png", "confusion_adam_dropout.png"])


def test_resnet32(tmp_path):
    out, err = run_example("resnet32.py", tmp_path)
    assert_epoch_lines(err, 2)
    _, epochs = markdown_table(out, "epoch")
    assert [r[1] for r in epochs] == ["0.1", "0.01"]  # x0.1 after 50 % of the 2 epochs
    header, rows = markdown_table(out, "model")
    assert "test accuracy" in header and [r[0] for r in rows] == ["resnet32"]
    assert "wall time" in out
    assert_pngs(tmp_path, ["learning_curves.png", "confusion.png", "augmentation.png"])


def test_theory(tmp_path):
    out, err = run_example("theory.py", tmp_path)
    _, conv = markdown_table(out, "check")
    assert len(conv) == 2 and all(float(r[-1]) < 1e-12 for r in conv)  # float64 rounding only
    _, lin = markdown_table(out, "perturbation")
    error = {r[0].split(",")[0]: (r[2], float(r[3])) for r in lin}
    assert error["Jacobian by backward vs masked weight product"][1] < 1e-12
    assert error["tiny step"] == ("0", pytest.approx(0, abs=1e-12))
    assert error["inside the region"][0] == "0" and error["inside the region"][1] < 1e-12
    assert int(error["just across the first kink"][0]) >= 1 and error["just across the first kink"][1] > 1e-9
    assert_pngs(tmp_path, ["conv_matrix.png", "local_linear.png"])


def test_ctrl_c_stops_a_training_example_with_one_line(tmp_path):
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "cnn_batchnorm.py"), "--epochs",
                             "1", "--out", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, cwd=ROOT)
    try:
        for line in proc.stdout:  # the line printed just before training starts (minutes of it)
            if "parameters" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("Training interrupted in epoch 1") or last == "interrupted (Ctrl-C); no results written"
    assert not os.path.exists(os.path.join(tmp_path, "results.md"))


def load_common():
    spec = importlib.util.spec_from_file_location("examples_common", os.path.join(ROOT, "examples", "_common.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_runs_have_their_own_folder():
    common = load_common()
    parser = common.make_parser("An example.", "out/example", "smoke run", epochs=3, seed=0)
    assert parser.parse_args([]).out == "out/example"
    assert parser.parse_args(["--quick"]).out == "out/example-quick"
    assert parser.parse_args(["--quick", "--out", "elsewhere"]).out == "elsewhere"


def test_ctrl_c_in_an_example_ends_with_one_line(capsys):
    common = load_common()

    def main():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as e:
        common.run(main)
    assert e.value.code == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["interrupted (Ctrl-C); no results written"]

    class Stopped:
        interrupted = True

    with pytest.raises(SystemExit) as e:  # the Trainer stopped and said so: nothing more
        common.exit_if_interrupted(Stopped())
    assert e.value.code == 130 and capsys.readouterr().err == ""


def test_dead_relu(tmp_path):
    out, _ = run_example("dead_relu.py", tmp_path)
    header, rows = markdown_table(out, "run")
    assert [r[0] for r in rows] == ["sane lr", "lr too high", "bias -3", "BN, lr too high", "BN, bias -3"]
    dead_end = {r[0]: r[-1] for r in rows}
    assert dead_end["bias -3"] == "100% / 100% / 100%"  # every unit starts and stays dead
    assert dead_end["BN, bias -3"] == "0% / 0% / 0%"  # BatchNorm re-centres the pre-activations
    assert_pngs(tmp_path, ["dead_relu.png", "zero_fraction.png", "sane-lr/layer_stats.png"])


def test_distributed_mlp_takes_quick_and_out_on_one_process(tmp_path):
    out, _ = run_example("distributed_mlp.py", tmp_path)
    header, rows = markdown_table(out, "epoch")
    assert header == ["epoch", "train loss", "train accuracy", "test accuracy"]
    assert [r[0] for r in rows] == ["1", "2"]
    assert out.count("(1 process)") == 2 and "processes" not in out, out


@pytest.mark.parametrize("example", ["distributed_mlp.py", "cnn_batchnorm.py"])
def test_an_example_with_a_bad_out_says_so_in_one_line(tmp_path, example):
    taken = tmp_path / "taken"
    taken.write_text("")
    for out, said in [(taken, f"{taken} is a file, not a folder"),
                      (taken / "figures", f"{taken} is a file, so no folder {taken / 'figures'}")]:
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", example), "--quick",
                               "--out", str(out)], capture_output=True, text=True, timeout=600,
                              cwd=ROOT, env=ENV)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines() == [f"{example}: --out {out}: {said} can be made in it; give a "
                                            "folder you can write in" if out != taken else
                                            f"{example}: --out {out}: {said}; give a folder you can "
                                            "write in"], proc.stderr
        assert proc.stdout == ""  # nothing loaded or trained
    assert os.listdir(tmp_path) == ["taken"]


def test_compare_sequence_models(tmp_path):
    out, err = run_example("compare_sequence_models.py", tmp_path)
    header, rows = markdown_table(out, "model")
    assert header == ["model", "parameters", "epochs", "best val accuracy", "test accuracy", "train time (s)"]
    assert [r[0] for r in rows] == ["RNN", "LSTM", "GRU", "Transformer"]
    assert all(0 <= float(r[4].rstrip("%")) <= 100 for r in rows)
    assert "sequences of 28 steps x 28 features" in out
    assert_pngs(tmp_path, ["learning_curves.png"])


def test_char_language_model(tmp_path):
    out, err = run_example("char_language_model.py", tmp_path)
    header, rows = markdown_table(out, "model")
    assert header[:5] == ["model", "parameters", "epochs", "val perplexity", "test perplexity"]
    assert [r[0] for r in rows] == ["LSTM", "Transformer"]
    assert all(1 < float(r[4]) < 200 for r in rows)  # a vocabulary of 99: uniform is 99
    assert out.count("--- sample after epoch 1") == 2 and "Last sample of the LSTM" in out
    assert_pngs(tmp_path, ["perplexity.png"])


def test_compare_sequence_models_torch(tmp_path):
    pytest.importorskip("torch")
    out, err = run_example("compare_sequence_models_torch.py", tmp_path, "--models", "GRU", "Transformer")
    header, rows = markdown_table(out, "model")
    assert header == ["model", "parameters", "epochs", "best val accuracy", "test accuracy", "train time (s)"]
    assert [r[:3] for r in rows] == [["GRU", "61,962", "1"], ["Transformer", "69,578", "1"]]
    assert all(0 <= float(r[4].rstrip("%")) <= 100 for r in rows)


def test_the_torch_twins_train_like_the_zoo_models(monkeypatch):
    """The twins of compare_sequence_models_torch.py take npnet's weights and follow npnet's
    training steps (Adam, clipping) to float32 rounding (the Transformer without dropout)."""
    torch = pytest.importorskip("torch")
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples"))
    for name in ("_common", "compare_sequence_models", "compare_sequence_models_torch"):
        # benchmarks/ has a _common module too, which another test may have imported by that name
        monkeypatch.delitem(sys.modules, name, raising=False)
    import compare_sequence_models_torch as ct
    from npnet import losses, optim
    from npnet.models import build_model
    from npnet.run.experiment import clip_before_step
    from npnet.train.step import train_step

    rng = np.random.default_rng(0)
    # two steps: the second runs on Adam's moments and the clipped gradients of the first
    x, y = rng.standard_normal((2, 32, 28, 28)).astype(np.float32), rng.integers(0, 10, (2, 32))
    for model_name in ct.MODELS.values():
        model = build_model(model_name, (28, 28), 10, rng=0, **({"dropout": 0.0} if "transformer" in model_name else {}))
        twin = ct.twin_of(model_name, model)
        if "transformer" in model_name:
            twin = ct.TransformerTwin(28, dropout=0.0)
            twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
        opt = clip_before_step(optim.Adam(model.parameters(), lr=ct.LR), ct.CLIP)
        topt = torch.optim.Adam(twin.parameters(), lr=ct.LR)
        for xb, yb in zip(x, y):
            ours = train_step(model, losses.CrossEntropyLoss(), opt, xb, yb)[0]
            assert ours == pytest.approx(ct.train_step(twin, topt, xb, yb), rel=1e-5), model_name
