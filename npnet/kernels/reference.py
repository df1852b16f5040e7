"""Reference mode: every kernel entry point runs its plain NumPy twin instead of the Numba code.

Every Numba kernel has a NumPy reference with the same signature (``conv2d_forward`` and
``conv2d_forward_ref``, ...). The first lines of each entry point read the switch::

    def relu_forward(x):
        if reference_enabled():
            return relu_forward_ref(x)
        ...                                  # the Numba path

so the layers call the kernel functions by name (go-to-definition lands on the kernel), and::

    from npnet import kernels
    with kernels.use_reference():
        logits = model(x)                    # Conv2d, pooling, BatchNorm, Linear, ReLU: NumPy code
        model.backward(dlogits)              # you can step through in a debugger

A learner steps into readable code; a kernel author rules a kernel in or out of a bug in one line.
Each layer keeps its own algorithm: a Conv2d whose ``algorithm`` is ``"winograd"`` runs the NumPy
Winograd twin, one set to ``"im2col"`` the im2col twin. Results agree with the kernels to rounding,
not bit for bit (the kernels sum in another order). The mode is process-wide, like ``no_grad()``;
it nests and restores the previous mode.
"""
from .._switch import Switch

_reference = Switch(False)


def reference_enabled():
    """True inside ``use_reference()``."""
    return _reference.on


def use_reference(enabled=True):
    """Context manager: inside it, every kernel entry point runs its NumPy twin;
    ``use_reference(False)`` switches back to the Numba kernels within it."""
    return _reference.turned(enabled)
