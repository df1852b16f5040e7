"""A markdown table of ``LayerStats`` statistics side by side for several runs: the median of each
statistic over the samples in a step range, one row per (statistic, layer), one column per run;
optionally the same statistic drawn across the runs (``plot_statistic_by_run``).

    python scripts/layer_stats_table.py RUN_A/layer_stats.csv RUN_B/layer_stats.csv \
        --labels A B --stats grad_norm saturation --steps 0 117 [--plot grad_norm --out fig.png]
"""
import argparse

import numpy as np

from npnet import plots
from npnet.train import read_layer_stats_csv


def median_in(points, lo, hi):
    vals = [v for s, v in points if lo <= s < hi and np.isfinite(v)]
    return float(np.median(vals)) if vals else float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv", nargs="+")
    p.add_argument("--labels", nargs="+", required=True)
    p.add_argument("--stats", nargs="+", default=["grad_norm", "update_ratio", "saturation"])
    p.add_argument("--steps", nargs=2, type=int, default=(0, 10 ** 9), metavar=("FROM", "TO"),
                   help="the step range [FROM, TO) of the medians")
    p.add_argument("--plot", help="a statistic to draw across the runs")
    p.add_argument("--out", help="PNG of --plot")
    args = p.parse_args()
    runs = {label: read_layer_stats_csv(path) for label, path in zip(args.labels, args.csv)}
    lo, hi = args.steps
    print(f"median over steps [{lo}, {hi})\n")
    print("| statistic | layer | " + " | ".join(runs) + " |")
    print("|---|---|" + "---|" * len(runs))
    layers = list(dict.fromkeys(layer for stats in runs.values() for layer in stats))
    for stat in args.stats:
        for layer in layers:
            cells = [median_in(stats.get(layer, {}).get(stat, []), lo, hi) for stats in runs.values()]
            if all(np.isnan(c) for c in cells):
                continue
            print(f"| {stat} | {layer} | " + " | ".join("-" if np.isnan(c) else f"{c:.3g}" for c in cells) + " |")
    if args.plot:
        plots.plot_statistic_by_run(runs, args.plot, args.out, title=args.plot)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
