"""The ``>>>`` examples in the docstrings of npnet.nn, npnet.losses and npnet.optim (with the LR
schedules of npnet.optim.lr_scheduler) run and print what they say (``doctest``), so the API pages'
examples stay true; every class there has one, and describes each argument of its constructor."""
import doctest
import importlib
import pkgutil

import pytest

import npnet.losses
import npnet.nn
import npnet.optim

PACKAGES = [npnet.nn, npnet.optim]


def _modules():
    mods = [npnet.losses]
    for package in PACKAGES:
        mods.append(package)
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            mods.append(importlib.import_module(info.name))
    return mods


MODULES = _modules()


@pytest.mark.parametrize("module", MODULES, ids=[m.__name__ for m in MODULES])
def test_docstring_examples_run(module):
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, module.__name__):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{module.__name__}: {result.failed} docstring example(s) failed"


def _public_classes():
    import inspect
    from npnet import losses, nn, optim
    return [getattr(m, n) for m in (nn, losses, optim) for n in m.__all__
            if inspect.isclass(getattr(m, n))]


def test_every_layer_loss_optimizer_and_schedule_shows_an_example():
    """Every public layer, loss, optimizer and LR schedule class, and Parameter, has an example
    on its API page."""
    from npnet import nn, optim
    # base classes and a context manager, shown in use by the examples of the others
    skip = {nn.no_grad, nn.ResidualBlock, optim.Optimizer}
    missing = sorted({c.__name__ for c in _public_classes()
                      if c not in skip and c.__module__.startswith("npnet.")
                      and ">>>" not in (c.__doc__ or "")})
    assert not missing, f"classes without a '>>>' example: {missing}"


def test_every_constructor_argument_is_described():
    """The "Args:" section of each public class of npnet.nn, npnet.losses and npnet.optim names
    every argument of its constructor (``**kwargs`` aside), as PyTorch's pages do."""
    import inspect
    import re
    missing = {}
    for cls in _public_classes():
        if cls.__init__ is object.__init__:
            continue
        params = [name for name, p in inspect.signature(cls.__init__).parameters.items()
                  if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        args = (cls.__doc__ or "").partition("Args:")[2]
        absent = [name for name in params if not re.search(rf"^\s+\*{{0,2}}{name}\b", args, re.M)]
        if absent:
            missing[cls.__name__] = absent
    assert not missing, f"constructor arguments not described under Args: {missing}"
