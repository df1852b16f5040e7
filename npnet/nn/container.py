"""Sequential: children named "0", "1", ... as in PyTorch; backward runs them in reverse."""
from .module import Module


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
        setattr(self, str(len(self)), module)
        return self

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, dout):
        """d loss / d input, or None when ``input_grad`` is False: then the children before the
        first one with parameters are skipped and that child is told not to compute its ``dx``."""
        mods = list(self._modules.values())
        first = next((i for i, m in enumerate(mods) if any(True for _ in m.parameters())), len(mods))
        if first < len(mods):
            mods[first].input_grad = self.input_grad  # both ways, so that True turns dx back on
        for m in reversed(mods[first if not self.input_grad else 0:]):
            dout = m.backward(dout)
        return dout if self.input_grad else None
