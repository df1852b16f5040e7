"""The sweep folder's tables and figures, from the trial records of ``sweep_run``:

* ``trials.csv``: one row per trial: its grid values and seed, status, test and balanced
  accuracy, best validation accuracy, per-class accuracy, epochs, wall time, run folder, error;
* ``summary.md``: the same table, the best trial per metric, mean ± std over seeds (the mean
  alone where one seed finished);
* ``<metric>_vs_<key>.png``: test and balanced accuracy against each swept key, one line per
  value of the other keys, the spread over seeds as error bars;
* ``per_class_heatmap.png``: trials x classes per-class test accuracy.
"""
import csv
import io
import os

import numpy as np

from .._io import atomic_write_text
from .sweep_spec import format_value

METRICS = (("test_accuracy", "test accuracy"), ("balanced_accuracy", "balanced accuracy"),
           ("best_val_accuracy", "best val accuracy"))


def write_report(folder, sweep, records):
    """Writes trials.csv, summary.md and the figures of the recorded trials into ``folder``."""
    rows = [(t, records.get(t.id)) for t in sweep.trials]
    classes = next((r["metrics"]["classes"] for _, r in rows if r and r.get("metrics")), [])
    atomic_write_text(os.path.join(folder, "trials.csv"), _csv(sweep, rows, classes))
    figures = _figures(folder, sweep, rows, classes)
    atomic_write_text(os.path.join(folder, "summary.md"), _summary(sweep, rows, figures))


def _metric(record, key):
    m = record.get("metrics") if record else None
    return None if not m or m.get(key) is None else float(m[key])


def _csv(sweep, rows, classes):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["trial", *sweep.keys, "seed", "status", *(k for k, _ in METRICS),
                *(f"acc_{c}" for c in classes), "epochs", "seconds", "run_dir", "error"])
    for trial, rec in rows:
        rec = rec or {"status": "not run"}
        per_class = (rec.get("metrics") or {}).get("per_class_accuracy") or {}
        w.writerow([trial.id, *(format_value(trial.values[k]) if k in trial.values else ""
                                for k in sweep.keys),
                    "" if trial.seed is None else trial.seed, rec["status"],
                    *(_cell(_metric(rec, k)) for k, _ in METRICS),
                    *(_cell(per_class.get(c)) for c in classes),
                    len(rec.get("history") or []), _cell(rec.get("seconds"), 1),
                    rec.get("run_dir", ""), _first_line(rec.get("error"))])
    return buf.getvalue()


def _first_line(text):
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _cell(value, digits=4):
    return "" if value is None else f"{value:.{digits}f}"


def _pct(value):
    return "-" if value is None else f"{100 * value:.2f}"


def _summary(sweep, rows, figures):
    keys = sweep.keys
    lines = [f"# Sweep {sweep.name}", "", f"Sweep file: `{sweep.path}`; {len(rows)} trials "
             f"({', '.join(keys)}" + (f"; seeds {sweep.seeds}" if sweep.seeds else "") + ").", "",
             "| trial | " + " | ".join(keys) + " | seed | status | test acc. % | balanced % | "
             "best val % | epochs | time (s) |",
             "|---" * (len(keys) + 8) + "|"]
    for trial, rec in rows:
        rec = rec or {"status": "not run"}
        lines.append(f"| {trial.id} | " + " | ".join(format_value(trial.values.get(k, "")) for k in keys)
                     + f" | {'' if trial.seed is None else trial.seed} | {rec['status']} | "
                     + " | ".join(_pct(_metric(rec, k)) for k, _ in METRICS)
                     + f" | {len(rec.get('history') or [])} | {_cell(rec.get('seconds'), 0)} |")
    lines += ["", "## Best trial per metric", ""] + _best(rows)
    lines += _seed_stats(sweep, rows)
    failed = [(t, r) for t, r in rows if r and r["status"] not in ("done",)]
    if failed:
        lines += ["", "## Trials that did not finish", ""]
        lines += [f"- {t.id}: {r['status']}: {_first_line(r.get('error'))}" for t, r in failed]
    lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures]
    return "\n".join(lines) + "\n"


def _best(rows):
    out = []
    for key, label in METRICS:
        scored = [(t, _metric(r, key)) for t, r in rows if _metric(r, key) is not None]
        if scored:
            t, v = max(scored, key=lambda tv: tv[1])
            out.append(f"- {label}: {100 * v:.2f} % ({t.id})")
    return out or ["- no trial finished"]


