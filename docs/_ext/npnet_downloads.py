"""Sphinx extension: every tutorial page links to its executed notebook, which the site serves.

MyST-NB writes each executed notebook to ``<outdir>/../jupyter_execute/tutorials/<stem>.ipynb``
(reused ones too, see ``npnet_tutorials``). This extension puts a "Download this notebook
(.ipynb)" link under the title of each page of ``tutorials/`` and, when the HTML build has
finished, copies those notebooks beside their pages (``<outdir>/tutorials/<stem>.ipynb``). In the
copy, the page's note on the setting that ran (a MyST admonition, which Jupyter would show as a
code fence) becomes a Markdown quote.
"""
import os
import re

import nbformat
from docutils import nodes

FOLDER = "tutorials"
LINK_TEXT = "Download this notebook (.ipynb)"
_ADMONITION = re.compile(r"\A```\{admonition\} (?P<title>[^\n]*)\n(?::[^\n]*\n)*\n?(?P<body>.*?)\n?```\s*\Z",
                         re.S)


def _is_tutorial(app, docname):
    return docname.startswith(FOLDER + "/") and \
        app.env.doc2path(docname).suffix == ".py"


def _add_link(app, doctree, docname):
    """doctree-resolved: the download link, as the first paragraph under the page's title."""
    if app.builder.format != "html" or not _is_tutorial(app, docname):
        return
    stem = docname.split("/")[-1]
    ref = nodes.reference("", LINK_TEXT, refuri=f"{stem}.ipynb", internal=False)
    para = nodes.paragraph("", "", ref, classes=["npnet-download"])
    section = doctree.next_node(nodes.section)
    if section is None:
        doctree.insert(0, para)
    else:
        section.insert(1, para)


def notebook_for_download(src, dst):
    """Writes the executed notebook ``src`` to ``dst``, its MyST admonitions as Markdown quotes."""
    nb = nbformat.read(src, as_version=4)
    for cell in nb.cells:
        m = _ADMONITION.match(cell.source) if cell.cell_type == "markdown" else None
        if m:
            body = "\n".join("> " + line if line else ">" for line in m.group("body").splitlines())
            cell.source = f"> **{m.group('title')}**\n>\n{body}"
    nbformat.validate(nb)
    nbformat.write(nb, dst)


def _copy_notebooks(app, exception):
    """build-finished: every tutorial's executed notebook beside its page in the HTML output."""
    if exception is not None or app.builder.format != "html":
        return
    executed = os.path.join(os.path.dirname(os.path.abspath(app.outdir)), "jupyter_execute", FOLDER)
    for docname in sorted(app.env.found_docs):
        if not _is_tutorial(app, docname):
            continue
        stem = docname.split("/")[-1]
        src = os.path.join(executed, f"{stem}.ipynb")
        if not os.path.isfile(src):
            raise FileNotFoundError(f"npnet_downloads: no executed notebook {src} for {docname}")
        os.makedirs(os.path.join(app.outdir, FOLDER), exist_ok=True)
        notebook_for_download(src, os.path.join(app.outdir, FOLDER, f"{stem}.ipynb"))


def setup(app):
    app.connect("doctree-resolved", _add_link)
    app.connect("build-finished", _copy_notebooks)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
