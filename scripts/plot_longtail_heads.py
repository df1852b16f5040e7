"""One figure with both classifier heads of the long-tail sweep: test accuracy against the loss
(cross-entropy, then class-balanced focal loss at each beta), mean and std over the seeds that
finished, one line per head. Reads each sweep's ``trials.csv`` (``npnet sweep
configs/sweeps/longtail_beta.yaml``, with and without ``--set
network.options.head_activation=sigmoid``).

    python scripts/plot_longtail_heads.py docs/results/longtail_beta/trials.csv \
        docs/results/longtail_beta_relu/trials.csv --labels "Sigmoid head" "ReLU head" \
        --out docs/results/longtail_beta_relu/accuracy_vs_beta_both_heads.png
"""
import argparse
import csv

import numpy as np

from npnet import plots


def points(path):
    """``{x label: [test accuracies in %]}`` of the finished trials, in the sweep's order."""
    out = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["status"] != "done":
                continue
            x = "CE" if row["loss.loss_type"] == "CE" else f"focal {row['loss.beta']}"
            out.setdefault(x, []).append(100 * float(row["test_accuracy"]))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trials", nargs="+", help="trials.csv of each sweep")
    p.add_argument("--labels", nargs="+", required=True, help="one line label per file")
    p.add_argument("--out", required=True, help="PNG to write")
    args = p.parse_args()
    if len(args.labels) != len(args.trials):
        p.error(f"{len(args.trials)} files but {len(args.labels)} labels")
    order = ["CE", "focal 0.9", "focal 0.99", "focal 0.999", "focal 0.9999"]
    lines = {}
    for label, path in zip(args.labels, args.trials):
        pts = points(path)
        xs = [x for x in order if x in pts]
        seeds = sorted({len(pts[x]) for x in xs})
        name = f"{label} (seeds per point: {'/'.join(map(str, seeds))})"
        lines[name] = (xs, [np.mean(pts[x]) for x in xs],
                       [np.std(pts[x]) if len(pts[x]) > 1 else 0.0 for x in xs])
    plots.plot_sweep_lines({"test accuracy (%)": lines}, "loss (beta of the class-balanced weights)",
                           path=args.out, title="cnn-small on the x100 long tail of Fashion-MNIST")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