def _groups(rows):
    """``{grid values (as a tuple of (key, value)): [record, ...]}`` over the seeds."""
    out = {}
    for trial, rec in rows:
        out.setdefault(tuple((k, format_value(trial.values[k])) for k in trial.values), []).append(rec)
    return out


def _seed_stats(sweep, rows):
    if len(sweep.seeds) < 2:
        return []
    lines = ["", f"## Mean ± std over seeds {sweep.seeds}", "",
             "| " + " | ".join(sweep.keys) + " | n | test acc. % | balanced % |",
             "|---" * (len(sweep.keys) + 3) + "|"]
    for values, recs in _groups(rows).items():
        cells = []
        for key in ("test_accuracy", "balanced_accuracy"):
            vals = [_metric(r, key) for r in recs if _metric(r, key) is not None]
            cells.append(_mean_std(vals))
        n = sum(1 for r in recs if _metric(r, "test_accuracy") is not None)
        lines.append("| " + " | ".join(v for _, v in values) + f" | {n} | " + " | ".join(cells) + " |")
    return lines


def _mean_std(values):
    """``81.20 ± 0.35`` in %; one value has no spread to show, none is ``-``."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * np.mean(values):.2f} ± {100 * np.std(values):.2f}"


def _figures(folder, sweep, rows, classes):
    from .. import plots
    done = [(t, r) for t, r in rows if _metric(r, "test_accuracy") is not None]
    if not done:
        return []
    names = []
    for key in sweep.keys:
        panels = {label: _lines(done, key, metric) for metric, label in METRICS[:2]}
        refs = {label: _references(done, key, metric) for metric, label in METRICS[:2]}
        name = f"accuracy_vs_{key}.png"
        xs = [t.values[key] for t, _ in done if key in t.values]
        plots.plot_sweep_lines(panels, key, path=os.path.join(folder, name),
                               title=f"{sweep.name}: accuracy against {key}",
                               log_x=_log_scale(xs), references=refs)
        names.append(name)
    acc = [[(r["metrics"]["per_class_accuracy"] or {}).get(c, np.nan) for c in classes]
           for _, r in done]
    plots.plot_accuracy_heatmap(np.array(acc, float), [t.id for t, _ in done], classes,
                                path=os.path.join(folder, "per_class_heatmap.png"),
                                title=f"{sweep.name}: per-class test accuracy (%)")
    return names + ["per_class_heatmap.png"]


def _label(values, leave_out):
    return ", ".join(f"{k}={format_value(v)}" for k, v in values.items() if k != leave_out)


def _lines(done, key, metric):
    """``{label of the other keys' values: (xs, means, stds)}`` for one swept key, over the
    trials that have it (mean and std over seeds)."""
    series = {}
    for trial, rec in done:
        if key in trial.values:
            series.setdefault(_label(trial.values, key), {}).setdefault(
                _x(trial.values[key], done, key), []).append(_metric(rec, metric))
    out = {}
    for label, points in series.items():
        xs = sorted(points, key=lambda x: (isinstance(x, str), x))
        out[label] = (xs, [np.mean(points[x]) for x in xs], [np.std(points[x]) for x in xs])
    return out


def _references(done, key, metric):
    """``{label: (mean, std)}`` of the trials of a union grid that do not sweep ``key`` (e.g. the
    cross-entropy baseline beside a beta sweep): horizontal lines in its figure."""
    series = {}
    for trial, rec in done:
        if key not in trial.values:
            series.setdefault(_label(trial.values, key), []).append(_metric(rec, metric))
    return {label: (np.mean(v), np.std(v)) for label, v in series.items()}


def _x(value, done, key):
    """The x of a value: numbers stay numbers unless the key's values are spaced too unevenly
    for a linear axis and not spread enough for a log one (betas 0.9 ... 0.9999): then labels."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return format_value(value)
    nums = sorted({t.values[key] for t, _ in done if key in t.values})
    gaps = np.diff(nums)
    uneven = len(gaps) > 1 and gaps.max() > 10 * gaps.min()
    return format_value(value) if uneven and not _log_scale(nums) else value


def _log_scale(values):
    """A log x axis for positive numbers that span more than two decades."""
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return bool(nums) and len(nums) == len(values) and min(nums) > 0 and max(nums) / min(nums) > 100
