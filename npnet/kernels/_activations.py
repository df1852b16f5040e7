"""``tanh`` and ``sigmoid`` for scalar code inside Numba kernels, vectorisable in float32.

Why not ``np.tanh`` inside ``@njit``: Numba compiles it to one call of the C library's ``tanhf`` per
element, which the compiler cannot vectorise: measured on a 2-core AMD EPYC (Zen 4), 16 ns per
float32 element, against 0.37 ns for NumPy's own (SIMD) ``np.tanh`` on an array. An LSTM step
takes five such functions per hidden unit and sequence. The float32 ``tanh`` here is the rational
approximation of Eigen (``generic_fast_tanh_float``): ``x P(x^2) / Q(x^2)`` on [-7.9053, 7.9053],
+-1 outside, plain multiply-adds and one division that the compiler vectorises (0.37 ns per
element in a loop compiled with ``error_model="numpy"``; Numba's default error model checks every
division for a zero divisor, and that check stops the vectorisation: 3.5 ns). Its error, measured
against float64 ``tanh`` on a grid of [-10, 10] and on tiny arguments: at most 6.6 units in the last
place, 3.9e-7 relative (NumPy's: 1.4 ulp). NaN stays NaN.

float64 keeps the C library's ``tanh`` (exact to rounding: the float64 gradient checks compare the
backward, written with the derivative of the true tanh, against differences of the forward).

``sigmoid(x) = (tanh(x / 2) + 1) / 2``, as the NumPy references compute it (no overflow of exp for
large |x|).

The overloads are not inlined by Numba (``inline="always"``): LLVM inlines and vectorises them in
the kernels' loops all the same (the LSTM's gate pass took 1.5-1.6 ms either way), and Numba's
inlining made the first LSTM train step compile for 5.7 s of CPU instead of 3.6.
"""
import numpy as np
from numba import types
from numba.extending import overload

_CLAMP = 7.90531110763549805                # tanh of this rounds to 1 in float32
_P = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
      1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03)   # x^12 .. x^0 of P(x^2)
_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)


def tanh(x):
    """tanh of a float32 or float64 scalar (a stub: Numba compiles the overload below in its place)."""
    return np.tanh(x)


def sigmoid(x):
    """The logistic function of a float32 or float64 scalar (a stub, as ``tanh``)."""
    return (np.tanh(x / 2) + 1) / 2


def _tanh32(x):
    c = np.float32(_CLAMP)
    x = min(max(x, -c), c)                                  # NaN passes through
    x2 = x * x
    p = np.float32(_P[0])
    p = p * x2 + np.float32(_P[1])
    p = p * x2 + np.float32(_P[2])
    p = p * x2 + np.float32(_P[3])
    p = p * x2 + np.float32(_P[4])
    p = p * x2 + np.float32(_P[5])
    p = p * x2 + np.float32(_P[6])
    q = np.float32(_Q[0])
    q = q * x2 + np.float32(_Q[1])
    q = q * x2 + np.float32(_Q[2])
    q = q * x2 + np.float32(_Q[3])
    return x * p / q


def _sigmoid32(x):
    half = np.float32(0.5)
    return half * tanh(half * x) + half


def _sigmoid64(x):
    return 0.5 * tanh(0.5 * x) + 0.5


def _tanh64(x):
    return np.tanh(x)


@overload(tanh)
def _tanh_of_type(x):
    return _tanh32 if x == types.float32 else _tanh64


@overload(sigmoid)
def _sigmoid_of_type(x):
    return _sigmoid32 if x == types.float32 else _sigmoid64
