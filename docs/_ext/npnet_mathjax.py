"""Sphinx extension: the site's formulas are typeset offline, by a copy of MathJax 2 it serves.

Sphinx writes math as ``\\(...\\)`` and ``\\[...\\]`` inside ``<span|div class="math">`` and loads
MathJax from its CDN, which a reader without internet (and every machine of this project) cannot
reach: the formulas stay raw TeX. Debian's ``libjs-mathjax`` (MathJax 2.7, a system package like
the chromium of the browser test, no Python dependency) installs MathJax under
``/usr/share/javascript/mathjax``. When that folder exists (or the one named by the config value
``npnet_mathjax_dir``, e.g. ``-D npnet_mathjax_dir=DIR``), this extension copies the part of
MathJax that the site needs into ``_static/mathjax/`` of the HTML output (``FILES``: 96 files,
1.0 MB of the package's 54 MB) and points ``mathjax_path`` at it, with a TeX-input, CommonHTML-output
configuration (``MATHJAX2_CONFIG``) that typesets exactly Sphinx's math elements. Otherwise the
build keeps Sphinx's CDN MathJax and says so once in its log.

A ``mathjax_path`` or ``mathjax2_config`` set in ``conf.py`` or with ``-D`` is left as it is.
"""
import os
import shutil

from sphinx.util import logging  # before sphinx.ext.mathjax, which uses it without importing it

from sphinx.ext.mathjax import MATHJAX_URL  # noqa: E402

logger = logging.getLogger(__name__)

#: where Debian's libjs-mathjax installs MathJax 2 (``apt-get install libjs-mathjax``)
SYSTEM_MATHJAX = "/usr/share/javascript/mathjax"
#: the folder of the copy, under the site's ``_static/``
TARGET = "mathjax"
#: what the site needs of MathJax 2, relative to its root: the loader, TeX input (its extensions
#: are loaded on demand: ``\begin{align}`` loads AMSmath), the internal MathML it translates to,
#: CommonHTML output with its font metrics and the TeX web fonts (woff only: every browser that
#: runs MathJax reads woff), the tex2jax preprocessor and the right-click menu and zoom
FILES = ["MathJax.js", "jax/input/TeX", "jax/element/mml", "jax/output/CommonHTML",
         "fonts/HTML-CSS/TeX/woff", "extensions/TeX", "extensions/tex2jax.js",
         "extensions/MathEvents.js", "extensions/MathMenu.js", "extensions/MathZoom.js"]
#: MathJax.Hub.Config of the local copy: the math of Sphinx's math elements (and of notebook
#: outputs) only, delimited as Sphinx writes it; no "Loading..." box
MATHJAX2_CONFIG = {
    "jax": ["input/TeX", "output/CommonHTML"],
    "extensions": ["tex2jax.js"],
    "TeX": {"extensions": ["AMSmath.js", "AMSsymbols.js", "noErrors.js", "noUndefined.js"]},
    "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]],
                "processEscapes": True, "ignoreClass": "document", "processClass": "math|output_area"},
    "messageStyle": "none",
}


def local_mathjax(folder):
    """True if ``folder`` holds a MathJax 2 with every file of ``FILES``."""
    return bool(folder) and all(os.path.exists(os.path.join(folder, f)) for f in FILES)


def _configure(app, config):
    """config-inited: the local copy's path and configuration, or a note that the CDN stays."""
    folder = config.npnet_mathjax_dir
    app.npnet_mathjax = local_mathjax(folder)
    if not app.npnet_mathjax:
        logger.info("npnet_mathjax: no MathJax 2 in %s (apt-get install libjs-mathjax): the site "
                    "loads MathJax from %s, so its formulas show as TeX to a reader offline",
                    folder or "(npnet_mathjax_dir is empty)", config.mathjax_path)
        return
    if config.mathjax_path == MATHJAX_URL:
        config.mathjax_path = f"{TARGET}/MathJax.js"  # relative: under _static/
    if not config.mathjax2_config:
        config.mathjax2_config = MATHJAX2_CONFIG


def copy_mathjax(folder, static_dir):
    """Copies ``FILES`` of the MathJax in ``folder`` into ``static_dir/mathjax``; returns the
    number of bytes copied."""
    total = 0
    for rel in FILES:
        src, dst = os.path.join(folder, rel), os.path.join(static_dir, TARGET, rel)
        if os.path.isdir(src):
            shutil.copytree(src, dst, dirs_exist_ok=True)
            total += sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(dst) for f in fs)
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)
            total += os.path.getsize(dst)
    return total


def _copy(app):
    """builder-inited: the copy exists before any page is written (Sphinx adds its checksum to
    the ``<script>`` URL, so a reader's browser never keeps a stale MathJax)."""
    if not getattr(app, "npnet_mathjax", False) or app.builder.format != "html":
        return
    size = copy_mathjax(app.config.npnet_mathjax_dir, os.path.join(app.outdir, "_static"))
    logger.info("npnet_mathjax: MathJax 2 from %s copied into _static/%s (%.1f MB)",
                app.config.npnet_mathjax_dir, TARGET, size / 1e6)


def setup(app):
    app.setup_extension("sphinx.ext.mathjax")
    app.add_config_value("npnet_mathjax_dir", SYSTEM_MATHJAX, "html", types=frozenset({str}))
    app.connect("config-inited", _configure)
    app.connect("builder-inited", _copy)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
