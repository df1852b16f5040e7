"""Batch normalisation (Ioffe & Szegedy 2015) with PyTorch's conventions.

* Training: normalise with the batch mean and the *biased* batch variance; update
  ``running = (1 - momentum) * running + momentum * batch`` where the running variance takes the
  *unbiased* batch variance (n / (n - 1)). ``momentum=None`` gives a cumulative average.
* Eval: normalise with the running statistics.
* State dict: ``weight, bias, running_mean, running_var, num_batches_tracked``.
"""
import numpy as np

from ..kernels.batchnorm import channel_affine, channel_affine2, channel_grad_sums, channel_stats
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

    def forward(self, x):
        out, self.cache = self.normalize(x)
        return out

    def normalize(self, x, relu=False):
        """``(bn(x), cache)``, or ``(relu(bn(x)), cache)`` with the clamp in the same pass over the
        output (``nn/fused.py``'s BatchNormReLU); in training it updates the running statistics.
        ``cache`` is what :meth:`gradients` reads."""
        check_input(self, x, self._shapes, self._desc, self.num_features)
        if x.size == 0:  # no statistics to take (training) and no reshape to (N, C, -1)
            raise ValueError(f"{self._label()}: got an empty batch of shape {x.shape}; expected "
                             f"input of shape {self._desc} with N and every other size >= 1")
        x3 = np.ascontiguousarray(x).reshape(x.shape[0], self.num_features, -1)  # (N, C, L)
        if self.training:
            mean, var, n = self._batch_stats(x3)  # (C,) float64, biased variance; n per channel
            if n < 2:
                raise ValueError(f"{self._label()}: training needs more than 1 value per channel, "
                                 f"got input of shape {x.shape}")
            self._update_running(mean, var * (n / (n - 1)))
            inv_std = 1 / np.sqrt(var + self.eps)  # (C,) float64
            # y = (x - mean) * inv_std * w + b, written in one pass as x * scale + shift
            scale = inv_std * self._weight64()
            shift = (self.bias.data if self.affine else 0) - mean * scale
        else:
            mean = self.running_mean.astype(np.float64)
            inv_std = 1 / np.sqrt(self.running_var.astype(np.float64) + self.eps)
            scale, shift = self.eval_affine()
        out = channel_affine(x3, scale, shift, relu)
        return out.reshape(x.shape), (x3, x.shape, mean, inv_std, self.training, out if relu else None)

    def eval_affine(self):
        """``(scale, shift)``, (C,) float64: in eval mode this layer is ``y = x * scale + shift``
        per channel, with scale = weight / sqrt(running_var + eps) and shift = bias - running_mean
        * scale. The eval forward and the inference fold into a convolution (``nn/fused.py``) both
        use it."""
        scale = 1 / np.sqrt(self.running_var.astype(np.float64) + self.eps) * self._weight64()
        shift = (self.bias.data.astype(np.float64) if self.affine else 0.0) - self.running_mean.astype(np.float64) * scale
        return scale, shift

    def _batch_stats(self, x3):
        """(mean, biased variance, values per channel) of x3 (N, C, L); ``SyncBatchNorm``
        (npnet.distributed) takes them over the global batch of every rank."""
        mean, var = channel_stats(x3)
        return mean, var, x3.shape[0] * x3.shape[2]

    def _global_grad_sums(self, sum_d, sum_dxc, m):
        """The backward's two per-channel sums and their count as ``dx`` needs them: this
        batch's here; summed over every rank in ``SyncBatchNorm``."""
        return sum_d, sum_dxc, m

    def _weight64(self):
        return self.weight.data.astype(np.float64) if self.affine else 1.0

    def _update_running(self, mean, unbiased_var):
        self._set_buffer("num_batches_tracked", self.num_batches_tracked + 1)
        m = self.momentum
        if m is None:  # cumulative moving average, as PyTorch does with momentum=None
            m = 1.0 / float(self.num_batches_tracked)
        dt = self.running_mean.dtype
        self.running_mean[...] = (1 - m) * self.running_mean + (m * mean).astype(dt)
        self.running_var[...] = (1 - m) * self.running_var + (m * unbiased_var).astype(dt)

    def backward(self, dout, input_grad=True):
        cache = self._saved()
        self.cache = None
        return self.gradients(cache, dout, input_grad)

    def gradients(self, cache, dout, input_grad=True):
        """The backward of a :meth:`normalize` call for the upstream gradient dout: adds into weight
        and bias grads, returns dx (None unless ``input_grad``). After ``normalize(x, relu=True)``
        dout is the ReLU's output gradient; the ReLU's mask is applied inside both passes."""
        x3, shape, mean, inv_std, training, relu_out = cache
        check_grad(self, dout, shape, x3.dtype)
        dout3 = np.ascontiguousarray(dout).reshape(x3.shape)
        sum_d, sum_dxc = channel_grad_sums(dout3, x3, mean, relu_out)  # (C,) float64
        if self.affine and self.weight.requires_grad:
            self.weight.grad += (sum_dxc * inv_std).astype(x3.dtype)  # sum dout * xhat
        if self.affine and self.bias.requires_grad:
            self.bias.grad += sum_d.astype(x3.dtype)
        if not input_grad:
            return None
        a = self._weight64() * inv_std  # d y / d x with the statistics held fixed
        if not training:  # running statistics are constants
            if relu_out is None:
                return channel_affine(dout3, a, np.zeros_like(a)).reshape(shape)
            zero = np.zeros_like(a)
            return channel_affine2(dout3, x3, a, zero, zero, relu_out).reshape(shape)
        # With batch statistics: dx = w * inv_std * (dout - mean(dout) - xhat * mean(dout * xhat)),
        # rewritten as a * dout + b * x + d so that one pass writes it.
        sum_d, sum_dxc, m = self._global_grad_sums(sum_d, sum_dxc, x3.shape[0] * x3.shape[2])
        b = -a * inv_std * inv_std * sum_dxc / m
        d = -a * sum_d / m - b * mean
        return channel_affine2(dout3, x3, a, b, d, relu_out).reshape(shape)


