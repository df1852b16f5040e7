"""Character corpora for language modelling, and their ``Vocabulary``.

``python-source-mini`` is embedded: 19 modules of CPython 3.11.7's standard library (bisect ...
functools, 292 kB), built by scripts/build_python_source_mini.py from the named release; Python's
sources are under the PSF License Agreement, which allows redistribution with its notice: see
LICENSE-python.txt next to this file. ``python-source`` is the whole top level of the standard
library of the Python running npnet (every ``Lib/*.py``, about 4.7 MB for 3.11), read from disk.
"""
import hashlib
import json
import sysconfig
from pathlib import Path

import numpy as np

from .._io import atomic_write_text
from ._base import DatasetNotFoundError

MINI_PATH = Path(__file__).with_name("python_source_mini.txt")
MINI_LICENSE = Path(__file__).with_name("LICENSE-python.txt")
MINI_SHA256 = "ce8479e7966961d9761ff8112aa993105464eba5b282a03809b5c0070d04dad0"


class Vocabulary:
    """Characters <-> token ids: id ``i`` is ``chars[i]``. ``Vocabulary.from_text(text)`` takes the
    distinct characters of ``text`` in code-point order, so the same text gives the same ids."""

    def __init__(self, chars):
        chars = list(chars)
        if not chars or any(not isinstance(c, str) or len(c) != 1 for c in chars) \
                or len(set(chars)) != len(chars):
            raise ValueError("Vocabulary: expected distinct single characters, got "
                             f"{len(chars)} items ({chars[:5]!r}...)")
        self.chars = tuple(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text):
        """The vocabulary of the distinct characters of ``text``, sorted."""
        return cls(sorted(set(text)))

    def __len__(self):
        return len(self.chars)

    def __repr__(self):
        return f"Vocabulary({len(self)} characters)"

    def encode(self, text, what="text"):
        """``text`` as ids ``(len(text),)`` int64; a ValueError names the characters outside the
        vocabulary (``what`` says whose they are, e.g. "the prompt")."""
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in unknown[:8])
            raise ValueError(f"{what} has {len(unknown)} character(s) outside the vocabulary of "
                             f"{len(self)}: {shown}")
        return np.fromiter((self.index[c] for c in text), np.int64, len(text))

    def decode(self, ids):
        """The text of the ids ``(T,)``; a ValueError for an id outside [0, len)."""
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"Vocabulary.decode: ids must be in [0, {len(self)}), got "
                             f"{int(ids.min())}..{int(ids.max())}")
        return "".join(self.chars[i] for i in ids)

    def save(self, path):
        """Writes the vocabulary as JSON (``{"chars": [...]}``) atomically; returns the path."""
        atomic_write_text(path, json.dumps({"chars": list(self.chars)}, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, path):
        """The vocabulary saved by ``save``; a ValueError naming the file when it is not one."""
        try:
            with open(path, encoding="utf-8") as f:
                return cls(json.load(f)["chars"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a vocabulary written by Vocabulary.save ({e})") from None


class CharCorpus:
    """A text for character-level language modelling: ``name``, ``text``, ``vocab`` (of the whole
    text), ``source`` (where it was read) and ``ids`` ``(len(text),)`` int64."""

    def __init__(self, name, text, source):
        self.name, self.text, self.source = name, text, str(source)
        self.vocab = Vocabulary.from_text(text)
        self.ids = self.vocab.encode(text, f"{name}")

    def __repr__(self):
        return f"CharCorpus({self.name!r}, {len(self.text):,} characters, {len(self.vocab)} distinct)"

    def split(self, val_fraction=0.1, test_fraction=None):
        """``(train, val, test)`` ids: consecutive pieces of the text, the last ``test_fraction``
        (default: ``val_fraction``) for test, the ``val_fraction`` before it for validation, so
        that no window straddles two splits."""
        test_fraction = val_fraction if test_fraction is None else test_fraction
        if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
            raise ValueError(f"CharCorpus.split: need fractions >= 0 with a sum < 1, got "
                             f"val {val_fraction}, test {test_fraction}")
        n = len(self.ids)
        a, b = round(n * (1 - val_fraction - test_fraction)), round(n * (1 - test_fraction))
        return self.ids[:a], self.ids[a:b], self.ids[b:]


def _module_text(name, text):
    return f"# ===== Lib/{name} =====\n{text if text.endswith(chr(10)) else text + chr(10)}\n"


def load_python_source_mini(path=None):
    """The embedded corpus (sha256 checked) as a ``CharCorpus`` named python-source-mini."""
    path = MINI_PATH if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the embedded corpus is missing; reinstall npnet or "
                                "rebuild it with scripts/build_python_source_mini.py")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != MINI_SHA256:
        raise ValueError(f"{path}: sha256 is {digest}, expected {MINI_SHA256}")
    return CharCorpus("python-source-mini", data.decode("utf-8"), path)


def load_python_source(stdlib=None):
    """Every top-level ``*.py`` of a Python standard library (default: the running Python's,
    ``sysconfig.get_paths()["stdlib"]``), in name order, each after a ``# ===== Lib/<name> =====``
    line, as a ``CharCorpus`` named python-source."""
    folder = Path(sysconfig.get_paths()["stdlib"] if stdlib is None else stdlib)
    files = sorted(folder.glob("*.py"))
    if not files:
        raise DatasetNotFoundError(f"{folder}: no *.py files, so no Python standard library here; "
                                   "give the folder of one (e.g. .../lib/python3.11)")
    parts = []
    for f in files:
        try:
            parts.append(_module_text(f.name, f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{f}: cannot read it as UTF-8 text ({e})") from None
    return CharCorpus("python-source", "".join(parts), folder)


#: corpus name -> its loader
CORPORA = {"python-source": load_python_source, "python-source-mini": load_python_source_mini}


def load_char_corpus(name, **options):
    """The ``CharCorpus`` registered under ``name`` (python-source or python-source-mini)."""
    if name not in CORPORA:
        raise ValueError(f"unknown text corpus {name!r}; valid names: {', '.join(CORPORA)}")
    return CORPORA[name](**options)
