"""The sweep file format: a base config, a grid of dotted keys, seeds; ``load_sweep`` expands it
into validated ``Trial``s (``trial.py``, beside ``run_trial``). Running them: ``sweep_run``.

A sweep file (YAML)::

    name: longtail_beta              # optional, default: the file name without extension
    base: ../fashion_mnist/longtail_focal.yaml   # relative to this file; or an inline
                                     # `config:` mapping (exactly one of the two)
    set:                             # optional overrides of the base, as with --set
      train.epochs: 30
    grid:                            # dotted key -> list of values: every combination is a trial
      loss.beta: [0.9, 0.99, 0.999]
      loss.gamma: [0.5, 1.0]
    seeds: [0, 1, 2]                 # optional: every combination once per seed (sets `seed`)

``grid`` may also be a list of such mappings: their trials are put together (a union of grids),
e.g. one cross-entropy baseline next to a beta sweep of the focal loss. Every trial config is
validated with the schema of ``npnet train`` before the first trial starts.
"""
import itertools
import os
import re
from dataclasses import dataclass

from .config import ConfigError, finish_config, read_yaml
from .trial import Trial

SWEEP_KEYS = ("name", "base", "config", "set", "grid", "seeds")


@dataclass
class Sweep:
    """A loaded sweep: ``name``, ``path`` (of the file), ``keys`` (the swept dotted keys, in the
    file's order), ``seeds`` (list, may be empty) and ``trials`` (``Trial``, in grid order)."""

    name: str
    path: str
    keys: list
    seeds: list
    trials: list


def load_sweep(path, overrides=()):
    """The ``Sweep`` of the file ``path``; ``overrides`` (``"KEY=VALUE"`` strings of ``--set``)
    apply to every trial and may not name a swept key. ``ConfigError`` names the file, the bad
    trial and every problem, before anything runs."""
    spec = read_yaml(path, "sweep file")
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a sweep file must be a mapping with keys {', '.join(SWEEP_KEYS)}")
    unknown = sorted(set(spec) - set(SWEEP_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown sweep key(s) {', '.join(unknown)}; valid: "
                          f"{', '.join(SWEEP_KEYS)}")
    base = _base(spec, path)
    grids = _grids(spec.get("grid"), path)
    keys = list(dict.fromkeys(k for g in grids for k in g))
    overrides = _file_sets(spec.get("set"), path) + list(overrides)
    named = {o.partition("=")[0].strip() if isinstance(o, str) else o[0] for o in overrides}
    swept = keys + (["seed"] if spec.get("seeds") is not None else [])
    clash = sorted(named & set(swept))
    if clash:
        raise ConfigError(f"{path}: --set {', '.join(clash)} would be overwritten by the grid; "
                          "change the grid instead")
    seeds = _seeds(spec.get("seeds"), path)
    name = spec.get("name") or os.path.splitext(os.path.basename(path))[0]
    trials = _expand(base, grids, seeds, overrides, path)
    return Sweep(str(name), os.path.abspath(path), keys, seeds, trials)


def _base(spec, path):
    if ("base" in spec) == ("config" in spec):
        raise ConfigError(f"{path}: give exactly one of 'base: CONFIG.yaml' (relative to the sweep "
                          "file) or an inline 'config:' mapping")
    if "config" in spec:
        return spec["config"]
    base = os.path.join(os.path.dirname(os.path.abspath(path)), str(spec["base"]))
    return read_yaml(base, "base config")


def _grids(grid, path):
    grids = grid if isinstance(grid, list) else [grid]
    if not grids or not all(isinstance(g, dict) and g for g in grids):
        raise ConfigError(f"{path}: 'grid' must be a mapping of dotted keys to lists of values "
                          "(or a list of such mappings), e.g. grid: {loss.beta: [0.9, 0.99]}")
    for g in grids:
        for key, values in g.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{path}: grid key {key!r} needs a non-empty list of values, got "
                                  f"{values!r}")
    return grids


def _file_sets(sets, path):
    if sets is None:
        return []
    if isinstance(sets, dict):
        return [(str(k), v) for k, v in sets.items()]
    if isinstance(sets, list) and all(isinstance(s, str) for s in sets):
        return list(sets)
    raise ConfigError(f"{path}: 'set' must be a mapping of dotted keys to values, or a list of "
                      "KEY=VALUE strings")


def _seeds(seeds, path):
    if seeds is None:
        return []
    ok = isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool)
                                                   and s >= 0 for s in seeds)
    if not ok or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{path}: 'seeds' must be a list of distinct ints >= 0, got {seeds!r}")
    return list(seeds)


def _expand(base, grids, seeds, overrides, path):
    trials, problems, ids = [], [], set()
    short = short_keys(list(dict.fromkeys(k for g in grids for k in g)))
    for grid in grids:
        for combo in itertools.product(*grid.values()):
            for seed in seeds or [None]:
                values = dict(zip(grid, combo))
                sets = list(overrides) + list(values.items())
                sets += [] if seed is None else [("seed", seed)]
                trial_id = _unique(_trial_id(values, seed, short), ids)
                try:
                    config = finish_config(base, sets, f"{path}, trial {trial_id}")
                except ConfigError as e:
                    problems.append(str(e))
                    continue
                config["name"] = trial_id
                trials.append(Trial(values, seed, config, trial_id))
    if problems:
        more = f"\n(and {len(problems) - 1} more invalid trials)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)
    return trials


def format_value(value):
    """A grid value as it reads in a trial name, a table or a figure: 0.9999, CE, [32, 16]."""
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def short_keys(keys):
    """``{dotted key: its last part}`` where that part names one key only, else the whole key:
    ``loss.beta`` -> ``beta``, but ``train.x`` and ``data.x`` stay as they are."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def _trial_id(values, seed, short):
    parts = [f"{short[key]}={format_value(v)}" for key, v in values.items()]
    parts += [] if seed is None else [f"seed={seed}"]
    return re.sub(r"[^A-Za-z0-9._=,+-]+", "-", ",".join(parts))


def _unique(trial_id, ids):
    out, i = trial_id, 1
    while out in ids:
        i += 1
        out = f"{trial_id}-{i}"
    ids.add(out)
    return out
