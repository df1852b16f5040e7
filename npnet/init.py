"""Weight initialisation, following PyTorch's ``torch.nn.init`` names and formulas.

Every function fills an array or a ``Parameter`` in place and returns it. Randomness comes from
``rng``: a ``numpy.random.Generator``, an int seed, or None for npnet's default generator, which
``manual_seed(seed)`` resets so that whole models are reproducible.
"""
import math

import numpy as np

_default = np.random.default_rng()


def manual_seed(seed):
    """Resets the default generator used by layers built without an explicit ``rng``."""
    global _default
    _default = np.random.default_rng(seed)
    return _default


def get_rng(rng=None):
    """A ``numpy.random.Generator`` from a Generator, an int seed or None (the default one)."""
    if rng is None:
        return _default
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}")


def _array(t):
    return t.data if hasattr(t, "data") and not isinstance(t, np.ndarray) else t


def _fill(t, values):
    arr = _array(t)
    arr[...] = values.astype(arr.dtype, copy=False)
    return t


def calculate_fans(shape):
    """(fan_in, fan_out) of a weight of shape (out, in) or (out, in, kh, kw)."""
    if len(shape) < 2:
        raise ValueError(f"fans need a weight with at least 2 dimensions, got shape {tuple(shape)}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    """PyTorch's recommended gains: linear/sigmoid 1, tanh 5/3, relu sqrt(2), leaky_relu sqrt(2/(1+a^2))."""
    if nonlinearity in ("linear", "conv2d", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def uniform_(t, a=0.0, b=1.0, rng=None):
    """Fills ``t`` (a Parameter or array) in place from U(a, b); returns ``t``."""
    return _fill(t, get_rng(rng).uniform(a, b, _array(t).shape))


def normal_(t, mean=0.0, std=1.0, rng=None):
    """Fills ``t`` (a Parameter or array) in place from N(mean, std^2); returns ``t``."""
    return _fill(t, get_rng(rng).normal(mean, std, _array(t).shape))


def zeros_(t):
    """Fills ``t`` (a Parameter or array) with zeros in place; returns ``t``."""
    _array(t)[...] = 0
    return t


def ones_(t):
    """Fills ``t`` (a Parameter or array) with ones in place; returns ``t``."""
    _array(t)[...] = 1
    return t


def constant_(t, value):
    """Fills ``t`` (a Parameter or array) with ``value`` in place; returns ``t``."""
    _array(t)[...] = value
    return t


def _kaiming_std(shape, a, mode, nonlinearity):
    fan_in, fan_out = calculate_fans(shape)
    fan = {"fan_in": fan_in, "fan_out": fan_out}.get(mode)
    if fan is None:
        raise ValueError(f"kaiming init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(t, a=0.0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    """U(-b, b) with b = gain * sqrt(3 / fan). PyTorch's Linear/Conv default is a = sqrt(5)."""
    bound = math.sqrt(3.0) * _kaiming_std(_array(t).shape, a, mode, nonlinearity)
    return uniform_(t, -bound, bound, rng)


def kaiming_normal_(t, a=0.0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    """N(0, std^2) with std = gain / sqrt(fan) (He et al. 2015)."""
    return normal_(t, 0.0, _kaiming_std(_array(t).shape, a, mode, nonlinearity), rng)


def xavier_uniform_(t, gain=1.0, rng=None):
    """U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    fan_in, fan_out = calculate_fans(_array(t).shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound, rng)


def xavier_normal_(t, gain=1.0, rng=None):
    """Glorot normal, as ``torch.nn.init.xavier_normal_``: N(0, std^2) with
    ``std = gain * sqrt(2 / (fan_in + fan_out))``; fills ``t`` in place and returns it."""
    fan_in, fan_out = calculate_fans(_array(t).shape)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng)


def default_weight_and_bias(weight, bias, rng=None):
    """PyTorch's reset_parameters for Linear and Conv: kaiming_uniform_(a=sqrt(5)) on the weight,
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) on the bias."""
    rng = get_rng(rng)
    kaiming_uniform_(weight, a=math.sqrt(5), rng=rng)
    if bias is not None:
        fan_in, _ = calculate_fans(_array(weight).shape)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        uniform_(bias, -bound, bound, rng)
