"""``npnet export RUN --format onnx``: a trained run's model as a file other tools run.

    npnet export runs/cnn_small-20260101-120000 --format onnx    # -> that folder's model.onnx

The run is found as ``npnet evaluate`` finds it (``trained.load_run``: a run folder, whose
best.npz or last.npz it reads, or one checkpoint file). The file computes the model alone, in
eval mode: its input is what the model reads after the run's test-time preprocessing, which the
file's metadata says in words (``npnet.input``), with the class names (``npnet.classes``) or a
language model's characters (``npnet.vocab``).
"""
import json
import os

import numpy as np

from .._io import check_writable_folder

FORMATS = ("onnx",)


def example_input(run, batch=1):
    """A batch of ``batch`` inputs of the shape and dtype the run's model reads: zero images through
    the run's own test transform (a sequence model gets their rows), or windows of
    ``data.seq_len`` token ids for a language model."""
    if hasattr(run, "vocab"):
        return np.zeros((batch, run.config["data"]["seq_len"]), np.int64)
    return run.transform(np.zeros((batch,) + run.image_shape, np.uint8))


def describe_input(run):
    """The metadata of the file: what its input is, and what its outputs mean."""
    if hasattr(run, "vocab"):
        return {"npnet.input": f"int64 (batch, T) token ids, T up to the window the model learnt "
                               f"({run.config['data']['seq_len']}); id i is npnet.vocab[i]; the output "
                               "is (batch, V, T) next-id logits",
                "npnet.vocab": json.dumps(list(run.vocab.chars))}
    norm = run.transform.transforms[0] if hasattr(run.transform, "transforms") else run.transform
    rows = ", then read row by row as (N, H, C*W)" if hasattr(run.transform, "transforms") else ""
    return {"npnet.input": f"float32 images (N, C, H, W) {run.image_shape} scaled to [0, 1], then "
                           f"(x - mean) / std per channel with mean {norm.mean} and std {norm.std}{rows}; "
                           "the output is (batch, classes) logits",
            "npnet.classes": json.dumps(list(run.classes))}


def default_path(path):
    """Where the file goes without ``--out``: ``model.onnx`` in a run folder, or the checkpoint's
    name with ``.onnx`` beside a checkpoint file (a folder given as ``--out`` gets model.onnx too)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return os.path.join(path, "model.onnx")
    return os.path.splitext(path)[0] + ".onnx"


def export_run(path, fmt="onnx", out=None, batch=None, weights="best"):
    """Writes the model of the run (folder or checkpoint) ``path`` in ``fmt`` and returns
    ``(the file's path, the run)``. ``batch``: a fixed batch size in the file (default: the
    symbol ``"batch"``, any size). ValueError / OSError for a path that is not a run, a bad
    option or a model that cannot be written (``npnet.onnx.ExportError`` names the layer)."""
    from .. import onnx
    from .trained import load_run
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if batch is not None and batch < 1:
        raise ValueError(f"--batch must be >= 1, got {batch}")
    run = load_run(path, weights)
    out = default_path(path) if out is None else os.fspath(out)
    if os.path.isdir(out):
        out = os.path.join(out, "model.onnx")
    try:  # before the model is converted: a folder that cannot hold the file is said first
        check_writable_folder(os.path.dirname(os.path.abspath(out)))
    except ValueError as e:
        raise ValueError(f"cannot write {out}: {e}") from None
    meta = dict(describe_input(run), **{"npnet.model": run.config["network"]["model"],
                                         "npnet.checkpoint": os.path.basename(run.checkpoint)})
    onnx.export(run.model, example_input(run, batch or 1), out, dynamic_batch=batch is None, metadata=meta)
    return out, run
