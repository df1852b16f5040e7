"""Reference mode: the layers run on the plain NumPy twins of the Numba kernels.

Every Numba kernel has a NumPy reference with the same signature (``conv2d_forward`` and
``conv2d_forward_ref``, ...). The layers do not call the kernels by name: they call ``ops.<name>``,
which is the Numba kernel, or inside ``use_reference()`` its NumPy twin::

    from npnet import kernels
    with kernels.use_reference():
        logits = model(x)                    # Conv2d, pooling, BatchNorm, Linear: NumPy code you can
        model.backward(dlogits)              # step through in a debugger

A learner reads (and steps into) readable code; a kernel author rules a kernel in or out of a bug in
one line. Results agree with the kernels to rounding, not bit for bit (the kernels sum in another
order). The mode is process-wide, like ``no_grad()``; it nests and restores the previous mode.
"""
from .._switch import Switch
from .batchnorm import (channel_affine, channel_affine_ref, channel_affine2, channel_affine2_ref,
                        channel_grad_sums, channel_grad_sums_ref, channel_stats, channel_stats_ref)
from .conv import conv2d_backward, conv2d_backward_ref, conv2d_forward, conv2d_forward_ref
from .elementwise import (add_, add_ref, add_relu, add_relu_ref, relu_backward, relu_backward_ref, relu_forward,
                          relu_forward_ref)
from .matmul import matmul, matmul_ref
from .pooling import (avgpool2d_backward, avgpool2d_backward_ref, avgpool2d_forward, avgpool2d_forward_ref,
                      maxpool2d_backward, maxpool2d_backward_ref, maxpool2d_forward, maxpool2d_forward_ref)

# the kernels the layers call: name -> (Numba kernel, NumPy twin)
PAIRS = {
    "conv2d_forward": (conv2d_forward, conv2d_forward_ref),
    "conv2d_backward": (conv2d_backward, conv2d_backward_ref),
    "maxpool2d_forward": (maxpool2d_forward, maxpool2d_forward_ref),
    "maxpool2d_backward": (maxpool2d_backward, maxpool2d_backward_ref),
    "avgpool2d_forward": (avgpool2d_forward, avgpool2d_forward_ref),
    "avgpool2d_backward": (avgpool2d_backward, avgpool2d_backward_ref),
    "matmul": (matmul, matmul_ref),
    "channel_stats": (channel_stats, channel_stats_ref),
    "channel_affine": (channel_affine, channel_affine_ref),
    "channel_grad_sums": (channel_grad_sums, channel_grad_sums_ref),
    "channel_affine2": (channel_affine2, channel_affine2_ref),
    "relu_forward": (relu_forward, relu_forward_ref),
    "relu_backward": (relu_backward, relu_backward_ref),
    "add_relu": (add_relu, add_relu_ref),
    "add_": (add_, add_ref),
}

_reference = Switch(False)


def reference_enabled():
    """True inside ``use_reference()``."""
    return _reference.on


def use_reference(enabled=True):
    """Context manager: inside it, ``ops.<name>`` (what the layers call) is the NumPy twin of each
    kernel; ``use_reference(False)`` switches back to the Numba kernels within it."""
    return _reference.turned(enabled)


class _Ops:
    """``ops.conv2d_forward`` etc.: the Numba kernel, or its NumPy twin inside ``use_reference()``."""

    def __getattr__(self, name):
        try:
            fast, ref = PAIRS[name]
        except KeyError:
            raise AttributeError(f"npnet.kernels.ops has no kernel {name!r}; kernels: "
                                 f"{', '.join(PAIRS)}") from None
        return ref if _reference.on else fast

    def __dir__(self):
        return list(PAIRS)


ops = _Ops()