# the arguments and statistics of both BatchNorm classes, written once
_ARGS_DOC = '''    Args:
        num_features (int): C, the number of features (channels).
        eps (float): added to the variance before its square root (default 1e-5).
        momentum (float or None): weight of the batch statistics in the running ones,
            ``running = (1 - momentum) * running + momentum * batch`` (PyTorch's convention, the
            opposite of an exponential decay factor; default 0.1); None gives a cumulative average.
        affine (bool): learn a per-feature ``weight`` (ones at start) and ``bias`` (zeros) (default
            True).
        dtype: the parameters' and buffers' dtype, default ``np.float32``.

    In training the layer normalises with the batch mean and the biased batch variance and updates
    ``running_mean`` / ``running_var`` (the latter with the unbiased variance); in eval mode
    (``model.eval()``) it uses the running statistics. State dict: ``weight, bias, running_mean,
    running_var, num_batches_tracked``.
'''


class BatchNorm1d(_BatchNorm):
    __doc__ = """Batch normalisation over a 2-D or 3-D input, as ``torch.nn.BatchNorm1d``.

{args}
    Shape:
        input: (N, C) or (N, C, L); statistics per feature C (over N, and L).
        output: same as the input.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> bn = nn.BatchNorm1d(4)
        >>> x = np.random.default_rng(0).normal(3.0, 2.0, (32, 4)).astype(np.float32)
        >>> y = bn(x)
        >>> bool(abs(y.mean()) < 1e-5), int(bn.num_batches_tracked)
        (True, 1)
    """.format(args=_ARGS_DOC)
    _shapes = (2, 3)
    _desc = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    __doc__ = """Batch normalisation over a 4-D input, as ``torch.nn.BatchNorm2d``.

{args}
    Shape:
        input: (N, C, H, W); statistics per channel over (N, H, W).
        output: same as the input.

    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> bn = nn.BatchNorm2d(16)
        >>> bn(np.ones((8, 16, 5, 5), np.float32)).shape
        (8, 16, 5, 5)
        >>> bn.eval().training
        False
    """.format(args=_ARGS_DOC)
    _shapes = (4,)
    _desc = "(N, C, H, W)"
