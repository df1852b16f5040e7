"""Sequential: children named "0", "1", ... as in PyTorch; backward runs them in reverse."""
from .module import Module


class Sequential(Module):
    """``Sequential(m0, m1, ...)``: ``forward`` chains the children, ``backward`` walks them back.

    It runs what it holds, one child after the other: ``npnet.fuse(model)`` replaces neighbours by
    fused modules (``fused.py``), and ``print(model)`` shows them.

    Args:
        *modules (Module): the children, named ``"0"``, ``"1"``, ... as in PyTorch (so a state
            dict's keys are ``"0.weight"``, ``"3.running_var"``, ...).

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> model = nn.Sequential(nn.Linear(4, 8, rng=0), nn.ReLU(), nn.Linear(8, 3, rng=1))
        >>> logits = model(np.ones((2, 4), np.float32))  # (N, 3)
        >>> dx = model.backward(np.ones_like(logits))    # runs the children back, last first
        >>> logits.shape, dx.shape, list(model.state_dict())
        ((2, 3), (2, 4), ['0.weight', '0.bias', '2.weight', '2.bias'])
    """

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: argument {i} is a {type(m).__name__}, not a Module")
            setattr(self, str(i), m)

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, idx):
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return Sequential(*mods[idx])
        return mods[idx]

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        """Adds ``module`` at the end, under the next index (``"0"``, ``"1"``, ...); returns ``self``."""
        setattr(self, str(len(self)), module)
        return self

    def forward(self, x):
        """The children applied in order."""
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, dout, input_grad=True):
        """d loss / d input, or None when ``input_grad`` is False: then the children in front of
        the first trainable one are not visited and that one is asked for no ``dx``."""
        return chain_backward(list(self._modules.values()), dout, input_grad)


def chain_backward(mods, dout, input_grad=True):
    """The backward of ``mods`` run one after another: each in reverse order.
    Without ``input_grad`` the modules in front of the first trainable one are not visited."""
    stop = 0
    if not input_grad:
        stop = next((i for i, m in enumerate(mods) if m.has_trainable_parameters()), len(mods))
    for i in range(len(mods) - 1, stop - 1, -1):
        dout = mods[i].backward(dout, input_grad or i > stop)
    return dout if input_grad else None
