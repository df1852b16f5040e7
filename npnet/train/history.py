"""History: what a training run measured, per step and per epoch, saved as CSV and JSON."""
import csv
import io
import json
import math
import os

from .._io import atomic_write

COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "time")


class History:
    """Per-step training losses and one row per epoch.

    ``step_loss``: the loss of every optimizer step, in order. ``epochs``: dicts with the keys of
    ``COLUMNS``: epoch (1-based), train loss and accuracy (running means over the epoch, in
    training mode), validation loss and accuracy (None without a validation loader), the learning
    rate used during the epoch and its wall time in seconds (training and validation).
    ``history["val_accuracy"]`` is a column.
    """

    def __init__(self, epochs=None, step_loss=None):
        self.epochs = [dict(row) for row in (epochs or [])]
        self.step_loss = [float(v) for v in (step_loss or [])]
        self.interrupted = False

    def add_step(self, loss):
        """Appends the loss of one optimizer step to ``step_loss``."""
        self.step_loss.append(float(loss))

    def add_epoch(self, **row):
        """Appends an epoch row; the keys must be among ``COLUMNS`` (a ValueError names others)."""
        unknown = sorted(set(row) - set(COLUMNS))
        if unknown:
            raise ValueError(f"History.add_epoch: unknown columns {unknown}; expected {COLUMNS}")
        self.epochs.append({k: row.get(k) for k in COLUMNS})

    def __len__(self):
        return len(self.epochs)

    def __getitem__(self, column):
        if column not in COLUMNS:
            raise KeyError(f"History has no column {column!r}; columns: {', '.join(COLUMNS)}")
        return [row[column] for row in self.epochs]

    def best(self, monitor="val_accuracy", mode="max"):
        """``(epoch, value)`` of the best finite value of a column, or (None, None)."""
        rows = [(r["epoch"], r[monitor]) for r in self.epochs
                if r.get(monitor) is not None and math.isfinite(r[monitor])]
        if not rows:
            return None, None
        pick = max if mode == "max" else min
        return pick(rows, key=lambda er: er[1])

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self):
        """The history as plain JSON-ready lists and dicts (``from_dict`` reads it back)."""
        return {"epochs": [dict(r) for r in self.epochs], "step_loss": list(self.step_loss)}

    @classmethod
    def from_dict(cls, d):
        """A History from ``to_dict()``'s output."""
        return cls(d.get("epochs"), d.get("step_loss"))

    def to_json(self, path):
        """Writes ``to_dict()`` as JSON to ``path`` atomically; returns the path."""
        text = json.dumps(self.to_dict(), indent=1)
        return atomic_write(path, lambda f: f.write(text.encode()))

    @classmethod
    def load(cls, path):
        """A History from a JSON file written by ``to_json``."""
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def to_csv(self, path):
        """One row per epoch with the ``COLUMNS`` header; empty cells for missing values."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.epochs:
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in COLUMNS})
        return atomic_write(path, lambda f: f.write(buf.getvalue().encode()))

    def save(self, folder, stem="history"):
        """Writes ``<stem>.csv`` and ``<stem>.json`` in ``folder``; returns both paths."""
        return (self.to_csv(os.path.join(folder, f"{stem}.csv")),
                self.to_json(os.path.join(folder, f"{stem}.json")))

    def __repr__(self):
        return f"History(epochs={len(self.epochs)}, steps={len(self.step_loss)})"
