"""Sequential: children named "0", "1", ... as in PyTorch; backward runs them in reverse."""
from . import fusion
from .module import Module, is_grad_enabled


class Sequential(Module):
    """``Sequential(m0, m1, ...)``: ``forward`` chains the children, ``backward`` walks them back."""

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
        """The children applied in order. Fuses neighbours where the result is the same
        (``fusion.py``): BatchNorm -> ReLU in training, Conv2d -> BatchNorm2d -> ReLU in ``no_grad``."""
        mods = list(self._modules.values())
        if not is_grad_enabled():  # inference: Conv2d -> BatchNorm2d -> ReLU as one pass (fusion.py)
            return fusion.run_sequential(mods, x)
        x, fused = fusion.run_sequential_training(mods, x)  # BatchNorm -> ReLU as one layer
        self.cache = fused
        return x

    def backward(self, dout, input_grad=True):
        """d loss / d input, or None when ``input_grad`` is False: then the children in front of
        the first trainable one are not visited and that one is asked for no ``dx``."""
        mods = list(self._modules.values())
        stop = 0
        if not input_grad:
            stop = next((i for i, m in enumerate(mods) if m.has_trainable_parameters()), len(mods))
        fused = self.cache or ()  # ReLUs whose backward their BatchNorm does (fusion.py)
        self.cache = None
        for i in range(len(mods) - 1, stop - 1, -1):
            if i not in fused:
                dout = mods[i].backward(dout, input_grad or i > stop)
        return dout if input_grad else None
