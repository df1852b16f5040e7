"""``run_experiment(config)``: one complete run from a validated config, written to a folder.

The folder ``<out>/<name>-<timestamp>/`` receives: ``config.yaml`` (the resolved config),
``history.csv`` / ``history.json``, ``metrics.json`` (test accuracy, per-class and balanced
accuracy, confusion matrix), ``best.npz`` and ``last.npz`` checkpoints, and the figures
(``learning_curves.png``, ``confusion_matrix.png``, ``per_class_accuracy.png``,
``predictions.png``, and ``weights.png`` for the linear model).

Order of work: everything that can fail because of the config, the data or the checkpoint
(loading the data, building the model, reading and checking the checkpoint) happens before the
folder is created or anything in it is written. ``--resume`` continues the checkpoint's own config
in its own folder; ``resume_config`` refuses a config that disagrees with it.
"""
import json
import os
import shutil
import sys
import time
import zipfile

from .._io import atomic_write_text, from_json_array, remove_stale_temporaries
from ..train import EpochLogger, NonFiniteLossError
from ..train.checkpoint import load_checkpoint
from .config import ConfigError, validate_config
from .experiment import RunError, is_text, make_trainer, prepare_data
from .overrides import differing_keys, flatten
from .report import report
from .sample import report_language_model
from .speed import resumed


