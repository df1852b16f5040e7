"""``run_sweep``: the driver of ``npnet sweep``. It decides which trials run, hands them to a
backend (local processes or Ray), records each result as it comes back, and writes the sweep
folder ``<out>/<sweep name>/``:

* ``results.json``: every trial's record (config, grid values, seed, status, metrics, per-class
  accuracy, history, error), rewritten atomically after each trial, so that a sweep stopped
  by Ctrl-C, a lost worker or a reboot loses at most the trials that were running;
* ``trials.csv``, ``summary.md`` and the figures (see ``sweep_report``), from those records;
* ``trials/<trial id>/``: each trial's run folder (on the node that ran it, at this path).

Running a sweep again skips the trials recorded as done, stopped early (ASHA) or diverged (a
diverged trial would diverge again) and runs the others; an interrupted trial resumes from its
``last.npz``. Nothing is written before the backend is ready (a Ray head that cannot be reached
leaves no folder). Progress: a bar on a terminal; when the output goes to a file, one line per
epoch of each running trial (local backend) and one per finished trial.
"""
import contextlib
import json
import os
import sys

from .._io import atomic_write_text
from .config import as_current
from .experiment import RunError, load_data
from .overrides import differing_keys
from .stopper import Stopper

FINAL = ("done", "stopped", "diverged")  # a rerun does not run these again


def load_records(folder):
    """``{trial id: record}`` from ``folder/results.json`` ({} if there is none)."""
    path = os.path.join(folder, "results.json")
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)["trials"]
    except (OSError, ValueError, KeyError) as e:
        raise RunError(f"{path}: cannot read the sweep's records ({e}); move the folder away to "
                       "start the sweep afresh") from None


def save_records(folder, sweep, records):
    ordered = {t.id: records[t.id] for t in sweep.trials if t.id in records}
    text = json.dumps({"sweep": sweep.name, "keys": sweep.keys, "seeds": sweep.seeds,
                       "trials": ordered}, indent=1)
    atomic_write_text(os.path.join(folder, "results.json"), text)


def plan(sweep, records):
    """The trials still to run; ``RunError`` if a finished trial's record was made with another
    config (the sweep file or a base config changed since; a key that npnet added since, at its
    default value, is no change: ``config.as_current``)."""
    for trial in sweep.trials:
        record = records.get(trial.id)
        if record and record["status"] in FINAL:
            keys = differing_keys(as_current(record["config"]), trial.config)
            if keys:
                raise RunError(f"trial {trial.id} finished earlier with another config (differs at "
                               f"{', '.join(keys)}); the sweep file or its base changed. Use "
                               "another --out, or move the old sweep folder away")
    return [t for t in sweep.trials if records.get(t.id, {}).get("status") not in FINAL]


def check_data(trials):
    """Loads each dataset the trials need once, so that missing data is one message before any
    trial starts (local backend: the trials run on this machine)."""
    seen = set()
    for trial in trials:
        d = trial.config["data"]
        if (d["dataset"], d["root"]) not in seen:
            seen.add((d["dataset"], d["root"]))
            load_data(trial.config)


def run_sweep(sweep, out, backend="local", workers=1, threads=1, address=None, asha=None,
              progress=None, log=print):
    """Runs the sweep; returns the exit status: 0 every trial done (or diverged), 1 some failed,
    130 stopped by Ctrl-C. ``asha``: None, or ``{"grace_period": epochs}`` (Ray only). Without a
    progress bar on a terminal, ``log`` gets the lines of the module docstring."""
    folder = os.path.abspath(os.path.join(out, sweep.name))
    records = load_records(folder)
    todo = plan(sweep, records)
    if backend == "local" or not address:  # the trials run on this machine
        check_data(todo)
    stopper = Stopper()
    with _backend(backend if todo else "none", address) as run_trials:  # Ray connects here
        os.makedirs(folder, exist_ok=True)  # only once the trials can run
        specs = [{"id": t.id, "config": t.config, "threads": threads,
                  "run_dir": os.path.join(folder, "trials", t.id)} for t in todo]
        done = len(sweep.trials) - len(todo)
        log(f"sweep {sweep.name}: {len(sweep.trials)} trials, {done} already finished; "
            f"{backend} backend, {workers} worker(s) x {threads} thread(s); folder {folder}")
        bar = _bar(sweep, done, progress)
        on_result, on_progress = _recorder(sweep, folder, records, bar, done, log)
        try:
            with stopper.installed():
                run_trials(specs, workers=workers, threads=threads, asha=asha,
                           on_result=on_result, on_progress=on_progress, stopper=stopper)
        finally:
            bar.close()
            _write_outputs(folder, sweep, records, log)
    return _status(sweep, records, stopper, log)


