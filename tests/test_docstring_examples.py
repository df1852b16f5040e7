"""The ``>>>`` examples in the docstrings of npnet.nn, npnet.losses and npnet.optim run and print
what they say (``doctest``), so the API pages' examples stay true."""
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


def test_every_layer_loss_and_optimizer_shows_an_example():
    """Every public layer, loss and optimizer class has an example on its API page."""
    import inspect
    from npnet import losses, nn, optim
    # the LR schedules (npnet.optim.lr_scheduler) are not optimizers: their formula is their doc
    OWNERS = ("npnet.nn", "npnet.losses", "npnet.optim.adam", "npnet.optim.sgd", "npnet.optim.adaptive")
    skip = {nn.Module, nn.Parameter, nn.no_grad, nn.ResidualBlock, optim.Optimizer}
    classes = [getattr(m, n) for m in (nn, losses, optim) for n in m.__all__
               if inspect.isclass(getattr(m, n))]
    missing = sorted({c.__name__ for c in classes
                      if c not in skip and c.__module__.startswith(OWNERS)
                      and ">>>" not in (c.__doc__ or "")})
    assert not missing, f"classes without a '>>>' example: {missing}"
