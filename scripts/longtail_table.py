"""The per-class table of a long-tail sweep for RESULTS.md: one row per loss (and beta), the mean
over the seeds that finished of each class's test accuracy, then the test accuracy as mean ± std
over seeds with each seed's value. Reads the sweep's ``trials.csv``.

    python scripts/longtail_table.py /tmp/lt_sweeps/longtail_beta/trials.csv
"""
import argparse
import csv
from collections import defaultdict

import numpy as np


def read_rows(path):
    """The finished trials of ``trials.csv`` as dicts, and the class names in the file's order."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        classes = [c[len("acc_"):] for c in reader.fieldnames if c.startswith("acc_")]
        return [r for r in reader if r["status"] == "done"], classes


def loss_label(row):
    if row["loss.loss_type"] == "CE":
        return "cross-entropy", "-"
    return "CB focal", row.get("loss.beta") or "-"


def table(rows, classes):
    """Markdown lines: per (loss, beta) the class means and the accuracy over seeds."""
    groups = defaultdict(list)
    for r in rows:
        groups[loss_label(r)].append(r)
    head = ["loss", "beta"] + classes + ["test accuracy", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (loss, beta), trials in sorted(groups.items(), key=lambda g: -1 if g[0][1] == "-" else float(g[0][1])):
        trials.sort(key=lambda r: int(r["seed"]))
        per_class = [f"{100 * np.mean([float(r['acc_' + c]) for r in trials]):.1f}" for c in classes]
        acc = [100 * float(r["test_accuracy"]) for r in trials]
        spread = f" ± {np.std(acc):.2f}" if len(acc) > 1 else ""
        seeds = " / ".join(f"{a:.2f}" for a in acc) + f" (seeds {', '.join(r['seed'] for r in trials)})"
        lines.append("| " + " | ".join([loss, beta] + per_class + [f"**{np.mean(acc):.2f}{spread} %**", seeds]) + " |")
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trials", help="the sweep's trials.csv")
    rows, classes = read_rows(p.parse_args().trials)
    print("\n".join(table(rows, classes)))


if __name__ == "__main__":
    main()