def _recorder(sweep, folder, records, bar, done, log):
    """``on_result`` and ``on_progress`` of the backends. ``on_result`` records a trial's result,
    saves the records and says how the trial ended: on the bar's line, or as a log line when
    there is no bar or the log goes to a file (``npnet sweep ... > sweep.log``); there,
    ``on_progress`` also logs each epoch of a running trial (local backend)."""
    by_id, finished = {t.id: t for t in sweep.trials}, [done]
    lines = bar.disable or not _is_terminal(sys.stdout)

    def on_result(result):
        trial = by_id[result["id"]]
        records[trial.id] = dict(result, values=trial.values, seed=trial.seed, config=trial.config)
        save_records(folder, sweep, records)
        bar.update(1)
        finished[0] += 1
        if lines:
            log(f"trial {finished[0]}/{len(sweep.trials)} {_outcome(trial, result)}")
            sys.stdout.flush()  # a file is block-buffered: the line is there when the trial ends
        elif result["status"] not in ("done", "stopped"):
            bar.write(f"trial {_outcome(trial, result)}")
        else:
            bar.set_postfix(last=f"{trial.id} {100 * result['metrics']['test_accuracy']:.2f}%")

    def on_progress(trial_id, line):
        if lines:
            log(f"  {trial_id}: {line}")
            sys.stdout.flush()
    return on_result, on_progress


def _outcome(trial, result):
    """``<id>: done, test accuracy 81.20 % (12 s)`` or ``<id>: failed: <the error's first line>``."""
    seconds = f" ({result['seconds']:.0f} s)" if result.get("seconds") is not None else ""
    if result["status"] in ("done", "stopped") and result.get("metrics"):
        acc = 100 * result["metrics"]["test_accuracy"]
        return f"{trial.id}: {result['status']}, test accuracy {acc:.2f} %{seconds}"
    error = (result.get("error") or "no reason recorded").strip().splitlines()[0]
    return f"{trial.id}: {result['status']}: {error}{seconds}"


def _backend(name, address):
    """A context manager that yields the function running trial specs on backend ``name``
    ("local", "ray", or "none" when nothing is left to run)."""
    if name == "ray":
        from .sweep_ray import ray_backend
        return ray_backend(address)
    if name == "none":
        return contextlib.nullcontext(lambda specs, **_: None)
    from .sweep_local import run_local
    return contextlib.nullcontext(
        lambda specs, workers, on_result, stopper, on_progress, **_: run_local(
            specs, workers, on_result, stopper, on_progress))


def _bar(sweep, done, progress):
    from tqdm.auto import tqdm
    show = progress if progress is not None else _is_terminal(sys.stderr)
    return tqdm(total=len(sweep.trials), initial=done, desc=f"sweep {sweep.name}", unit="trial",
                disable=not show, dynamic_ncols=True, file=sys.stderr)


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _write_outputs(folder, sweep, records, log):
    from .sweep_report import write_report
    if records:
        write_report(folder, sweep, records)
        log(f"sweep results: {os.path.join(folder, 'summary.md')}")


def _status(sweep, records, stopper, log):
    counts = {}
    for t in sweep.trials:
        status = records.get(t.id, {}).get("status", "not run")
        counts[status] = counts.get(status, 0) + 1
    log("trials: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if stopper.stopping:
        log("stopped by Ctrl-C: run the same command again to finish the sweep (finished "
            "trials are skipped, interrupted ones resume from their last checkpoint)")
        return 130
    if counts.get("failed") or counts.get("interrupted") or counts.get("not run"):
        return 1
    return 0

