"""Run configurations: the schema of ``npnet train CONFIG.yaml`` and its validation.

A config has the sections ``train``, ``network``, ``data``, ``loss``, ``log`` and the top-level
keys ``seed`` and ``name``. Every key has a type and a default (``network.model`` is required).
``log`` is optional and off by default: ``log.layer_stats: N`` records per-layer statistics
(``npnet.train.LayerStats``) every N training steps into the run folder's ``layer_stats.csv`` and
``layer_stats.png`` (their last values also go to ``metrics.json``), and ``log.tensorboard: true``
(which needs ``layer_stats``) writes them as TensorBoard events to ``<run>/tensorboard`` too.
``network.options`` are the builder's keywords, e.g. ``head_activation: relu`` for cnn-small.
``validate_config`` fills in the defaults and rejects unknown keys, wrong types and values out of
range (a learning rate <= 0, any NaN or infinity) with a ``ConfigError`` that lists every problem
(and, for an unknown key, the valid keys), before anything runs. PyYAML reads ``5e-4`` (no dot)
as a string, so float keys also accept strings that parse as one. ``--set`` overrides and the
comparison of two configs are in ``overrides``.
"""
import math
import os

from .overrides import apply_overrides

__all__ = ["ConfigError", "SCHEMA", "validate_config", "load_config", "read_yaml",
           "describe_schema", "as_current"]


class ConfigError(ValueError):
    """An invalid run configuration; the message lists every problem found."""


class Field:
    """One key: ``kind`` in int, float, bool, str, int_list, dict; ``choices`` for strings;
    ``nullable`` allows null; ``minimum`` (inclusive) and ``above`` / ``below`` (exclusive) bound
    numbers. Floats must be finite."""

    def __init__(self, kind, default, choices=None, nullable=False, minimum=None, doc="",
                 above=None, below=None):
        self.kind, self.default, self.choices = kind, default, choices
        self.nullable, self.minimum, self.doc = nullable, minimum, doc
        self.above, self.below = above, below

    def describe(self):
        kind = f"one of {'|'.join(self.choices)}" if self.choices else _KIND_NAMES[self.kind]
        return kind + (" or null" if self.nullable else "")

    def parse(self, value):
        """The value converted to this field's kind, or a ValueError saying what was expected."""
        if value is None:
            if self.nullable:
                return None
            raise ValueError(f"expected {self.describe()}, got null")
        out = _PARSERS[self.kind](value)
        if out is _BAD:
            raise ValueError(f"expected {self.describe()}, got {type(value).__name__} {value!r}")
        if self.choices and out not in self.choices:
            raise ValueError(f"expected one of {', '.join(self.choices)}, got {value!r}")
        if self.kind == "float" and not math.isfinite(out):
            raise ValueError(f"expected a finite number, got {value!r}")
        self._check_range(out, value)
        return out

    def _check_range(self, out, value):
        if self.minimum is not None and out < self.minimum:
            raise ValueError(f"expected a value >= {self.minimum}, got {value!r}")
        if self.above is not None and not out > self.above:
            raise ValueError(f"expected a value > {self.above}, got {value!r}")
        if self.below is not None and not out < self.below:
            raise ValueError(f"expected a value < {self.below}, got {value!r}")


_BAD = object()
_KIND_NAMES = {"int": "int", "float": "float", "bool": "bool", "str": "str",
               "int_list": "list of int", "dict": "mapping"}


def _int(v):
    return v if isinstance(v, int) and not isinstance(v, bool) else _BAD


def _float(v):
    if isinstance(v, bool):
        return _BAD
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v) if isinstance(v, str) else _BAD
    except ValueError:
        return _BAD


def _int_list(v):
    ok = isinstance(v, list) and all(_int(i) is not _BAD for i in v)
    return list(v) if ok else _BAD


_PARSERS = {"int": _int, "float": _float, "int_list": _int_list,
            "bool": lambda v: v if isinstance(v, bool) else _BAD,
            "str": lambda v: v if isinstance(v, str) else _BAD,
            "dict": lambda v: dict(v) if isinstance(v, dict) else _BAD}

