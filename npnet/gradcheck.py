"""Finite-difference gradient checks, public so that users can check their own layers.

All checks run in float64 with central differences. The error reported for each array is the
relative error of the whole gradient, ``||analytic - numeric|| / max(||analytic|| + ||numeric||, tiny)``,
which is small when the gradients agree and does not blow up on entries that are zero. A gradient
that is exactly zero (e.g. a bias feeding BatchNorm) has only rounding noise on the numeric side, so
an array also passes when its largest absolute difference is at most ``atol``.

``check_module`` also checks the contract's accumulate rule: ``backward`` adds into ``p.grad`` in
place and never assigns it, so a second backward without ``zero_grad()`` doubles every gradient.
"""
import numpy as np

__all__ = ["GradientCheckError", "numerical_gradient", "relative_error", "check_module", "check_loss"]


class GradientCheckError(AssertionError):
    """Raised when an analytic gradient disagrees with finite differences."""


def numerical_gradient(f, x, eps=1e-6):
    """Central-difference gradient of the scalar function ``f()`` w.r.t. the array ``x``.

    ``x`` is perturbed in place (and restored), so ``f`` must read it, e.g. through a closure.
    Returns an array of ``x``'s shape.
    """
    if not x.flags.c_contiguous:  # reshape(-1) would copy, and the perturbations would be lost
        raise ValueError("numerical_gradient: x must be C-contiguous so it can be perturbed in place")
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        f_plus = f()
        flat[i] = old - eps
        f_minus = f()
        flat[i] = old
        gflat[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def relative_error(analytic, numeric):
    """``||a - n|| / max(||a|| + ||n||, 1e-30)`` over the whole array."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    return float(np.linalg.norm(a - n) / max(np.linalg.norm(a) + np.linalg.norm(n), 1e-30))


def _compare(pairs, name, tol, atol):
    """Relative errors of ``{key: (analytic, numeric)}``; raises a readable report on failure."""
    errors, bad, lines = {}, [], [f"{name}: gradient check failed (tolerance {tol:g}, atol {atol:g})"]
    for key, (a, n) in pairs.items():
        errors[key] = relative_error(a, n)
        abs_err = float(np.max(np.abs(np.asarray(a, np.float64) - n), initial=0.0))
        failed = not (errors[key] <= tol or abs_err <= atol)
        bad += [key] * failed
        lines.append(f"  {key}: relative error {errors[key]:.3e}, max abs error {abs_err:.3e}"
                     + ("   <-- too large" if failed else ""))
    if bad:
        raise GradientCheckError("\n".join(lines))
    return errors


def check_module(module, x, dout=None, eps=1e-6, tol=1e-6, atol=1e-8, seed=0, reset=None, params=True):
    """Compares ``module.backward`` with finite differences of ``sum(module(x) * dout)``, and checks
    the accumulate rule: ``backward`` adds into each ``p.grad`` in place (``+=``), never assigns.

    module: any ``Module``; it is converted to float64 in place (``astype``).
    x: the input (converted to a float64 copy). dout: the upstream gradient; random normal
    (non-uniform, so that errors cannot cancel) when None. reset: optional callable run before
    every forward, for modules with randomness (e.g. re-seeding a Dropout). params: False checks
    the input's gradient only.
    The parameters' gradients are checked after ``zero_grad()`` and one backward; a second forward
    and backward without ``zero_grad()`` must then leave each ``grad`` (the same array) at twice
    that gradient, and a frozen parameter (``requires_grad=False``) at zero.
    Returns ``{"input": err, "<param name>": err, ...}`` over the trainable parameters; raises
    ``GradientCheckError`` with a readable report when an array fails both ``tol`` (relative) and
    ``atol`` (absolute), or when the accumulate rule is broken.
    """
    module.astype(np.float64)
    x = np.array(x, dtype=np.float64, copy=True)
    rng = np.random.default_rng(seed)

    def forward():
        if reset is not None:
            reset()
        return module(x)

    out = forward()
    if dout is None:
        dout = rng.standard_normal(out.shape)
    dout = np.asarray(dout, dtype=np.float64)

    def f():
        return float(np.sum(forward() * dout))

    named = list(module.named_parameters()) if params else []
    forward()
    module.zero_grad()
    dx = module.backward(dout.copy())
    once = {name: (p.grad, p.grad.copy()) for name, p in named}  # (the array, its value)
    if named:
        forward()
        module.backward(dout.copy())  # no zero_grad(): each grad must now hold twice ``once``
    pairs = {"input": (dx, numerical_gradient(f, x, eps))}
    for name, p in named:
        if p.requires_grad:
            pairs[name] = (once[name][1], numerical_gradient(f, p.data, eps))
    errors = _compare(pairs, module._label(), tol, atol)
    _check_accumulation(module._label(), named, once, atol)
    return errors


def _check_accumulation(label, named, once, atol):
    """Raises ``GradientCheckError`` unless each trainable ``p.grad`` is the array it was after the
    first backward and holds twice its value then, and each frozen one is still zero."""
    rule = ("backward must add into p.grad in place (p.grad += g, as the contract says; shared "
            "weights and gradient accumulation rely on it), never assign or replace it")
    lines = []
    for name, p in named:
        array, first = once[name]
        if np.shape(p.grad) != p.data.shape or getattr(p.grad, "dtype", None) != p.data.dtype:
            lines.append(f"  {name}: backward replaced grad by an array of shape {np.shape(p.grad)}, "
                         f"dtype {getattr(p.grad, 'dtype', type(p.grad).__name__)} (the parameter's: "
                         f"{p.data.shape}, {p.data.dtype})")
        elif not p.requires_grad:
            if np.any(p.grad != 0):
                lines.append(f"  {name}: frozen (requires_grad=False) but backward wrote a gradient "
                             f"(max abs {np.max(np.abs(p.grad)):.3e}); it must get none")
        elif not _close(p.grad, 2 * first, atol):
            said = ("equals one call's gradient: it was assigned, not added" if _close(p.grad, first, atol)
                    else f"is not twice one call's gradient (relative error "
                         f"{relative_error(p.grad, 2 * first):.3e})")
            lines.append(f"  {name}: after two backward calls without zero_grad(), grad {said}")
        elif p.grad is not array:
            lines.append(f"  {name}: backward replaced the grad array by a new one (p.grad = p.grad + g) "
                         "instead of adding into it")
    if lines:
        raise GradientCheckError("\n".join([f"{label}: accumulate rule broken: {rule}"] + lines))


def _close(a, b, atol, rtol=1e-10):
    """Equal to rounding (``rtol`` of the whole array's norm), or within ``atol`` everywhere."""
    return relative_error(a, b) <= rtol or float(np.max(np.abs(a - b), initial=0.0)) <= atol


def check_loss(criterion, outputs, targets, eps=1e-6, tol=1e-6, atol=1e-8, seed=0):
    """Compares ``criterion.backward`` with finite differences of the loss w.r.t. ``outputs``.

    For ``reduction='none'`` (an array loss) a random upstream gradient ``g`` is used: the checked
    function is ``sum(loss * g)`` and the analytic gradient is ``criterion.backward(g)``.
    Returns ``{"outputs": err}``; raises ``GradientCheckError`` over ``tol``.
    """
    outputs = np.array(outputs, dtype=np.float64, copy=True)
    value = criterion(outputs, targets)
    if np.ndim(value) == 0:
        upstream = None

        def f():
            return float(criterion(outputs, targets))

        criterion(outputs, targets)
        analytic = criterion.backward()
    else:
        upstream = np.random.default_rng(seed).standard_normal(np.shape(value))

        def f():
            return float(np.sum(criterion(outputs, targets) * upstream))

        criterion(outputs, targets)
        analytic = criterion.backward(upstream)
    numeric = numerical_gradient(f, outputs, eps)
    return _compare({"outputs": (analytic, numeric)}, type(criterion).__name__, tol, atol)
