"""The ``speed:`` section of a config: the passes that make a model faster without changing its
function, called explicitly before training (``npnet.fuse``, ``npnet.tune``), printed at the start
of a run and written to ``metrics.json``.

On several ranks rank 0 alone tunes, on the global batch's shape (the one a one-process run tunes
on), and ``DistributedDataParallel`` gives every rank its choices. A resumed run keeps the
checkpoint's algorithms (``train.checkpoint.ConvAlgorithms``) and does not tune.
"""
import time

import numpy as np

from .. import distributed
from ..nn.fusion import fuse, fused_modules
from ..nn.tuning import algorithms, tune
from .config import parse_algorithms


def apply_speed(model, speed, batch_shape, resuming=False, log=print, watched=False):
    """Fuses and tunes ``model`` in place as ``speed`` (the config's section) says; returns the
    record for ``metrics.json``: ``{"fuse", "fused", "tune", "algorithms"}``. ``watched``: the run's
    LayerStats watches every layer, so nothing is fused (a hooked layer never is)."""
    if speed["fuse"] and not watched:
        fuse(model)
    tuned = speed["tune"] and not resuming
    seconds = 0.0
    if tuned and distributed.rank() == 0:
        t0 = time.perf_counter()
        tune(model, np.zeros(batch_shape, np.float32), parse_algorithms(speed["algorithms"]), train=True)
        seconds = time.perf_counter() - t0
    record = {"fuse": speed["fuse"] and not watched, "watched": watched, "fused": fused_modules(model), "tune": tuned,
              "algorithms": algorithms(model)}
    if distributed.is_writer() and not resuming:  # resuming: said by resumed() once they are loaded
        log(describe(record, seconds))
    return record


def resumed(trainer, log=print):
    """After a checkpoint was loaded into ``trainer``: its algorithms into the record, said once."""
    trainer.speed["algorithms"] = algorithms(trainer.model)
    if distributed.is_writer():
        log(describe(trainer.speed, resuming=True))


def describe(record, seconds=0.0, resuming=False):
    """One line on what the passes did."""
    fused = f"fused {len(record['fused'])} groups" if record["fuse"] else "not fused"
    if record.get("watched"):
        fused = "not fused (log.layer_stats watches every layer)"
    counts = {}
    for a in record["algorithms"].values():
        counts[a] = counts.get(a, 0) + 1
    algos = ", ".join(f"{a} x{n}" for a, n in sorted(counts.items())) or "no convolution"
    how = ("the checkpoint's" if resuming else f"tuned in {seconds:.1f} s" if record["tune"]
           else "the fixed rule")
    return f"speed: {fused}; convolution algorithms ({how}): {algos}"