SCHEMA = {
    "train": {
        "batch_size": Field("int", 128, nullable=True, minimum=1, doc="null: full batch (GD)"),
        "learning_rate": Field("float", 0.01, above=0.0),
        "reg": Field("float", 0.0, minimum=0.0, doc="weight decay (L2)"),
        "epochs": Field("int", 10, minimum=1),
        "steps": Field("int_list", [], doc="epochs where the lr is multiplied by lr_decay"),
        "lr_decay": Field("float", 0.1, above=0.0),
        "warmup": Field("int", 0, minimum=0, doc="linear warmup epochs"),
        "schedule": Field("str", "multistep", choices=("multistep", "cosine", "none")),
        "momentum": Field("float", 0.0, minimum=0.0, below=1.0),
        "nesterov": Field("bool", False),
        "optimizer": Field("str", "sgd", choices=("sgd", "adam", "adamw")),
        "eval_batch_size": Field("int", 500, minimum=1),
        "sync_bn": Field("bool", False, doc="on several processes (--nproc): BatchNorm with the "
                                            "global batch's statistics (SyncBatchNorm)"),
        "clip_grad_norm": Field("float", None, nullable=True, above=0.0,
                                doc="before every step, scale the gradients so that their joint "
                                    "2-norm is at most this (nn.utils.clip_grad_norm_); null: no "
                                    "clipping"),
    },
    "network": {
        "model": Field("str", None, doc="a name of npnet.models.MODELS (required)"),
        "save_best": Field("bool", True),
        "options": Field("dict", {}, doc="keyword options of the model builder"),
        "init_prior": Field("float", None, nullable=True, above=0.0, below=1.0,
                            doc="p: the last layer's bias starts at -log((1 - p) / p), so every "
                                "output starts at probability p (Lin et al. 2017; e.g. 0.1 with "
                                "sigmoid focal loss)"),
    },
    "data": {
        "dataset": Field("str", "cifar10", choices=("cifar10", "fashion-mnist", "fashion-mnist-mini",
                                                    "python-source", "python-source-mini"),
                         doc="images, or a text corpus for the language models (python-source: "
                             "this Python's standard library; -mini: the embedded subset)"),
        "seq_len": Field("int", 128, minimum=1, doc="text corpora: characters per training window "
                                                     "(its targets are the next characters)"),
        "imbalance": Field("str", "regular", choices=("regular", "exp", "step")),
        "imbalance_factor": Field("float", 100.0, minimum=1.0),
        "augment": Field("bool", False, doc="random crop (padding 4) and horizontal flip"),
        "val_fraction": Field("float", 0.1, minimum=0.0, below=1.0,
                              doc="of the training images; of a text corpus, the share before "
                                  "its end for validation, and as much at the end for test"),
        "max_train": Field("int", None, nullable=True, minimum=1, doc="subsample the training set"),
        "max_test": Field("int", None, nullable=True, minimum=1, doc="subsample the test set"),
        "root": Field("str", None, nullable=True,
                      doc="data folder, must exist (default $NPNET_DATA or ~/.cache/npnet)"),
    },
    "loss": {
        "loss_type": Field("str", "CE", choices=("CE", "MSE", "Focal")),
        "gamma": Field("float", 1.0, minimum=0.0, doc="focal loss exponent"),
        "beta": Field("float", 0.0, minimum=0.0, below=1.0, doc="class-balanced weights (0: none)"),
        "focal_kind": Field("str", "sigmoid", choices=("softmax", "sigmoid")),
        "label_smoothing": Field("float", 0.0, minimum=0.0, below=1.0),
    },
    "speed": {
        "fuse": Field("bool", True, doc="npnet.fuse(model): neighbouring layers as fused modules "
                                        "(same function, fewer passes)"),
        "tune": Field("bool", True, doc="npnet.tune(model, batch): time each 3x3 convolution's "
                                        "algorithms once (remembered per machine) and keep the "
                                        "fastest; false: the fixed rule, the same on every machine"),
        "algorithms": Field("str", "im2col,winograd,winograd4",
                            doc="tune's candidates, comma-separated; im2col,winograd leaves out "
                                "F(4x4) (fast on wide layers, float32 rounding ~10x coarser)"),
    },
    "distributed": {
        "timeout": Field("float", 300.0, above=0.0,
                         doc="on several processes: seconds a rank waits in a collective of "
                             "training before it stops, naming the rank that went silent "
                             "(died or hung); long enough for the slowest step and checkpoint"),
    },
    "log": {
        "layer_stats": Field("int", 0, minimum=0,
                             doc="every N steps: per-layer statistics (npnet.train.LayerStats) in "
                                 "layer_stats.csv / layer_stats.png of the run folder (0: off)"),
        "tensorboard": Field("bool", False, doc="also write them as TensorBoard events to "
                                                "<run>/tensorboard (pip install -e \".[tensorboard]\")"),
    },
}
TOP_LEVEL = {"seed": Field("int", 0, minimum=0), "name": Field("str", None, nullable=True)}


