"""``train_step``: the one optimisation step of npnet, used by the Trainer, the examples and the
benchmarks alike.

A step is, in this order (PyTorch's)::

    optimizer.zero_grad()
    out = model(x)                                          # (N, C) logits
    loss = criterion(out, y)                                # a Python float
    model.backward(criterion.backward(), input_grad=False)  # no d loss / d images
    optimizer.step()

Nobody reads the gradient with respect to the model's input (the images) in training, so the step
asks the model not to compute it (for a first convolution or linear layer that is a third of its
backward pass). The outputs and the loss are checked before the backward pass: a NaN or infinity
raises ``NonFiniteError`` while the weights and the optimizer state are still those of the last
good step (BatchNorm's running statistics have seen the bad batch: the forward pass updates them).
"""
import math

import numpy as np


class NonFiniteError(FloatingPointError):
    """A training step met NaN or infinite values. ``what`` says where: ``"the model's outputs"``
    or ``"the loss"``. The weights are those from before the step."""

    def __init__(self, what):
        super().__init__(f"non-finite values (NaN or inf) in {what}")
        self.what = what


def train_step(model, criterion, optimizer, x, y):
    """One step of ``optimizer`` on the batch ``x`` (N, ...) with targets ``y`` (N, ...).

    Returns ``(loss, correct)``: the batch's mean loss (a float) and the number of rows whose
    argmax is the label in ``y`` (None when ``y`` holds no class labels, e.g. one-hot or
    regression targets). Raises ``NonFiniteError`` before the backward pass when the outputs
    or the loss are not finite.
    """
    optimizer.zero_grad()
    out = model(x)
    check_finite(out, "the model's outputs")
    loss = criterion(out, y)
    if not math.isfinite(loss):
        raise NonFiniteError("the loss")
    model.backward(criterion.backward(), input_grad=False)
    optimizer.step()
    return loss, correct_count(out, y)


def check_finite(out, what):
    """Raises ``NonFiniteError(what)`` unless every value of ``out`` is finite."""
    if not np.isfinite(out).all():
        raise NonFiniteError(what)


def correct_count(out, y):
    """Number of rows of ``out`` (N, C) whose argmax is the label in ``y`` (N,), or None when
    ``y`` holds no integer class labels."""
    y = np.asarray(y)
    if out.ndim != 2 or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        return None
    return int(np.sum(out.argmax(axis=1) == y))
