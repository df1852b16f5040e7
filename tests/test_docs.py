r"""The tutorials and the documentation site.

* Every tutorial (``docs/tutorials/*.py``, jupytext percent notebooks) runs top to bottom in a real
  Jupyter kernel in its quick setting (``NPNET_TUTORIAL_QUICK=1``) and ends in a figure. When
  ``NPNET_EXECUTED_NOTEBOOKS`` names the notebooks a docs build has just executed (CI sets it to
  ``docs/_build/jupyter_execute/tutorials``), a notebook that ran exactly the current code is
  checked instead of being run a second time.
* Every public name has a docstring (the check the docs build runs, ``docs/_ext/npnet_docs.py``).
* The site builds with warnings as errors (reusing the notebooks executed above, or the site in
  ``NPNET_DOCS_SITE`` that CI built); no page shows raw LaTeX (``$$``, ``\frac``) outside its
  math elements (which MathJax typesets in the reader's browser), every tutorial page says
  which setting (quick or full) produced its outputs and links to its executed notebook
  (``<stem>.ipynb``, served beside the page). In Chromium its search finds ``Conv2d``, a
  tutorial page shows its figures, and tutorial 01's formula is typeset by the MathJax 2 the site
  serves itself (``docs/_ext/npnet_mathjax.py``, from Debian's ``libjs-mathjax``; skipped when
  the site was built without it and loads MathJax from its CDN, which no machine here reaches).

Skipped without the packages: jupytext, nbclient, ipykernel (the tutorials); sphinx, myst-nb
(the site); playwright and ``/usr/bin/chromium`` (the browser); ``libjs-mathjax`` (the typesetting).
"""
import functools
import html
import importlib
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.py"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def _tutorial_tools():
    for name in ("jupytext", "nbclient", "nbformat", "ipykernel"):
        pytest.importorskip(name)
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import npnet_tutorials
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    return npnet_tutorials


@pytest.fixture(scope="module")
def executed_dir(tmp_path_factory):
    """Where this module keeps the executed tutorials (``<stem>.ipynb``) for the site build."""
    return tmp_path_factory.mktemp("executed_tutorials")


def _kernel_env(monkeypatch):
    monkeypatch.setenv("NPNET_TUTORIAL_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + (os.pathsep + path if path else ""))


def _check_executed(nb, name):
    """No cell failed, every code cell ran, and the last code cell shows a PNG figure."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{name}: {errors[0].ename}: {errors[0].evalue}"
    assert all(c.execution_count is not None for c in code), f"{name}: a code cell did not run"
    last = code[-1].outputs
    assert any("image/png" in o.get("data", {}) for o in last), f"{name}: does not end in a figure"


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, executed_dir, monkeypatch):
    tools = _tutorial_tools()
    import nbclient
    import nbformat

    nb = tools.read_text(path.read_text(encoding="utf-8"))
    done = tools.executed_copy(nb, os.environ.get("NPNET_EXECUTED_NOTEBOOKS", ""), path.stem)
    if done is None:  # not run by a docs build just now: run it here
        _kernel_env(monkeypatch)
        client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                         resources={"metadata": {"path": str(path.parent)}})
        try:
            client.execute()
        except nbclient.exceptions.CellExecutionError as err:
            pytest.fail(f"{path.name} failed in its quick setting:\n{err}")
        done = nb
    _check_executed(done, path.name)
    nbformat.write(done, str(executed_dir / f"{path.stem}.ipynb"))


def _docs_extension(name):
    """The module of one of the site's Sphinx extensions (``docs/_ext/<name>.py``)."""
    pytest.importorskip("sphinx")
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(DOCS / "_ext"))


def test_every_public_name_has_a_docstring():
    assert _docs_extension("npnet_docs").undocumented() == []


