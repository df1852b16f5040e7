"""Sequential: children named "0", "1", ... as in PyTorch; backward runs them in reverse."""
from . import fusion
from .module import Module


class Sequential(Module):
    """``Sequential(m0, m1, ...)``: ``forward`` chains the children, ``backward`` walks them back.

    Neighbours that compute the same function as one pass run fused (``fusion.py``: BatchNorm -> ReLU
    and Conv2d -> ReLU in training, Conv2d -> BatchNorm2d -> ReLU inside ``no_grad()``);
    ``fusion.plan(list(seq))`` lists them. ``seq.fuse = False`` runs this container layer by layer.
    """

    fuse = True

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
        setattr(self, str(len(self)), module)
        return self

    def forward(self, x):
        return fusion.run_chain(list(self._modules.values()), x, self.fuse)

    def backward(self, dout, input_grad=True):
        """d loss / d input, or None when ``input_grad`` is False: then the children in front of
        the first trainable one are not visited and that one is asked for no ``dx``."""
        return chain_backward(list(self._modules.values()), dout, input_grad)


def chain_backward(mods, dout, input_grad=True):
    """The backward of ``mods`` run one after another (``fusion.run_chain``): each in reverse order.
    Without ``input_grad`` the modules in front of the first trainable one are not visited."""
    stop = 0
    if not input_grad:
        stop = next((i for i, m in enumerate(mods) if m.has_trainable_parameters()), len(mods))
    for i in range(len(mods) - 1, stop - 1, -1):
        dout = mods[i].backward(dout, input_grad or i > stop)
    return dout if input_grad else None
