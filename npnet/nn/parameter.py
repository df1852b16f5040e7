"""Parameter: a trainable array and its accumulated gradient."""
import numpy as np


class Parameter:
    """A trainable array and its accumulated gradient (same shape, same dtype), as
    ``torch.nn.Parameter``.

    ``grad`` starts at zero; a ``backward`` pass **adds** into it and only ``zero_grad()`` (or the
    optimizer's) clears it, so a parameter shared by two modules gets both gradients. Assigned to
    an attribute of a ``Module``, it registers itself: ``parameters()`` and ``state_dict()`` find it
    under that attribute's name.

    Args:
        data: the values, a floating-point array (an integer one raises TypeError);
            kept as given (``np.asarray``: an array is not copied), its dtype is the parameter's.
        requires_grad (bool): default True; False freezes it: backward leaves its ``grad`` alone
            and optimizers do not update it (PyTorch's meaning).

    Attributes:
        data: the values (an ``np.ndarray``), updated in place by the optimizers.
        grad: the accumulated gradient, ``data``'s shape and dtype.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> w = nn.Parameter(np.ones((2, 3), np.float32))
        >>> w
        Parameter(shape=(2, 3), dtype=float32)
        >>> w.grad += 0.5; w.grad += 0.5  # two backward passes add up
        >>> float(w.grad.sum())
        6.0
        >>> w.zero_grad()
        >>> float(w.grad.sum())
        0.0
        >>> layer = nn.Linear(3, 2, rng=0)
        >>> layer.bias = nn.Parameter(np.zeros(2, np.float32))  # registers itself, replacing the old
        >>> [name for name, _ in layer.named_parameters()]
        ['weight', 'bias']
        >>> nn.Parameter(np.zeros(3), requires_grad=False)
        Parameter(shape=(3,), dtype=float64, requires_grad=False)
    """

    def __init__(self, data, requires_grad=True):
        data = np.asarray(data)
        if not np.issubdtype(data.dtype, np.floating):
            raise TypeError(f"Parameter: expected a floating-point array, got dtype {data.dtype}")
        self.data = data
        self.grad = np.zeros_like(data)
        self.requires_grad = bool(requires_grad)

    @property
    def shape(self):
        """The shape of ``data`` (``grad`` has the same)."""
        return self.data.shape

    @property
    def dtype(self):
        """The dtype of ``data`` (``grad`` has the same)."""
        return self.data.dtype

    def zero_grad(self):
        """Sets ``grad`` to zero in place (the array is kept: backward adds into it)."""
        self.grad[...] = 0

    def __repr__(self):
        frozen = "" if self.requires_grad else ", requires_grad=False"
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype}{frozen})"