def new_run_dir(out, name):
    """A fresh path ``out/<name>-<YYYYmmdd-HHMMSS>`` (a suffix -2, -3, ... if it exists); the
    folder itself is made only when the run starts."""
    base = os.path.join(out, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, i = base, 1
    while os.path.exists(path):
        i += 1
        path = f"{base}-{i}"
    return path


def checkpoint_config(path):
    """``(config, completed epochs)`` stored in the checkpoint ``path``, the config validated;
    ``RunError`` saying what is wrong with the file (missing, truncated, not written by
    ``npnet train``) otherwise."""
    if not os.path.isfile(path):
        raise RunError(f"--resume {path}: no such checkpoint file; give the last.npz (or best.npz) "
                       "of an existing run folder, e.g. runs/<name>-<time>/last.npz")
    try:
        arrays = load_checkpoint(path)  # its ValueError names the file and says what is wrong
        stored, epochs = from_json_array(arrays["config"]), int(arrays["epoch"])
    except ValueError as e:
        raise RunError(f"--resume {e}. Resume from another checkpoint of the run (best.npz or "
                       "last.npz) or start a new run") from None
    except KeyError as e:
        raise RunError(f"--resume {path}: a checkpoint without {e}, so not one written by npnet "
                       "train; resume from the last.npz of an npnet train run") from None
    except OSError as e:
        raise RunError(f"--resume {path}: cannot read the file ({e.strerror or e})") from None
    try:
        return validate_config(stored), epochs
    except ConfigError as e:
        raise RunError(f"--resume {path}: the checkpoint holds no valid npnet train config, so it "
                       f"cannot be continued by npnet train ({e})") from None


def resume_config(path, given=None, epochs=None):
    """The config to continue the run of checkpoint ``path`` with: the checkpoint's own config, in
    which only ``train.epochs`` (the total to reach, from ``epochs`` or ``given``) may change.
    ``given`` (a config from a file and ``--set``) must agree with it on every other key (its
    ``name`` is ignored: the run keeps its folder); ``RunError`` names the differing keys."""
    stored, done = checkpoint_config(path)
    if given is not None:
        keys = differing_keys(given, stored, ignore=("name", "train.epochs"))
        if keys:
            raise RunError(_disagreement(path, keys, given, stored))
    config = dict(stored, train=dict(stored["train"]))
    total = epochs if epochs is not None else (given or stored)["train"]["epochs"]
    if total != stored["train"]["epochs"] and stored["train"]["schedule"] == "cosine":
        raise RunError(f"--resume {path}: train.epochs {total} differs from the run's "
                       f"{stored['train']['epochs']}, and its cosine schedule was laid out over "
                       "those epochs; continue with the run's own train.epochs")
    if total <= done:
        raise RunError(f"--resume {path}: the run has already trained {done} epoch(s) and "
                       f"train.epochs is {total}; to train further, pass --epochs N with N > {done}")
    config["train"]["epochs"] = total
    return config


def _disagreement(path, keys, given, stored):
    fg, fs = flatten(given), flatten(stored)
    lines = [f"  {k}: checkpoint {fs.get(k, '(unset)')!r}, given {fg.get(k, '(unset)')!r}"
             for k in keys]
    return (f"--resume {path}: the given config disagrees with the checkpoint's own config at "
            f"{', '.join(keys)}:\n" + "\n".join(lines) + "\nNothing was written. To continue the run "
            "as it was, drop CONFIG and --set (npnet train --resume CHECKPOINT); to train with "
            "the new values, start a new run without --resume.")


def run_experiment(config, out="runs", resume=None, progress=None, log=print, run_dir=None,
                   callbacks=()):
    """Trains and evaluates as ``config`` (from ``validate_config``, or ``resume_config`` when
    resuming) says, in ``run_dir`` (default: a new folder under ``out``; the checkpoint's folder
    when resuming); ``callbacks`` are added to the Trainer's. Returns a dict: ``run`` (folder),
    ``status`` ("done", "diverged" or "interrupted"), ``exit_code`` (0, 1, 130 after Ctrl-C, 143
    after SIGTERM), ``metrics``
    (metrics.json's content, or None), ``history`` (``History.to_dict()``), ``error`` (a
    message or None).

    Raises ``RunError`` (nothing written) when the data, the model or the checkpoint fail.
    """
    from ..train.progress import signals_raise
    with signals_raise():  # SIGTERM outside training: as Ctrl-C (no half-written file)
        return _run(config, out, resume, progress, log, run_dir, callbacks)


def _run(config, out, resume, progress, log, run_dir, callbacks):
    from .. import distributed
    from .ranks import world_line, world_record
    distributed.world.set_timeout(config["distributed"]["timeout"])
    d = prepare_data(config)
    if resume is not None:
        run = os.path.dirname(os.path.abspath(resume))
    else:
        run = run_dir or new_run_dir(out, config["name"])
    bar = progress if progress is not None else sys.stderr.isatty()
    extra = list(callbacks) + ([] if bar else [EpochLogger(log)])  # no bar: a line per epoch
    text = is_text(config)  # a language model: windows of characters, its report in sample.py
    trainer, loaders, eval_tf = make_trainer(config, run, (d.x_train, d.y_train, d.x_val, d.y_val),
                                             len(d.classes), progress, extra, resume is not None, log,
                                             vocab=d.classes if text else None)
    trainer.interrupt_hint = False  # this runner says how to resume, in its own words
    if resume is not None:
        load_resume(trainer, loaders, resume)  # the one read of the checkpoint: fit() continues from it
        resumed(trainer, log)                  # the checkpoint's convolution algorithms
        remove_stale_temporaries(run)          # a write cut short by SIGKILL left its temporary
    distributed.world.handshake()  # every rank ready before the folder exists (one message)
    created = not os.path.isdir(run)
    try:
        os.makedirs(run, exist_ok=True)
        atomic_write_text(os.path.join(run, "config.yaml"), _yaml(config))
    except OSError as e:  # a path the user gave (checked by the CLI; here for library callers)
        _discard_if_empty(run, created and os.path.isdir(run))
        raise RunError(f"cannot write the run folder {run} ({e.strerror or e}); give another "
                       "--out (a folder you can write in)") from None
    log(f"run folder: {run}\nmodel {config['network']['model']}: "
        f"{trainer.model.num_parameters():,} parameters; train {len(d.x_train)}, "
        f"val {0 if d.x_val is None else len(d.x_val)}, test {len(d.x_test)} "
        + (f"windows of {config['data']['seq_len']} characters" if text else "images"))
    if world_line():
        log(world_line())
    result = _fit(trainer, loaders, config, run, created, log)
    if result["status"] == "done":
        end = report_language_model if text else report
        result["metrics"] = end(trainer, config, run, (d.x_test, d.y_test, eval_tf), d.classes,
                                loaders[1] is not None, log, world=world_record())
    result["history"] = trainer.history.to_dict()
    return result


def _fit(trainer, loaders, config, run, created, log):
    """Trains; the result dict of ``run_experiment`` without metrics and history."""
    result = {"run": run, "status": "done", "exit_code": 0, "metrics": None, "error": None}
    try:
        trainer.fit(*loaders, epochs=config["train"]["epochs"])
    except NonFiniteLossError as e:
        log(str(e))
        result.update(status="diverged", exit_code=1, error=str(e))
    except BaseException:
        _discard_if_empty(run, created)
        raise
    if result["status"] == "diverged" and _discard_if_empty(run, created):
        result["run"] = None
    elif getattr(trainer.history, "interrupted", False):
        last = os.path.join(run, "last.npz")
        term = getattr(trainer, "stopped_by", None) == "SIGTERM"
        error = (f"stopped by {'SIGTERM' if term else 'Ctrl-C'} after {trainer.epoch} completed "
                 "epoch(s)")
        log(f"{error}; resume with: npnet train --resume {last}")
        result.update(status="interrupted", exit_code=143 if term else 130, error=error)
    if result["run"] is not None:
        trainer.history.save(run)
    return result


def load_resume(trainer, loaders, path):
    """Loads the checkpoint into the freshly built trainer and its loaders before anything is
    written, so that a checkpoint that does not fit (other shapes, other optimizer state) is a
    message; ``fit`` then continues from this state without reading the file again."""
    trainer.train_loader, trainer.val_loader = loaders  # as fit() sets them: they get their state
    try:
        trainer.load_checkpoint(path)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        raise RunError(f"--resume {path}: the checkpoint does not fit the run its config "
                       f"describes ({type(e).__name__}: {e}); nothing was written") from None


def _discard_if_empty(run, created):
    """Removes the run folder made by this run when it holds no checkpoint (nothing to resume or
    keep); returns whether it was removed."""
    if not created or any(f.endswith(".npz") for f in os.listdir(run)):
        return False
    shutil.rmtree(run, ignore_errors=True)
    return True


def _yaml(config):
    import yaml
    return yaml.safe_dump(config, sort_keys=False)