def test_docstring_check_names_what_is_missing(monkeypatch):
    """The check fails on a function, a method and a constant without documentation."""
    pytest.importorskip("sphinx")
    import types
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import npnet_docs
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    fake = types.ModuleType("fake_public", "A module with gaps.")

    def undocumented_function():
        pass

    class Documented:
        """A class whose method has no docstring."""

        def method(self):
            pass

    fake.__all__ = ["undocumented_function", "Documented", "LIMIT"]
    fake.undocumented_function, fake.Documented, fake.LIMIT = undocumented_function, Documented, 3
    monkeypatch.setitem(sys.modules, "fake_public", fake)
    assert npnet_docs.undocumented(["fake_public"]) == [
        "fake_public.Documented.method", "fake_public.LIMIT (data: add a '#:' comment above it)",
        "fake_public.undocumented_function"]


@pytest.fixture(scope="module")
def site(executed_dir, tmp_path_factory):
    """The built HTML site: ``NPNET_DOCS_SITE`` if CI built it, else a strict build here that
    reuses the tutorials executed by ``test_tutorial_runs``."""
    given = os.environ.get("NPNET_DOCS_SITE")
    if given and (Path(given) / "index.html").is_file():
        return Path(given)
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    _tutorial_tools()
    out = tmp_path_factory.mktemp("site") / "html"
    env = dict(os.environ, NPNET_EXECUTED_NOTEBOOKS=str(executed_dir), NPNET_TUTORIAL_QUICK="1",
               MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]]
                                                         if os.environ.get("PYTHONPATH") else [])))
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html",
           str(DOCS), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"strict docs build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return out


def test_site_has_every_page(site):
    for page in ["index", "api/npnet.nn", "api/npnet.losses", "guide/contract", "ARCHITECTURE",
                 *(f"tutorials/{p.stem}" for p in TUTORIALS)]:
        assert (site / f"{page}.html").is_file(), page
    api = (site / "api" / "npnet.nn.html").read_text(encoding="utf-8")
    assert 'id="npnet.nn.Conv2d"' in api


RAW_MATH = ("$$", "\\frac", "\\begin{")  # LaTeX that only a missing math renderer leaves visible
_NOT_TEXT = re.compile(r"<(script|style|pre|code)\b.*?</\1>|<(div|span) class=\"math\b[^\"]*\">.*?</\2>",
                       re.S)


def visible_raw_math(page_html):
    """The raw LaTeX in a page's text outside its math elements (which MathJax typesets), code
    and scripts: what a reader would see as ``$$\\frac{d}{dx}...`` instead of a formula."""
    text = html.unescape(re.sub(r"<[^>]+>", " ", _NOT_TEXT.sub(" ", page_html)))
    return [m for m in RAW_MATH if m in text]


def test_raw_math_is_detected():
    assert visible_raw_math("<p>$$\\frac{d}{dx}\\, x$$</p>") == ["$$", "\\frac"]
    assert visible_raw_math('<div class="math notranslate nohighlight">\\[\\frac{a}{b}\\]</div>'
                            "<pre>echo $$</pre>") == []


def test_no_page_shows_raw_math_and_the_formulas_are_math_elements(site):
    pages = [p for p in site.rglob("*.html") if not p.relative_to(site).parts[0].startswith("_")]
    assert len(pages) > 10
    bad = {str(p.relative_to(site)): found for p in pages
           if (found := visible_raw_math(p.read_text(encoding="utf-8")))}
    assert not bad, f"pages showing raw LaTeX (math not parsed as math): {bad}"
    page = (site / "tutorials" / "01_layer_from_scratch.html").read_text(encoding="utf-8")
    assert re.search(r'<div class="math\b[^"]*">\s*\\\[\\frac\{d\}\{dx\}', page), "no display math"
    assert re.search(r'<script[^>]+src="[^"]*mathjax[^"]*"', page, re.I), "no MathJax on the page"
    if (site / "_static" / "mathjax" / "MathJax.js").is_file():  # built with Debian's MathJax 2
        assert _mathjax_src(page) == "../_static/mathjax/MathJax.js", _mathjax_src(page)
        assert "cdn.jsdelivr.net" not in page


