"""The tutorials as notebooks: read from their jupytext text form, optionally with the outputs of
an earlier execution.

``NPNET_EXECUTED_NOTEBOOKS`` may name a folder of executed notebooks ``<stem>.ipynb`` (the test
suite's ``tests/test_docs.py`` writes one, and a docs build leaves its own in
``docs/_build/jupyter_execute/tutorials``). A tutorial whose code cells are exactly those of such a
notebook takes its outputs from it and is not executed again; any other tutorial is executed
during the build. So the test suite and CI run every tutorial once, not twice.
"""
import glob
import os

import jupytext
import nbformat

TUTORIALS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tutorials")


def read_text(text):
    """The notebook of a tutorial's jupytext percent text."""
    return jupytext.reads(text, fmt="py:percent")


def code_cells(nb):
    """The sources of the code cells: two notebooks with the same ones ran the same code."""
    return tuple(c.source for c in nb.cells if c.cell_type == "code")


def executed_copy(nb, folder, stem):
    """The executed notebook ``folder/<stem>.ipynb`` if it ran exactly ``nb``'s code, else None."""
    path = os.path.join(folder, f"{stem}.ipynb")
    if not folder or not os.path.isfile(path):
        return None
    done = nbformat.read(path, as_version=4)
    return done if code_cells(done) == code_cells(nb) else None


_REUSED = {}  # code cells -> the executed notebook with those cells


def reusable(folder=None):
    """The stems of the tutorials that have a matching executed copy in ``folder``
    (default ``$NPNET_EXECUTED_NOTEBOOKS``); remembers those copies for ``read_tutorial``."""
    folder = os.environ.get("NPNET_EXECUTED_NOTEBOOKS", "") if folder is None else folder
    stems = []
    for path in sorted(glob.glob(os.path.join(TUTORIALS, "*.py"))):
        stem = os.path.splitext(os.path.basename(path))[0]
        with open(path, encoding="utf-8") as f:
            nb = read_text(f.read())
        done = executed_copy(nb, folder, stem)
        if done is not None:
            _REUSED[code_cells(nb)] = done
            stems.append(stem)
    return stems


QUICK_NOTE = """```{admonition} Built in the quick setting
:class: warning npnet-setting

This page was built with `NPNET_TUTORIAL_QUICK=1` (as CI builds it): the code below ran on a
fraction of the images for fewer epochs, so its accuracies and figures are those of a short run,
not of the tutorial's full setting. Build the site without the variable, or run the tutorial as a
notebook, for the full run.
```"""
FULL_NOTE = """```{admonition} Built in the full setting
:class: note npnet-setting

The outputs below are those of the tutorial's full setting (as written in its code).
```"""


def setting_note():
    """The note every tutorial page shows under its title: which setting produced its outputs."""
    return QUICK_NOTE if os.environ.get("NPNET_TUTORIAL_QUICK") == "1" else FULL_NOTE


def read_tutorial(text):
    """MyST-NB's reader of ``tutorials/*.py``: the notebook, with the outputs of its executed
    copy when ``reusable`` found one, and a note after the first cell (title and introduction)
    saying which setting (quick or full, from ``NPNET_TUTORIAL_QUICK``) ran. The note is a markdown cell: it leaves the code cells, which decide reuse, alone."""
    nb = read_text(text)
    done = _REUSED.get(code_cells(nb))
    if done is not None:
        cells = [c for c in nb.cells if c.cell_type == "code"]
        for cell, ran in zip(cells, (c for c in done.cells if c.cell_type == "code")):
            cell.outputs, cell.execution_count = ran.outputs, ran.execution_count
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(setting_note()))
    return nb