def describe_schema(verbose=False):
    """The valid keys, one section per line (error messages), or with defaults and notes, one key
    per line (``verbose``, for ``--help``)."""
    if verbose:
        lines = [f"  {k}: {f.describe()}, default {f.default!r}" for k, f in TOP_LEVEL.items()]
        for section, fields in SCHEMA.items():
            lines.append(f"  {section}:")
            lines += [f"    {k}: {f.describe()}, default {f.default!r}" + (f" -- {f.doc}" if f.doc else "")
                      for k, f in fields.items()]
        return "\n".join(lines)
    lines = [f"  {k}: {f.describe()}" for k, f in TOP_LEVEL.items()]
    for section, fields in SCHEMA.items():
        lines.append(f"  {section}: " + ", ".join(f"{k} ({f.describe()})" for k, f in fields.items()))
    return "\n".join(lines)


def _parse_fields(fields, given, prefix, problems):
    """Each field parsed from ``given`` or its default; a bad value is reported with its key
    (``prefix + key``) and replaced by the default so that the checks across keys still run."""
    out = {}
    for key, field in fields.items():
        try:
            out[key] = field.parse(given[key]) if key in given else field.default
        except ValueError as e:
            problems.append(f"'{prefix}{key}': {e}")
            out[key] = field.default
    return out


def _section(name, given, problems):
    fields = SCHEMA[name]
    if given is None:
        given = {}
    if not isinstance(given, dict):
        problems.append(f"'{name}' must be a mapping of keys, got {type(given).__name__}")
        return {k: f.default for k, f in fields.items()}
    for key in given:
        if key not in fields:
            problems.append(f"unknown key '{name}.{key}'{_did_you_mean(name, key)}; valid keys in "
                            f"'{name}': {', '.join(fields)}")
    return _parse_fields(fields, given, f"{name}.", problems)


def _did_you_mean(section, key):
    """ ``" (did you mean 'train.learning_rate'?)"`` for a misspelt key or one put in the wrong
    section (``train.dataset`` -> ``data.dataset``); "" when nothing is close."""
    import difflib
    here = difflib.get_close_matches(str(key), list(SCHEMA[section]), n=1, cutoff=0.6)
    if here:
        return f" (did you mean '{section}.{here[0]}'?)"
    elsewhere = [f"{name}.{key}" for name, fields in SCHEMA.items() if key in fields]
    return f" (did you mean '{elsewhere[0]}'?)" if elsewhere else ""


