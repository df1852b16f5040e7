"""The records of ``npnet.train.LayerStats`` and their file, ``layer_stats.csv``: one
``step,layer,statistic,value`` row per recorded value. Its writer (used by ``LayerStats``) and its
reader (used by ``npnet.plots``, which draws the records without importing ``npnet.train``) live here
together on floor 0, so that the two never drift.

Records: ``{layer: {statistic: [(step, value)]}}`` (``LayerStats.stats``)."""
import csv
import io

from ._io import atomic_write_text

__all__ = ["STATISTICS", "write_layer_stats_csv", "read_layer_stats_csv"]

HEADER = ("step", "layer", "statistic", "value")
# what LayerStats records (its module docstring says how), in the order its figures show them
STATISTICS = ("out_mean", "out_std", "zero_fraction", "saturation", "dead_fraction", "grad_norm", "update_ratio")


def write_layer_stats_csv(rows, path):
    """Writes ``(step, layer, statistic, value)`` rows (``LayerStats.rows()``) to ``path``
    atomically, under the header ``step,layer,statistic,value``; returns the path."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def read_layer_stats_csv(path):
    """``{layer: {statistic: [(step, value)]}}`` (the form of ``LayerStats.stats``) from a file
    written by ``write_layer_stats_csv``; ValueError naming the file if its header is another."""
    out = {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != HEADER:
            raise ValueError(f"{path}: not a layer_stats.csv; expected the header "
                             f"{','.join(HEADER)}, got {','.join(reader.fieldnames or ()) or 'none'}")
        for row in reader:
            points = out.setdefault(row["layer"], {}).setdefault(row["statistic"], [])
            points.append((int(row["step"]), float(row["value"])))
    return out

