"""docs/ARCHITECTURE.md stays true: its table of files lists every module of every package, every
file it lists exists, and every import of every module stays on the floors it draws."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "ARCHITECTURE.md").read_text()


def table_rows():
    """{package folder: set of file names in its row} from the "| `npnet/...` | ... |" table."""
    rows = {}
    for line in DOC.splitlines():
        m = re.match(r"\| `(npnet/[\w/]*)` \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = set(re.findall(r"`([\w.]+\.py)`", m.group(2)))
    return rows


def test_every_module_is_in_the_table_and_every_listed_file_exists():
    rows = table_rows()
    packages = ["npnet/"] + sorted(f"npnet/{p.name}/" for p in (ROOT / "npnet").iterdir()
                                   if (p / "__init__.py").exists())
    assert set(packages) <= set(rows), f"packages without a row: {sorted(set(packages) - set(rows))}"
    for pkg in packages:
        files = {p.name for p in (ROOT / pkg).glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
        assert files - rows[pkg] == set(), f"{pkg}: missing from docs/ARCHITECTURE.md: {sorted(files - rows[pkg])}"
        assert rows[pkg] - files == set(), f"{pkg}: listed but not there: {sorted(rows[pkg] - files)}"
    assert set(rows) - set(packages) == set(), f"rows for packages that are gone: {sorted(set(rows) - set(packages))}"


# "npnet.nn names the losses of floor 4 as PyTorch does" (docs/ARCHITECTURE.md, The floors)
FLOOR_EXCEPTIONS = {("nn", "losses")}
# floor 0's plumbing may use _io, which imports nothing of npnet (docs/ARCHITECTURE.md)
BASE = "_io"


def floors():
    """{part of npnet (a sub-package or top-level module, e.g. "train", "_io"): its floor} from the
    chart under "## The floors"."""
    chart = DOC.split("## The floors", 1)[1].split("```")[1]
    out, floor = {}, None
    for line in chart.splitlines():
        m = re.match(r" floor (\d+)\s", line)
        floor = int(m.group(1)) if m else floor
        for part in re.findall(r"npnet/(\w+)(?:/|\.py)", line):
            out[part] = floor
    return out


def imported_parts(source, module):
    """The parts of npnet (as in :func:`floors`) that ``source`` imports anywhere, lazy imports inside
    functions included; ``module``: the dotted module's parts, ``("npnet", "plots", "layer_stats")``
    (``__init__`` for a package), which relative imports start from."""
    package = module[:-1]
    parts = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            target = base + (node.module.split(".") if node.module else [])
            names = [target] if node.module else [target + [alias.name] for alias in node.names]
        else:
            continue
        # npnet.__version__ and the like are the package's own names, not a part on a floor
        parts |= {name[1] for name in names if len(name) > 1 and name[0] == "npnet"
                  and not name[1].startswith("__")}
    return parts


def floor_violations(module, parts, floor_of):
    """Messages for the imports of ``parts`` by ``module`` that do not go to a floor below its own."""
    own = module[1]
    bad = [f"{'.'.join(module)} is on no floor of the chart"] if own not in floor_of else []
    for part in sorted(parts - {own}):
        if part not in floor_of:
            bad.append(f"{'.'.join(module)} imports npnet.{part}, which is on no floor of the chart")
        elif own in floor_of and floor_of[part] >= floor_of[own] and (own, part) not in FLOOR_EXCEPTIONS \
                and not (part == BASE and floor_of[own] == 0):
            bad.append(f"{'.'.join(module)} (floor {floor_of[own]}) imports npnet.{part} "
                       f"(floor {floor_of[part]})")
    return bad


def test_imported_parts_resolves_relative_and_lazy_imports():
    source = ("from ..train.layer_stats import LayerStats\nfrom .. import nn, _io\nfrom . import run\n"
              "import npnet.data.loader\nimport numpy\ndef f():\n    from ...npnet_other import x\n"
              "    from npnet.models import build_model\n")
    parts = imported_parts(source, ("npnet", "plots", "layer_stats"))
    assert parts == {"train", "nn", "_io", "plots", "data", "models"}
    assert imported_parts("from .kernels import ops\n", ("npnet", "functional")) == {"kernels"}


def test_a_figure_importing_the_trainer_breaks_the_floors():
    floor_of = floors()
    assert floor_of["plots"] == floor_of["train"] > floor_of["_io"] == 0
    bad = floor_violations(("npnet", "plots", "layer_stats"), {"train", "_io"}, floor_of)
    assert bad == ["npnet.plots.layer_stats (floor 5) imports npnet.train (floor 5)"]


def test_every_module_imports_only_from_the_floors_below_it():
    floor_of = floors()
    bad = []
    for path in sorted((ROOT / "npnet").rglob("*.py")):
        module = path.relative_to(ROOT).with_suffix("").parts
        if module in (("npnet", "__init__"), ("npnet", "__main__")):  # the public names, the command
            continue
        bad += floor_violations(module, imported_parts(path.read_text(), module), floor_of)
    assert bad == []