def validate_config(raw):
    """The complete config (defaults filled in) from a parsed YAML mapping; ``ConfigError``
    listing every problem otherwise (and the valid keys, when a key is unknown)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping with sections {', '.join(SCHEMA)}, got "
                          f"{type(raw).__name__}; every key, with its default: npnet train --help")
    problems = []
    valid = list(TOP_LEVEL) + list(SCHEMA)
    for key in raw:
        if key not in valid:
            import difflib
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"unknown top-level key '{key}'{hint}; valid: {', '.join(valid)}")
    config = _parse_fields(TOP_LEVEL, raw, "", problems)
    for name in SCHEMA:
        config[name] = _section(name, raw.get(name), problems)
    _check_values(config, problems)
    if problems:
        # an unknown key's message names its section's keys (and the closest); the whole schema
        # would bury it: say where it is instead
        keys = any(p.startswith("unknown ") for p in problems)
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems) +
                          ("\nevery key, with its default: npnet train --help" if keys else ""))
    return config


def as_current(stored):
    """A config stored by a run (a sweep's record, a run folder's config.yaml) as this version of
    npnet reads it: validated, so that a key added since the run was made takes its default (a
    run made before ``train.sync_bn`` existed ran with ``sync_bn: false``). A stored config that
    no longer validates (a key removed or renamed since) is returned as stored, so that it
    compares as different."""
    try:
        return validate_config(stored)
    except ConfigError:
        return stored


def _check_values(config, problems):
    from ..models import MODELS, model_options
    model = config["network"]["model"]
    if model is None:
        problems.append(f"'network.model' is required; one of {', '.join(MODELS)}")
    elif model not in MODELS:
        problems.append(f"'network.model': unknown model {model!r}; one of {', '.join(MODELS)}")
    else:
        unknown = sorted(set(config["network"]["options"]) - set(model_options(model)))
        if unknown:
            problems.append(f"'network.options': unknown option(s) {', '.join(unknown)} for "
                            f"{model}; valid: {', '.join(model_options(model)) or 'none'}")
    _check_kind(config, problems)
    if config["train"]["nesterov"] and config["train"]["momentum"] == 0:
        problems.append("'train.nesterov' needs train.momentum > 0")
    if config["train"]["optimizer"] != "sgd" and config["train"]["momentum"]:
        problems.append("'train.momentum' applies to optimizer sgd only")
    for key, value in config["network"]["options"].items():
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"'network.options.{key}': expected a finite number, got {value!r}")
    try:
        parse_algorithms(config["speed"]["algorithms"])
    except ValueError as e:
        problems.append(f"'speed.algorithms': {e}")
    if config["log"]["tensorboard"] and not config["log"]["layer_stats"]:
        problems.append("'log.tensorboard' needs log.layer_stats > 0 (the steps between samples)")


#: the text corpora ``data.dataset`` may name (``npnet.data.text.CORPORA``): language models' data
TEXT_DATASETS = ("python-source", "python-source-mini")


def _check_kind(config, problems):
    """The model's input kind and the dataset agree: a language model on a text corpus, with the
    loss it trains with; every other model on images."""
    from ..models import MODELS, input_kind
    model, d = config["network"]["model"], config["data"]
    if model not in MODELS:
        return
    text, tokens = d["dataset"] in TEXT_DATASETS, input_kind(model) == "tokens"
    if tokens and not text:
        problems.append(f"'network.model': {model} is a language model (token ids in); it needs "
                        f"a text corpus as data.dataset ({', '.join(TEXT_DATASETS)}), got {d['dataset']}")
    elif text and not tokens:
        problems.append(f"'data.dataset': {d['dataset']} is a text corpus; network.model must be a "
                        f"language model (char-lstm, char-transformer), got {model}")
    elif text:
        if config["loss"]["loss_type"] != "CE" or config["loss"]["beta"]:
            problems.append("'loss': a language model trains with loss_type CE over (N, V, T) and no "
                            "class weights (beta 0)")
        if d["imbalance"] != "regular" or d["augment"]:
            problems.append("'data': a text corpus takes neither data.imbalance nor data.augment")


#: the convolution algorithms ``speed.algorithms`` may name (``npnet.kernels.autotune.ALGORITHMS``,
#: written out here so that reading a config imports no kernel; a test holds the two equal)
CONV_ALGORITHMS = ("im2col", "winograd", "winograd4")


def parse_algorithms(text):
    """``"im2col, winograd"`` -> ("im2col", "winograd"); a ValueError names what is unknown."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in CONV_ALGORITHMS]
    if not names or unknown:
        raise ValueError(f"expected a comma-separated selection of {', '.join(CONV_ALGORITHMS)}, "
                         f"got {text!r}")
    return names


def read_yaml(path, what="config"):
    """The content of the YAML file ``path`` (read with ``yaml.safe_load``); ``ConfigError``
    naming the file and the ``what`` (config, sweep file, ...) if it cannot be read or parsed.
    Every YAML file npnet reads goes through here."""
    import yaml
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({what}): {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file, so not a YAML {what}; give the path of "
                          "a YAML file, e.g. one of configs/") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what} ({e.strerror or e}); give the path "
                          "of a YAML file, e.g. one of configs/") from None


def load_config(path, overrides=()):
    """Reads a YAML file (``read_yaml``), applies ``overrides`` (``"key=value"`` strings of
    ``--set``, see ``overrides.apply_overrides``) and validates the result; the name defaults
    to the file name without extension. ``ConfigError`` names the file and every problem."""
    return finish_config(read_yaml(path), overrides, path)


def finish_config(raw, overrides, where):
    """``validate_config`` of ``raw`` with ``overrides`` applied; the name defaults to the stem of
    ``where`` (a file name); errors start with ``where``."""
    try:
        config = validate_config(apply_overrides(raw, overrides))
    except ValueError as e:  # ConfigError, or a malformed override
        raise ConfigError(f"{where}: {e}") from None
    if config["name"] is None:
        config["name"] = os.path.splitext(os.path.basename(str(where)))[0]
    return config
