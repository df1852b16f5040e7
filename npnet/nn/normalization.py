"""Batch normalisation (Ioffe & Szegedy 2015) with PyTorch's conventions.

* Training: normalise with the batch mean and the *biased* batch variance; update
  ``running = (1 - momentum) * running + momentum * batch`` where the running variance takes the
  *unbiased* batch variance (n / (n - 1)). ``momentum=None`` gives a cumulative average.
* Eval: normalise with the running statistics.
* State dict: ``weight, bias, running_mean, running_var, num_batches_tracked``.
"""
import numpy as np

from ._checks import check_grad, check_input
from .module import Module, Parameter


class _BatchNorm(Module):
    _shapes = ()  # allowed input ndims
    _desc = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, dtype=np.float32):
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.affine = affine
        if affine:
            self.weight = Parameter(np.ones(self.num_features, dtype=dtype))
            self.bias = Parameter(np.zeros(self.num_features, dtype=dtype))
        self.register_buffer("running_mean", np.zeros(self.num_features, dtype=dtype))
        self.register_buffer("running_var", np.ones(self.num_features, dtype=dtype))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"

    @property
    def dtype(self):
        return self.running_mean.dtype

    def _bshape(self, x):
        """Shape that broadcasts a (C,) vector against x: (1, C) or (1, C, 1, ...)."""
        return (1, self.num_features) + (1,) * (x.ndim - 2)

    def forward(self, x):
        check_input(self, x, self._shapes, self._desc, self.num_features)
        axes = (0,) + tuple(range(2, x.ndim))
        bshape = self._bshape(x)
        if self.training:
            n = x.size // self.num_features
            if n < 2:
                raise ValueError(f"{self._label()}: training needs more than 1 value per channel, "
                                 f"got input of shape {x.shape}")
            mean = x.mean(axis=axes)  # (C,)
            xc = x - mean.reshape(bshape)
            var = np.mean(xc * xc, axis=axes)  # (C,) biased
            self._update_running(mean, var * (n / (n - 1)))
        else:
            mean, var = self.running_mean, self.running_var
            xc = x - mean.reshape(bshape)
        inv_std = 1 / np.sqrt(var + x.dtype.type(self.eps))  # (C,)
        xhat = xc * inv_std.reshape(bshape)
        self.cache = (xhat, inv_std, self.training, axes)
        if not self.affine:
            return xhat
        return xhat * self.weight.data.reshape(bshape) + self.bias.data.reshape(bshape)

    def _update_running(self, mean, unbiased_var):
        self._set_buffer("num_batches_tracked", self.num_batches_tracked + 1)
        m = self.momentum
        if m is None:  # cumulative moving average, as PyTorch does with momentum=None
            m = 1.0 / float(self.num_batches_tracked)
        m = self.running_mean.dtype.type(m)
        self.running_mean *= 1 - m
        self.running_mean += m * mean
        self.running_var *= 1 - m
        self.running_var += m * unbiased_var

    def backward(self, dout):
        xhat, inv_std, training, axes = self._saved()
        check_grad(self, dout, xhat.shape, xhat.dtype)
        self.cache = None
        bshape = self._bshape(xhat)
        if self.affine:
            self.weight.grad += np.sum(dout * xhat, axis=axes)
            self.bias.grad += np.sum(dout, axis=axes)
            dxhat = dout * self.weight.data.reshape(bshape)
        else:
            dxhat = dout
        if not training:  # running statistics are constants
            return dxhat * inv_std.reshape(bshape)
        # d/dx of (x - mean) / std with batch mean and std: remove the mean of dxhat and its
        # projection on xhat, then scale.
        mean_d = np.mean(dxhat, axis=axes).reshape(bshape)
        mean_dx = np.mean(dxhat * xhat, axis=axes).reshape(bshape)
        return (dxhat - mean_d - xhat * mean_dx) * inv_std.reshape(bshape)


class BatchNorm1d(_BatchNorm):
    """Shape: (N, C) or (N, C, L) -> same; statistics per feature C."""
    _shapes = (2, 3)
    _desc = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Shape: (N, C, H, W) -> same; statistics per channel over (N, H, W)."""
    _shapes = (4,)
    _desc = "(N, C, H, W)"
