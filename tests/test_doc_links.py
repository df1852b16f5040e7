"""Every relative link and image of the Markdown pages a user reads on GitHub points at a file that
exists and that git does not ignore (a figure made but never committed is a broken image there)."""

import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = ["README.md", "RESULTS.md", "benchmarks/README.md", "docs/ARCHITECTURE.md",
         *[str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("docs/guide/*.md"))],
         *[str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("docs/results/*/summary.md"))]]
LINK = re.compile(r"\]\(([^)\s]+)\)")       # [text](target) and ![alt](target)


def relative_targets(text):
    """The link targets of a Markdown text that name a file of the repository: no URL, no pure
    anchor, the ``#section`` part dropped."""
    out = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        out.append(target.split("#", 1)[0])
    return out


def test_relative_targets_keep_files_and_drop_urls():
    text = "[a](docs/x.md#part) ![b](fig.png) [c](https://example.org/y.png) [d](#top) [e](mailto:z)"
    assert relative_targets(text) == ["docs/x.md", "fig.png"]


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_exists(page):
    path = ROOT / page
    if not path.exists():
        pytest.skip(f"{page} is not in this checkout")
    missing = [t for t in relative_targets(path.read_text(encoding="utf-8"))
               if not (path.parent / t).exists()]
    assert not missing, f"{page} links to files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES)
def test_no_link_points_at_an_ignored_file(page):
    path = ROOT / page
    if shutil.which("git") is None or not (ROOT / ".git").exists() or not path.exists():
        pytest.skip("not a git checkout")
    resolved = [(path.parent / t).resolve() for t in relative_targets(path.read_text(encoding="utf-8"))]
    targets = [str(r.relative_to(ROOT)) for r in resolved if r.is_relative_to(ROOT)]
    if not targets:
        return
    # check-ignore prints the paths that .gitignore excludes: exit 0, or 1 when there is none;
    # anything else is git failing, which must not pass as "nothing ignored"
    done = subprocess.run(["git", "check-ignore", "--no-index", *targets], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode in (0, 1), f"git check-ignore failed: {done.stderr}"
    ignored = done.stdout.split()
    assert not ignored, f"{page} links to files that git ignores (never committed): {ignored}"


def test_install_guide_lists_every_extra():
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extras = set(cfg["options.extras_require"])
    guide = (ROOT / "docs" / "guide" / "install.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([\w-]+)` \|", guide, re.M))
    assert "mpi" in extras and listed == extras, (sorted(extras), sorted(listed))
