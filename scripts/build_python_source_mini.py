"""Rebuild npnet/data/python_source_mini.txt, the embedded character corpus, from CPython's sources.

    python scripts/build_python_source_mini.py [--stdlib DIR] [--out PATH]

Source: the modules listed in MODULES, as they are in CPython 3.11.7's ``Lib/`` folder (the
release tarball https://www.python.org/ftp/python/3.11.7/Python-3.11.7.tar.xz, the git tag
v3.11.7, or the standard library of an installed 3.11.7 built from it, e.g. by pyenv: the default
``--stdlib`` is the running Python's). Every file's sha256 is checked first, so another version
is refused rather than silently giving another corpus; the output is then byte-identical.

Layout: for each module, in the order of MODULES, a header line
``# ===== Lib/<name>.py =====`` (as ``python-source`` reads a whole library), the file's text (UTF-8, newline-terminated)
and an empty line. CPython's LICENSE (the PSF License Agreement and the history of the licences)
is copied beside it as LICENSE-python.txt: the agreement lets the sources be redistributed with
that notice kept.
"""
import argparse
import hashlib
import sys
import sysconfig
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from npnet.data.text import MINI_LICENSE, MINI_PATH, MINI_SHA256, _module_text  # noqa: E402

VERSION = "3.11.7"
#: module -> sha256 of Lib/<module>.py in CPython 3.11.7
MODULES = {
    "bisect": "e5b2ff166f48a06e70ae831d8c9b47283fcd0c254306eee12d3dae9c55e11526",
    "colorsys": "d9800f8e81d46e63ca6f2e7d6ac5f344d85afb92c3cf6d103b5f977f1ad66ac2",
    "reprlib": "264433cc232332db871666b3bb6e4c2cb97b092cb8d5056a45ec2e53daea2b1c",
    "fnmatch": "6683da36e47af523f3f41e18ad244d837783e19e98911cc0b7415dea81494ebc",
    "sched": "edfb309483d7cb05e06ad86d1fdeb819629f71402dc6710a1bec36c7afcaac50",
    "copy": "27dcfc53a4b9d4fbc3d90c74e549eb6eca9301524d6d2fbff9a6589cf51b6fd5",
    "glob": "fa579f8a50a66313d34d339f10be0821c9b4fed6207e8ba8e29ed1c5e119f740",
    "graphlib": "7bd338c5a475d1101064603d3baa5507446d3c5e73f741f6d6e77c6204c1eb65",
    "numbers": "6d70991643a109e9c99e94d6ea2734a995fa8e89114a70ea09737413fa9ae292",
    "queue": "f6c37fc37cd7440979f7d22d40ee818fa3b714c573610c08fa52911d541193f0",
    "string": "24aeae1f0526250f442022022bf98df9a823b1cb330543ee79e70e44907462e9",
    "csv": "6c68a5186e3b85e6e267a7ef96479327a45ae2b40bf5e9f2017e4b2282b3f5b1",
    "textwrap": "62867e40cdea6669b361f72af4d7daf0359f207c92cbeddfc7c7506397c1f31c",
    "base64": "7de2ffc30db7b791f482ee8e6cba30a7b69452324d466231f29395be00154b4b",
    "heapq": "6d43277e5c76fc0f073cd388fcff852d14d068f6bb6d4886c340f8b75a1229a9",
    "contextlib": "d732c045bc7450997f97b2f79cfdb1546b68d2655e89ab3170f3b19b3930d83c",
    "fractions": "b11e850e354808b882d13a70a911c29accd1dbdd41757566704e3b7206c74edb",
    "random": "b931a2d452db89ab9e1f79d59b66ce194dbd6748049cfe44699726da52b9c956",
    "functools": "6d80018a3fa9fed44c5b78f881987ee3ab3fb1238b077b4e6dcb4b76da7db73b",
}
LICENSE_SHA256 = "3b2f81fe21d181c499c59a256c8e1968455d6689d269aa85373bfb6af41da3bf"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def read_checked(path, expected):
    """The bytes of ``path``; SystemExit naming it when its sha256 is not ``expected``."""
    if not path.is_file():
        sys.exit(f"{path}: missing; give --stdlib the Lib folder of CPython {VERSION}")
    data = path.read_bytes()
    if sha256(data) != expected:
        sys.exit(f"{path}: sha256 {sha256(data)}, expected {expected} (CPython {VERSION}'s); "
                 f"give --stdlib the Lib folder of CPython {VERSION}")
    return data


def build(stdlib):
    """(corpus text, licence bytes) from the folder ``stdlib``."""
    parts = []
    for name, digest in MODULES.items():
        text = read_checked(stdlib / f"{name}.py", digest).decode("utf-8")
        parts.append(_module_text(f"{name}.py", text))
    return "".join(parts), read_checked(stdlib / "LICENSE.txt", LICENSE_SHA256)


def write(path, data):
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stdlib", type=Path, default=Path(sysconfig.get_paths()["stdlib"]),
                        help=f"CPython {VERSION}'s Lib folder (default: the running Python's)")
    parser.add_argument("--out", type=Path, default=MINI_PATH)
    args = parser.parse_args()
    text, licence = build(args.stdlib)
    data = text.encode("utf-8")
    digest = sha256(data)
    said = "matches" if digest == MINI_SHA256 else f"differs from MINI_SHA256 ({MINI_SHA256}); update it"
    write(args.out, data)
    write(args.out.with_name(MINI_LICENSE.name), licence)
    print(f"wrote {args.out}: {len(data)} bytes, {len(MODULES)} modules, sha256 {digest} ({said})")


if __name__ == "__main__":
    main()
