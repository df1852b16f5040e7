"""Sphinx extension: fails the build on a public name of npnet without a docstring.

The public names are those of ``PUBLIC_MODULES`` (their ``__all__``), the public methods and
properties of every public class, and ``npnet.save`` / ``npnet.load``. Classes and functions
need a docstring (their own or, for a method, the one it overrides); data (constants such as
``npnet.data.CIFAR10_MD5``) needs a ``#:`` comment before its assignment, which this extension
also hands to autodoc, since autodoc reads such comments only in the module being documented.
"""
import importlib
import inspect
import pkgutil

from sphinx.ext.napoleon import Config as NapoleonConfig
from sphinx.ext.napoleon.docstring import GoogleDocstring
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

logger = logging.getLogger(__name__)

PUBLIC_MODULES = ["npnet", "npnet.nn", "npnet.losses", "npnet.optim", "npnet.data", "npnet.train",
                  "npnet.models", "npnet.metrics", "npnet.plots", "npnet.gradcheck",
                  "npnet.functional", "npnet.init", "npnet.onnx"]


def public_names(module):
    """``module.__all__``, or its names without a leading underscore."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    return list(names)


def _submodules(package):
    """The package and every module below it (imported), for the ``#:`` comments of its data."""
    mods = [package]
    if package.__name__ == "npnet":  # the root's public names are functions: nothing to walk
        return mods
    for info in pkgutil.walk_packages(getattr(package, "__path__", []), package.__name__ + "."):
        if not info.name.endswith("__main__"):
            mods.append(importlib.import_module(info.name))
    return mods


def data_comments(module):
    """name -> the lines of its ``#:`` comment, from the module and the modules below it."""
    found = {}
    for mod in _submodules(module):
        try:
            docs = ModuleAnalyzer.for_module(mod.__name__).find_attr_docs()
        except Exception:  # an extension module without source: nothing to read
            continue
        for (scope, name), lines in docs.items():
            if scope == "" and any(line.strip() for line in lines):
                found.setdefault(name, list(lines))
    return found


def _is_data(obj):
    return not (inspect.isclass(obj) or inspect.ismodule(obj) or callable(obj))


def _class_members(cls):
    """The public methods and properties that ``cls`` itself defines."""
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if inspect.isfunction(value) or isinstance(value, property):
            yield name


def undocumented(modules=PUBLIC_MODULES):
    """The dotted names of the public objects of ``modules`` that have no documentation."""
    missing = []
    for modname in modules:
        module = importlib.import_module(modname)
        if not (module.__doc__ or "").strip():
            missing.append(modname)
        comments = data_comments(module)
        for name in public_names(module):
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                continue  # a submodule listed in __all__ (npnet.optim.lr_scheduler): checked by name
            if _is_data(obj):
                if name not in comments:
                    missing.append(f"{modname}.{name} (data: add a '#:' comment above it)")
                continue
            if not inspect.getdoc(obj):
                missing.append(f"{modname}.{name}")
            if inspect.isclass(obj):
                missing += [f"{modname}.{name}.{m}" for m in _class_members(obj)
                            if not inspect.getdoc(getattr(obj, m))]
    return sorted(set(missing))


def _check(app):
    """Logs an error per undocumented public name; ``_fail`` then makes the build fail."""
    app.env.npnet_undocumented = missing = undocumented()
    for name in missing:
        logger.error("public name without a docstring: %s (write one, with shapes where arrays go "
                     "in or out)", name, type="npnet", subtype="docstring")


def _fail(app, exception):
    """Exit status 1 after a build that found undocumented names, even without -W."""
    if exception is None and getattr(app.env, "npnet_undocumented", None):
        app.statuscode = 1


def _fill_data_docs(app, what, name, obj, options, lines):
    """Gives autodoc the ``#:`` comment of a constant re-exported from a private module."""
    if what != "data" or any(line.strip() for line in lines):
        return
    modname, _, attr = name.rpartition(".")
    try:
        module = importlib.import_module(modname)
    except ImportError:
        return
    lines.extend(data_comments(module).get(attr, []))


def _documented_ids():
    """The ids of every object the API reference documents."""
    ids = set()
    for modname in PUBLIC_MODULES:
        module = importlib.import_module(modname)
        ids.update(id(getattr(module, name)) for name in public_names(module))
    return ids


def _public_bases(app, name, obj, options, bases):
    """Shows a class's documented bases: a private or unexported npnet base (``_Loss``,
    ``RandomTransform``) is replaced by its own bases, so every base shown is a working link."""
    documented = _documented_ids()

    def resolve(cls):
        if not cls.__module__.startswith("npnet") or id(cls) in documented:
            return [cls]
        return [b for base in cls.__bases__ for b in resolve(base)]

    shown = []
    for base in bases:
        shown += [b for b in resolve(base) if b not in shown]
    if len(shown) > 1 and object in shown:  # a private mixin's base: says nothing
        shown.remove(object)
    bases[:] = shown


#: Methods that are plumbing between npnet's own modules (the fused modules, the tuner, fusion's
#: rule), not API: public in Python's sense so those modules can call them, left off the pages.
INTERNAL_MEMBERS = {"check_input", "convolve", "gradients", "normalize", "eval_affine", "has_hooks"}


def _repeats_a_base(obj, name):
    """True if ``obj`` (a method) has the docstring of the method it overrides, word for word:
    the page of the base class already says it."""
    cls = getattr(obj, "__qualname__", "").rpartition(".")[0]
    owner = getattr(inspect.getmodule(obj), cls, None) if cls else None
    doc = inspect.getdoc(obj)
    if not inspect.isclass(owner) or not doc:
        return False
    return any(inspect.getdoc(getattr(base, name, None)) == doc for base in owner.__mro__[1:]
               if getattr(base, name, None) is not None)


def _skip_internal(app, what, name, obj, skip, options):
    """autodoc-skip-member: keeps ``INTERNAL_MEMBERS`` of a class off the API pages, and a
    method whose docstring only repeats the one of the method it overrides."""
    if what == "class" and (name in INTERNAL_MEMBERS or
                            (inspect.isfunction(obj) and _repeats_a_base(obj, name))):
        return True
    return None


#: The modules whose docstrings are written in Google style ("Args:", "Shape:", "Example:"), as
#: PyTorch's: napoleon renders them there only, so that a line such as ``x: ...`` elsewhere (a
#: property's first line) is not reinterpreted as a type.
GOOGLE_STYLE = ("npnet.nn", "npnet.losses", "npnet.optim", "npnet.onnx")
_NAPOLEON = NapoleonConfig(napoleon_google_docstring=True, napoleon_numpy_docstring=False,
                           napoleon_use_rtype=False, napoleon_use_ivar=False,
                           napoleon_custom_sections=[("Shape", "params_style")])


def _google_sections(app, what, name, obj, options, lines):
    """autodoc-process-docstring: napoleon's Google-style sections, on ``GOOGLE_STYLE`` modules."""
    if what in ("class", "method", "function", "exception") and \
            any(name == m or name.startswith(m + ".") for m in GOOGLE_STYLE):
        lines[:] = GoogleDocstring(lines, _NAPOLEON, app, what, name, obj, options).lines()


def setup(app):
    app.connect("autodoc-process-docstring", _google_sections)
    app.connect("autodoc-skip-member", _skip_internal)
    app.connect("builder-inited", _check)
    app.connect("build-finished", _fail)
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("autodoc-process-docstring", _fill_data_docs)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