def _mathjax_src(page_html):
    """The ``src`` of a page's MathJax script, without its ``?v=`` checksum, or None."""
    m = re.search(r'<script[^>]+src="([^"?]*mathjax[^"?]*)[^"]*"', page_html, re.I)
    return m and m.group(1)


def _mathjax_extension():
    return _docs_extension("npnet_mathjax")


def test_the_site_copies_a_small_complete_part_of_the_system_mathjax(tmp_path):
    """``_ext/npnet_mathjax`` takes MathJax 2 only from a folder holding every file it copies,
    and copies about a megabyte of Debian's 54 MB package."""
    ext = _mathjax_extension()
    assert not ext.local_mathjax(str(tmp_path)) and not ext.local_mathjax("")
    if not ext.local_mathjax(ext.SYSTEM_MATHJAX):
        pytest.skip(f"no MathJax 2 in {ext.SYSTEM_MATHJAX} (apt-get install libjs-mathjax)")
    size = ext.copy_mathjax(ext.SYSTEM_MATHJAX, str(tmp_path))
    assert (tmp_path / "mathjax" / "MathJax.js").is_file()
    assert ext.local_mathjax(str(tmp_path / "mathjax"))
    assert 0.5e6 < size < 2e6, f"{size / 1e6:.1f} MB of MathJax in the site"


def test_every_tutorial_page_says_which_setting_ran(site):
    for path in TUTORIALS:
        page = (site / "tutorials" / f"{path.stem}.html").read_text(encoding="utf-8")
        assert re.search(r"Built in the (quick|full) setting", page), path.stem
        assert page.index("Built in the") < page.index("<img"), f"{path.stem}: note after a figure"


def test_api_pages_show_arguments_examples_and_readable_signatures_but_no_internals(site):
    """The API pages of the layers, losses and optimizers: signatures as written
    (``dtype=np.float32``, not ``<class 'numpy.float32'>``), every class's "Parameters" list and
    example rendered, no internal method (``check_input``, ``convolve``, ``gradients``, ...), and
    forward/backward only where a class documents its own (not Module's text under every layer)."""
    pages = {name: (site / "api" / f"{name}.html").read_text(encoding="utf-8")
             for name in ("npnet.nn", "npnet.losses", "npnet.optim")}
    for name, page in pages.items():
        assert "&lt;class &#39;numpy" not in page and "<class 'numpy" not in page, name
        internal = re.findall(r'id="[\w.]+\.(check_input|convolve|gradients|normalize|eval_affine|'
                              r'has_hooks)"', page)
        assert not internal, f"{name} documents internals: {internal}"
    nn_page = pages["npnet.nn"]
    conv = nn_page[nn_page.index('id="npnet.nn.Conv2d"'):nn_page.index('id="npnet.nn.MaxPool2d"')]
    signature = html.unescape(re.sub(r"<[^>]+>", "", conv[:conv.index("</dt>")]))
    assert "dtype=np.float32" in signature and "algorithm=None" in signature, signature
    for arg in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "bias", "rng",
                "dtype", "algorithm"):
        assert re.search(rf"<strong>{arg}</strong>", conv), f"Conv2d's {arg} is not described"
    assert "kaiming_uniform_" in conv and "&gt;&gt;&gt;" in conv
    documented = set(re.findall(r'id="npnet\.nn\.(\w+)\.(?:forward|backward)"', nn_page))
    assert "Module" in documented and not documented & {"Conv2d", "Linear", "ReLU", "BatchNorm2d"}
    assert 'id="npnet.optim.SGD.step"' not in pages["npnet.optim"]  # Optimizer.step says it


