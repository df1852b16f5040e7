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


def test_the_layers_show_examples():
    """The main layers, losses and optimizers each have an example on their API page."""
    from npnet import nn, optim
    for cls in (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.BatchNorm1d, nn.BatchNorm2d,
                nn.Dropout, nn.ReLU, nn.Sequential, nn.Flatten, nn.CrossEntropyLoss, nn.MSELoss,
                optim.SGD, optim.Adam):
        assert ">>>" in (cls.__doc__ or ""), f"{cls.__name__} has no example"
