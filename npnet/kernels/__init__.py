"""Numba kernels for the hot paths (im2col/col2im, fused convolution, Winograd 3x3 convolution, pooling,
batch norm, the matrix products of Linear, ReLU and residual sums), each with a plain NumPy reference of the same signature
(``*_ref``) that the tests hold it to.

All functions take NCHW arrays of float32 or float64 and return arrays of the input's dtype; integer
arguments are positional: kernel (kh, kw), stride (sh, sw), padding (ph, pw). The kernels that call BLAS
set SciPy's bundled OpenBLAS to one thread while they run and restore it after (see ``_threads``);
importing this package changes nothing.

The layers call the kernel functions by name (``kernels.conv.conv2d_forward``); the first lines of
each entry point read the reference switch, so ``with kernels.use_reference():`` runs every layer on
the NumPy twins instead (``reference.py``). Nothing here chooses an algorithm by timing: the tune
pass (``npnet.tune``) measures with ``autotune.measure`` and sets each layer's attribute.
"""
from ._threads import blas_setup, clear_buffers
from .im2col import im2col, im2col_ref, col2im, col2im_ref, out_size
from .conv import (conv2d_forward, conv2d_forward_ref, conv2d_backward, conv2d_backward_ref, conv_algorithm,
                   ALGORITHMS as CONV_ALGORITHMS)
from .winograd import winograd_forward, winograd_forward_ref, winograd_backward, winograd_backward_ref
from .pooling import (maxpool2d_forward, maxpool2d_forward_ref, maxpool2d_backward, maxpool2d_backward_ref,
                      avgpool2d_forward, avgpool2d_forward_ref, avgpool2d_backward, avgpool2d_backward_ref)
from .matmul import matmul, matmul_ref
from .elementwise import (relu_forward, relu_forward_ref, relu_backward, relu_backward_ref, add_relu, add_relu_ref,
                          add_, add_ref)
from .batchnorm import (channel_stats, channel_stats_ref, channel_affine, channel_affine_ref,
                        channel_grad_sums, channel_grad_sums_ref, channel_affine2, channel_affine2_ref)
from .recurrent import (lstm_forward, lstm_forward_ref, lstm_backward, lstm_backward_ref, gru_forward,
                        gru_forward_ref, gru_backward, gru_backward_ref, rnn_forward, rnn_forward_ref, rnn_backward,
                        rnn_backward_ref)
from .reference import use_reference, reference_enabled
from .softmax import softmax_forward, softmax_forward_ref, softmax_backward, softmax_backward_ref
from .layernorm import layernorm_forward, layernorm_forward_ref, layernorm_backward, layernorm_backward_ref
from .bmm import bmm, bmm_ref
from .embedding import embedding_backward, embedding_backward_ref

__all__ = ["im2col", "im2col_ref", "col2im", "col2im_ref", "out_size",
           "conv2d_forward", "conv2d_forward_ref", "conv2d_backward", "conv2d_backward_ref", "conv_algorithm",
           "CONV_ALGORITHMS", "winograd_forward", "winograd_forward_ref", "winograd_backward",
           "winograd_backward_ref",
           "maxpool2d_forward", "maxpool2d_forward_ref", "maxpool2d_backward", "maxpool2d_backward_ref",
           "avgpool2d_forward", "avgpool2d_forward_ref", "avgpool2d_backward", "avgpool2d_backward_ref",
           "channel_stats", "channel_stats_ref", "channel_affine", "channel_affine_ref",
           "channel_grad_sums", "channel_grad_sums_ref", "channel_affine2", "channel_affine2_ref",
           "matmul", "matmul_ref", "relu_forward", "relu_forward_ref", "relu_backward", "relu_backward_ref",
           "add_relu", "add_relu_ref", "add_", "add_ref", "blas_setup", "clear_buffers", "use_reference", "reference_enabled"]
__all__ += ["softmax_forward", "softmax_forward_ref", "softmax_backward", "softmax_backward_ref",
            "layernorm_forward", "layernorm_forward_ref", "layernorm_backward", "layernorm_backward_ref",
            "bmm", "bmm_ref", "embedding_backward", "embedding_backward_ref"]
__all__ += ["lstm_forward", "lstm_forward_ref", "lstm_backward", "lstm_backward_ref", "gru_forward", "gru_forward_ref",
            "gru_backward", "gru_backward_ref", "rnn_forward", "rnn_forward_ref", "rnn_backward", "rnn_backward_ref"]
