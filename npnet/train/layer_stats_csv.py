"""The file format of ``LayerStats``: ``layer_stats.csv``, one ``step,layer,statistic,value`` row
per recorded value. Its writer and its reader live here together, so that the two never drift."""
import csv
import io
import os

from .._io import atomic_write_text

__all__ = ["write_layer_stats_csv", "read_layer_stats_csv", "as_layer_stats"]

HEADER = ("step", "layer", "statistic", "value")


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


def as_layer_stats(stats):
    """``LayerStats.stats`` given as it is, or read from its CSV file (a path)."""
    if isinstance(stats, (str, os.PathLike)):
        return read_layer_stats_csv(stats)
    return stats
