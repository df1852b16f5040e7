"""Sphinx configuration of npnet's documentation site.

Build (from the repository root; the site lands in ``docs/_build/html``, which git ignores):

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -n -b html docs docs/_build/html

``-W`` turns every warning into an error and ``-n`` (nitpicky) warns on every cross-reference
that does not resolve, so a broken reference fails the build; the extension ``_ext/npnet_docs``
fails it on any public name without a docstring. The tutorials (``tutorials/*.py``, jupytext
percent notebooks) are executed during the build: in their full setting by default, in their
quick setting with ``NPNET_TUTORIAL_QUICK=1`` (what CI does). ``NPNET_EXECUTED_NOTEBOOKS=DIR``
reuses notebooks executed before (``_ext/npnet_tutorials.py``).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))
sys.path.insert(0, os.path.dirname(HERE))  # this checkout's npnet, not another installed copy
os.environ.setdefault("MPLBACKEND", "Agg")  # the notebook kernels inherit it: no GUI backend

project = "npnet"
author = "the npnet authors"
copyright = "npnet authors, MIT licence"
release = version = __import__("npnet").__version__

extensions = [
    "myst_nb",               # MyST markdown pages and executed notebooks
    "sphinx.ext.autodoc",    # the API reference, from the docstrings
    "sphinx.ext.viewcode",   # a [source] link beside every object
    "npnet_docs",            # fails the build on a public name without a docstring
    "npnet_downloads",       # each tutorial page links to its executed .ipynb, served beside it
    "npnet_mathjax",         # formulas typeset offline, by a MathJax 2 copied into the site
]

# -- pages -----------------------------------------------------------------------------------------
root_doc = "index"
# every .py file outside tutorials/ is code, not a notebook
exclude_patterns = ["_build", "results", "figures", "conf.py", "_ext", "**/.ipynb_checkpoints"]
# dollarmath: $x$ and $$...$$ are math (the tutorials' formulas); amsmath: \begin{align} and kin.
# Math is typeset in the reader's browser by MathJax: the copy of Debian's libjs-mathjax (MathJax
# 2.7) that _ext/npnet_mathjax serves with the site, offline; without that package, Sphinx's CDN
# MathJax (offline, a page then shows the formula's LaTeX inside its math element)
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath", "amsmath"]
myst_heading_anchors = 3
# a heading that skips a level (## after #, as pages written for GitHub often do) is style, not a
# broken reference: it does not fail the build
suppress_warnings = ["myst.header"]
nitpicky = True

# -- notebooks -------------------------------------------------------------------------------------
import npnet_tutorials  # noqa: E402  (needs _ext on sys.path)

nb_custom_formats = {".py": ["npnet_tutorials.read_tutorial", {}]}
nb_execution_mode = "force"          # every build runs every tutorial top to bottom, except those
# already executed with exactly their current code ($NPNET_EXECUTED_NOTEBOOKS, see npnet_tutorials)
nb_execution_excludepatterns = [f"*tutorials/{stem}.py" for stem in npnet_tutorials.reusable()]
nb_execution_raise_on_error = True   # a failing cell fails the build, naming the notebook
nb_execution_timeout = 900           # seconds per cell; the full settings take minutes
nb_execution_show_tb = True
nb_merge_streams = True

# -- API reference ---------------------------------------------------------------------------------
autodoc_default_options = {"members": True, "member-order": "bysource", "show-inheritance": True}
# forward/backward are documented once, on Module: a layer shows them only where it writes its own
autodoc_inherit_docstrings = False
autodoc_preserve_defaults = True   # dtype=np.float32 in a signature, not <class 'numpy.float32'>
# "Args:" / "Shape:" / "Example:" sections (as PyTorch's pages) are rendered by sphinx.ext.napoleon,
# called by _ext/npnet_docs on the docstrings of npnet.nn, npnet.losses and npnet.optim only
autodoc_typehints = "none"
add_module_names = False

# -- HTML ------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"npnet {release}"
html_static_path = []
