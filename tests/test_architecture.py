"""docs/ARCHITECTURE.md stays true: its table of files lists every module of every package, and
every file it lists exists."""
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
