"""The modules ``load`` builds where no npnet layer reads a node's inputs as ONNX gives them:
Linear over the last dim of any rank, self-attention as a Graph node, the causal mask of an
input's length, and a mean over dims. Their parameters keep the names of the npnet (and
PyTorch) layers they subclass, so a reloaded model's state-dict keys are the original's."""
import numpy as np

from .. import nn
from ..nn._checks import check_grad, check_input


class LinearNd(nn.Linear):
    """``nn.Linear`` on ``(*, in_features)``, as ``torch.nn.Linear`` (ONNX's MatMul by a weight
    of a rank-3 value): the leading dims are flattened into one batch and put back.

    Shape: (*, in_features) -> (*, out_features).
    """

    def forward(self, x):
        check_input(self, x, range(2, 33), f"(*, {self.in_features})", self.in_features, axis=-1)
        out = super().forward(x.reshape(-1, self.in_features))  # (prod(*), out)
        self.cache = (self.cache, x.shape)
        return out.reshape(x.shape[:-1] + (self.out_features,))

    def backward(self, dout, input_grad=True):
        flat, shape = self._saved()
        self.cache = flat
        dx = super().backward(dout.reshape(-1, self.out_features), input_grad)
        return None if dx is None else dx.reshape(shape)


class SelfAttention(nn.MultiheadAttention):
    """``MultiheadAttention(x, x, x, attn_mask=mask)[0]`` as one Graph node reading ``x`` and,
    optionally, an additive ``mask`` (L, L): the self-attention of a TransformerEncoderLayer,
    rebuilt from the nodes npnet's exporter writes for it. Parameters and their state-dict keys
    are MultiheadAttention's (``in_proj_weight``, ``in_proj_bias``, ``out_proj.weight``, ...).

    ``backward(dout)`` returns ``(d_x,)``, or ``(d_x, None)`` with a mask (a mask has no gradient).
    """

    def forward(self, x, mask=None):
        out, _ = super().forward(x, x, x, need_weights=False, attn_mask=mask)
        self._inputs = 1 if mask is None else 2
        return out

    def backward(self, dout, input_grad=True):
        grads = super().backward(dout, input_grad)
        if grads is None:
            return None
        return (sum(grads),) + (None,) * (self._inputs - 1)  # d query + d key + d value


class CausalMask(nn.Module):
    """``nn.causal_mask(L)`` with L = ``x.shape[axis]``, in x's dtype: 0 on and below the diagonal,
    -inf above. The exporter writes it as a (max_len, max_len) constant cut to the input's
    length; rebuilt as this function of the length it holds no buffer, as the original model.

    Shape: x (.., L at ``axis``, ..) -> (L, L). No gradient flows back through it.
    """

    def __init__(self, axis):
        super().__init__()
        self.axis = int(axis)

    def extra_repr(self):
        return f"axis={self.axis}"

    def forward(self, x):
        return nn.causal_mask(x.shape[self.axis], dtype=x.dtype)

    def backward(self, dout, input_grad=True):
        return None  # the mask depends on x's length only


class Mean(nn.Module):
    """``x.mean(axis=dims, keepdims=keepdim)``, as ONNX's ReduceMean (``torch.mean(x, dims)``).

    Shape: x -> x without ``dims`` (or with size 1 there, with ``keepdim``).
    """

    def __init__(self, dims, keepdim=False):
        super().__init__()
        self.dims, self.keepdim = tuple(int(d) for d in dims), bool(keepdim)

    def extra_repr(self):
        return f"dims={self.dims}, keepdim={self.keepdim}"

    def forward(self, x):
        check_input(self, x, range(1, 33), "(*) floating")
        dims = tuple(d % x.ndim for d in self.dims)
        out = x.mean(axis=dims, keepdims=self.keepdim)
        self.cache = (x.shape, out.shape, x.dtype, dims)
        return out

    def backward(self, dout, input_grad=True):
        shape, out_shape, dtype, dims = self._saved()
        check_grad(self, dout, out_shape, dtype)
        self.cache = None
        if not input_grad:
            return None
        count = dtype.type(np.prod([shape[d] for d in dims]))
        kept = dout if self.keepdim else np.expand_dims(dout, dims)
        return np.ascontiguousarray(np.broadcast_to(kept / count, shape))
