"""Residual connections: out = branch(x) + shortcut(x)."""
from ._checks import check_grad
from .module import Module
from .shape import Identity


class Residual(Module):
    """``branch(x) + shortcut(x)``; the shortcut defaults to ``Identity()``.

    Both paths see the same input, so backward adds their input gradients. Any two modules with
    equal output shapes compose (ResNet basic blocks, projection or option-A shortcuts).
    State-dict keys: ``branch.*`` and ``shortcut.*``.
    """

    def __init__(self, branch, shortcut=None):
        super().__init__()
        self.branch = branch
        self.shortcut = Identity() if shortcut is None else shortcut

    def forward(self, x):
        a, b = self.branch(x), self.shortcut(x)
        if a.shape != b.shape:
            raise ValueError(f"Residual: branch output {a.shape} and shortcut output {b.shape} differ")
        self.cache = (a.shape, a.dtype)
        return a + b

    def backward(self, dout, input_grad=True):
        shape, dtype = self._saved()
        check_grad(self, dout, shape, dtype)
        self.cache = None
        dx_branch = self.branch.backward(dout, input_grad)
        dx_shortcut = self.shortcut.backward(dout, input_grad)
        return dx_branch + dx_shortcut if input_grad else None
