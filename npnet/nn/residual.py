"""Residual connections: out = branch(x) + shortcut(x), and blocks act(branch(x) + shortcut(x))."""
from ._checks import check_grad
from .container import chain_backward
from .module import Module
from .shape import Identity


class Residual(Module):
    """``branch(x) + shortcut(x)``; the shortcut defaults to ``Identity()``.

    Both paths see the same input, so backward adds their input gradients. Any two modules with
    equal output shapes compose (ResNet basic blocks, projection or option-A shortcuts).
    State-dict keys: ``branch.*`` and ``shortcut.*``.

    Args:
        branch (Module): the main path.
        shortcut (Module or None): the other path; None is ``Identity()``.

    Shape:
        input: what both paths take.
        output: the branch's output; the shortcut's must have the same shape and dtype.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> block = nn.Residual(nn.Sequential(nn.Linear(8, 8, rng=0), nn.ReLU()))
        >>> x = np.ones((2, 8), np.float32)
        >>> block(x).shape, block.backward(np.ones((2, 8), np.float32)).shape
        ((2, 8), (2, 8))
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


def check_sum(module, shape, dtype, s):
    """A clear error unless the shortcut output ``s`` has the branch output's ``shape`` and
    ``dtype`` (a residual block adds them: no silent broadcast, no silent upcast)."""
    if tuple(shape) != s.shape or dtype != s.dtype:
        raise ValueError(f"{type(module).__name__}: branch output {dtype} {tuple(shape)} and shortcut output "
                         f"{s.dtype} {s.shape} differ")


class ResidualBlock(Module):
    """``act(branch(x) + shortcut(x))`` where the branch is a chain of this block's own children.

    A subclass (ResNet's ``BasicBlock``, a bottleneck block) creates its children under the names
    its state dict needs and lists the branch's in ``branch_names``; the shortcut is the child
    ``shortcut``, the activation after the sum the child named ``act_name``. Forward and backward
    are written once, here; ``npnet.fuse`` may replace the block by a ``fused.ResidualReLU``.
    Every pass reads the registered children, so replacing one (``block.bn1 = nn.BatchNorm2d(16)``)
    changes what the block computes.
    """

    branch_names = ()
    act_name = "act"

    def branch(self):
        """The branch's layers, read from the registered children."""
        return [getattr(self, n) for n in self.branch_names]

    def forward(self, x):
        y = x
        for m in self.branch():
            y = m(y)
        s = self.shortcut(x)  # after the branch: hooks see the layers in this order
        check_sum(self, y.shape, y.dtype, s)
        self.cache = (y.shape, y.dtype)
        return getattr(self, self.act_name)(y + s)

    def backward(self, dout, input_grad=True):
        shape, dtype = self._saved()
        self.cache = None
        d = getattr(self, self.act_name).backward(dout)
        check_grad(self, d, shape, dtype)
        dx = chain_backward(self.branch(), d, input_grad)
        ds = self.shortcut.backward(d, input_grad)
        return dx + ds if input_grad else None