def test_every_tutorial_page_links_its_notebook_which_the_site_serves(site):
    """Each tutorial page has a visible link to ``<stem>.ipynb`` beside it; that file is the
    executed notebook: valid nbformat JSON whose code cells are the tutorial's, with outputs."""
    import nbformat
    tools = _tutorial_tools()
    for path in TUTORIALS:
        page = (site / "tutorials" / f"{path.stem}.html").read_text(encoding="utf-8")
        link = re.search(rf'<a[^>]+href="{re.escape(path.stem)}\.ipynb"[^>]*>([^<]*)</a>', page)
        assert link and link.group(1) == "Download this notebook (.ipynb)", path.stem
        assert page.index(link.group(0)) < page.index("<img"), f"{path.stem}: link after a figure"
        notebook = site / "tutorials" / f"{path.stem}.ipynb"
        assert notebook.is_file(), f"the site does not serve {notebook.name}"
        nb = nbformat.read(notebook, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert tools.code_cells(nb) == tools.code_cells(tools.read_text(path.read_text("utf-8")))
        assert any(c.outputs for c in code), f"{notebook.name}: not executed"
        assert not any("```{admonition}" in c.source for c in nb.cells), "MyST left in the notebook"


@pytest.fixture()
def browser_page(site):
    pytest.importorskip("playwright")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                yield page, f"http://127.0.0.1:{server.server_address[1]}"
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()


def test_site_search_finds_conv2d(browser_page):
    page, base = browser_page
    page.goto(f"{base}/search.html?q=Conv2d")
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#search-results a'))"
        ".some(a => a.textContent.includes('Conv2d'))", timeout=120_000)
    links = page.eval_on_selector_all("#search-results a", "els => els.map(a => a.getAttribute('href'))")
    assert any("npnet.nn" in (href or "") for href in links), links


def test_tutorial_page_shows_its_figure(browser_page):
    page, base = browser_page
    page.goto(f"{base}/tutorials/03_train_cnn.html", wait_until="load")
    loaded = page.evaluate(
        "() => Array.from(document.images).filter(i => i.src.includes('_images/'))"
        ".map(i => [i.complete, i.naturalWidth])")
    assert loaded, "no figure on the tutorial page"
    assert all(done and width > 0 for done, width in loaded), loaded


def test_tutorial_formula_is_typeset_by_mathjax(browser_page, site):
    """Offline, the display formula of tutorial 01 is typeset: MathJax (the site's own copy, see
    ``_ext/npnet_mathjax``) replaced every math element's TeX by its rendering, without errors,
    and loaded every file it asked for from the site."""
    page, base = browser_page
    url = f"{base}/tutorials/01_layer_from_scratch.html"
    missing = []
    page.on("response", lambda r: missing.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("requestfailed", lambda r: missing.append(f"failed {r.url}"))
    src = _mathjax_src((site / "tutorials" / "01_layer_from_scratch.html").read_text(encoding="utf-8"))
    if src is None or "://" in src:
        pytest.skip(f"the site loads MathJax from {src}, which this offline machine cannot reach: it "
                    "was built without Debian's MathJax 2 (apt-get install libjs-mathjax)")
    page.goto(url, wait_until="load")
    typeset = ("() => { const m = Array.from(document.querySelectorAll('div.math, span.math'));"
               " return m.length > 0 && m.every(e => e.querySelector('.MathJax_CHTML, mjx-container')); }")
    try:
        page.wait_for_function(typeset, timeout=60_000)
        done = True
    except Exception:  # playwright's TimeoutError: say what the page shows instead, below
        done = False
    if not done:
        shown = page.evaluate("() => Array.from(document.querySelectorAll('div.math'))"
                              ".map(e => e.innerText.slice(0, 80))")
        pytest.fail(f"MathJax ({src}) did not typeset the math of {url} in 60 s; the page shows "
                    f"{shown}; failed requests: {missing}")
    # MathJax 2 shows the TeX as a preview until the whole page is done: wait for its queue
    page.evaluate("() => new Promise(done => window.MathJax.Hub ? MathJax.Hub.Queue(done) : done())")
    text = page.evaluate("() => document.body.innerText")
    raw = [tex for tex in ("\\frac", "\\[", "\\(", "$$") if tex in text]
    assert not raw, f"raw TeX visible after typesetting: {raw}"
    errors = page.evaluate("() => document.querySelectorAll('.mjx-merror, .noError, .MathJax_Error').length")
    assert errors == 0, f"{errors} formula(s) with a TeX error"
    assert not [m for m in missing if "/_static/" in m], missing
