"""One trial of a sweep: ``Trial`` (a point of the grid, made by ``sweep_spec.load_sweep``) and
``run_trial``, which runs one where a worker runs it (a local process or a Ray task).

``run_trial(spec)`` takes and returns plain JSON-able dicts, so that any backend can carry them:

* spec: ``id``, ``config`` (validated), ``run_dir`` (the trial's run folder, an absolute path on
  the machine that runs it), ``threads`` (cores of this trial);
* result: ``id``, ``status`` ("done", "stopped" early by ASHA, "diverged", "failed",
  "interrupted"), ``error`` (message),
  ``traceback`` (for an unexpected error), ``metrics`` (test and balanced accuracy, per-class
  accuracy, best validation accuracy, epochs...), ``history`` (the epoch rows), ``seconds``
  (wall time of this attempt), ``run_dir``, ``host``.

A trial folder that holds a ``last.npz`` of the same config is resumed from it; a finished one
(``metrics.json``) is not trained again. Nothing raises out of ``run_trial`` except a second
Ctrl-C: every failure becomes a result, so that one bad trial never stops the others.
"""
import json
import os
import platform
import shutil
import time
import traceback
from dataclasses import dataclass, field

from .config import ConfigError, as_current, read_yaml
from .experiment import RunError
from .overrides import differing_keys
from .runner import checkpoint_config, run_experiment
from .threads import pin_threads

@dataclass
class Trial:
    """One point of the grid: ``values`` (dotted key -> value, in grid order), ``seed`` (or None
    when the sweep has no seeds), its validated ``config`` and ``id`` (a folder-safe name)."""

    values: dict
    seed: object
    config: dict = field(repr=False)
    id: str


RESULT_METRICS = ("test_accuracy", "balanced_accuracy", "per_class_accuracy", "classes",
                  "best_val_accuracy", "best_epoch", "epochs", "train_seconds")


def run_trial(spec, callbacks=()):
    """Runs the trial ``spec`` (see the module docstring); returns its result dict."""
    start = time.perf_counter()
    result = {"id": spec["id"], "status": "failed", "error": None, "traceback": None,
              "metrics": None, "history": None, "run_dir": spec["run_dir"],
              "host": platform.node()}
    try:
        pin_threads(spec.get("threads", 1))
        result.update(_run(spec, callbacks))
    except RunError as e:
        result["error"] = str(e)
    except KeyboardInterrupt:
        result.update(status="interrupted", error="stopped by Ctrl-C before training began")
    except Exception as e:  # noqa: BLE001  recorded with its traceback; the sweep goes on
        result.update(error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    result["seconds"] = time.perf_counter() - start
    return result


def _run(spec, callbacks):
    run, config = spec["run_dir"], spec["config"]
    finished = _finished(run, config)
    if finished is not None:
        return finished
    resume = _resumable(run, config)
    os.makedirs(run, exist_ok=True)
    with open(os.path.join(run, "log.txt"), "a", encoding="utf-8") as log_file:
        def log(*parts):
            print(*parts, file=log_file, flush=True)
        log(f"--- trial {spec['id']} on {platform.node()}, "
            f"{'resumed from ' + resume if resume else 'fresh start'}")
        out = run_experiment(config, resume=resume, progress=False, log=log, run_dir=run,
                             callbacks=callbacks)
    metrics = out["metrics"] and {k: out["metrics"].get(k) for k in RESULT_METRICS}
    status, error = out["status"], out["error"]
    if status == "done" and metrics["epochs"] < config["train"]["epochs"]:
        status = "stopped"  # early, by a callback (ASHA): tested as it was
        error = f"stopped early by ASHA after {metrics['epochs']} epochs"
    return {"status": status, "error": error, "metrics": metrics,
            "history": out["history"]["epochs"]}


def _finished(run, config):
    """The result of a trial that already finished in ``run`` with this config, or None."""
    paths = [os.path.join(run, f) for f in ("config.yaml", "metrics.json", "history.json")]
    if not all(os.path.isfile(p) for p in paths):
        return None
    try:
        if differing_keys(as_current(read_yaml(paths[0])), config):
            return None
    except ConfigError:  # an unreadable config.yaml: not a finished run of this config
        return None
    with open(paths[1], encoding="utf-8") as f:
        metrics = json.load(f)
    with open(paths[2], encoding="utf-8") as f:
        history = json.load(f)["epochs"]
    return {"status": "done", "metrics": {k: metrics.get(k) for k in RESULT_METRICS},
            "history": history}


def _resumable(run, config):
    """``run/last.npz`` if it continues this trial's config with epochs left; a folder that
    holds another config or a finished but unreported run is cleared for a fresh start."""
    last = os.path.join(run, "last.npz")
    if not os.path.isfile(last):
        return None
    try:
        stored, done = checkpoint_config(last)
    except RunError:
        stored, done = None, None
    if stored is not None and not differing_keys(stored, config) and done < \
            config["train"]["epochs"]:
        return last
    shutil.rmtree(run)  # not resumable: this trial starts again from nothing
    return None
