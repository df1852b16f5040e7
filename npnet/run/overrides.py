"""Dotted keys of a config: ``--set KEY=VALUE`` overrides, and where two configs differ.

A dotted key names one value of the nested config mapping: ``train.learning_rate``,
``data.dataset``, ``network.options.hidden``. Override values are read with ``yaml.safe_load``,
as in a config file: ``0.1`` is a float, ``[32, 16]`` a list, ``null`` is None, ``cifar10`` a
string. The values are validated afterwards by ``config.validate_config``, with its messages.
"""
import copy

__all__ = ["parse_override", "apply_overrides", "set_key", "flatten", "differing_keys"]


def parse_override(text):
    """``"train.learning_rate=0.1"`` -> ``("train.learning_rate", 0.1)``; ValueError if malformed."""
    import yaml
    key, sep, value = str(text).partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ValueError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. "
                         "--set train.learning_rate=0.05 or --set data.dataset=fashion-mnist-mini")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ValueError(f"--set {text!r}: the value is not valid YAML ({e})") from None


def set_key(raw, key, value):
    """Sets the dotted ``key`` of the nested mapping ``raw`` (in place), creating the mappings on
    the way; ValueError if a value on the way is not a mapping."""
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[:i + 1])
            raise ValueError(f"cannot set {key!r}: {where!r} is {child!r}, not a mapping of keys")
        node = child
    node[parts[-1]] = value


def apply_overrides(raw, overrides):
    """A deep copy of the parsed config ``raw`` with each override set. ``overrides``: strings
    ``"KEY=VALUE"`` or ``(key, value)`` pairs, applied in order. ValueError names a bad one."""
    overrides = list(overrides)
    if not overrides:
        return raw
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"cannot apply --set to a config that is a {type(raw).__name__}, "
                         "not a mapping")
    out = copy.deepcopy(raw)
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        set_key(out, key, value)
    return out


def flatten(config, prefix=""):
    """``{dotted key: value}`` of every leaf of a nested mapping (an empty mapping is a leaf)."""
    out = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def differing_keys(a, b, ignore=()):
    """The sorted dotted keys whose values differ between the configs ``a`` and ``b`` (a key
    present in one only counts), leaving out ``ignore``."""
    fa, fb = flatten(a), flatten(b)
    return sorted(k for k in set(fa) | set(fb)
                  if k not in ignore and (k not in fa or k not in fb or fa[k] != fb[k]))
