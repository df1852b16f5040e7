"""conv2d_matrix: convolution written as y = A x agrees with Conv2d."""
import numpy as np
from hypothesis import given, strategies as st

from npnet import nn
from npnet.functional import conv2d_matrix


@given(c=st.integers(1, 3), o=st.integers(1, 3), kh=st.integers(1, 3), kw=st.integers(1, 3),
       s=st.integers(1, 3), p=st.integers(0, 2), h=st.integers(3, 7), w=st.integers(3, 7),
       seed=st.integers(0, 999))
def test_conv2d_matrix_equals_conv2d(c, o, kh, kw, s, p, h, w, seed):
    rng = np.random.default_rng(seed)
    conv = nn.Conv2d(c, o, (kh, kw), stride=s, padding=p, bias=False, rng=rng).astype(np.float64)
    x = rng.standard_normal((1, c, h, w))
    A = conv2d_matrix(conv.weight.data, (c, h, w), stride=s, padding=p)
    np.testing.assert_allclose(A @ x.ravel(), conv(x).ravel(), rtol=1e-12, atol=1e-12)
    # the transpose of A is the input gradient: A^T dy == Conv2d.backward(dy)
    dy = rng.standard_normal(conv(x).shape)
    np.testing.assert_allclose(A.T @ dy.ravel(), conv.backward(dy).ravel(), rtol=1e-12, atol=1e-12)


def test_conv2d_matrix_small_case_by_hand():
    w = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)  # [[1, 2], [3, 4]]
    A = conv2d_matrix(w, (1, 2, 3))  # 2x3 input -> 1x2 output
    np.testing.assert_array_equal(A, [[1, 2, 0, 3, 4, 0], [0, 1, 2, 0, 3, 4]])
