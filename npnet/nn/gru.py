"""GRU with PyTorch's gate order r, z, n and its reset-gate placement (r multiplies W_hn h + b_hn)."""
from ..kernels.recurrent import gru_backward, gru_forward
from .recurrent import RNNBase, last_state
from .rnn import ARGS_DOC, STATES_DOC, KERNELS_DOC  # the shared parts of the docstrings


class GRU(RNNBase):
    __doc__ = """Multi-layer GRU, as ``torch.nn.GRU``. One step, with x-products xr, xz, xn
    (``W_ih x_t + b_ih``) and h-products hr, hz, hn (``W_hh h_{t-1} + b_hh``), rows r, z, n::

        r = sigmoid(xr + hr),  z = sigmoid(xz + hz)
        n = tanh(xn + r * hn)             (r scales the h-product *including* b_hn, as PyTorch)
        h_t = (1 - z) * n + z * h_{t-1}

    Because of r * hn, the n rows of the x-side and h-side pre-activations get different
    gradients; the backward keeps both (``dxw`` and ``dhw``).
    """ + KERNELS_DOC.format(cell="gru") + ARGS_DOC.format(
        gates="3 gates (r, z, n)", gh="3H", nonlinearity="") + STATES_DOC.format(
        hx="h_0", final="h_n: (num_layers * D, N, H), each layer's last state.",
        returns="(output, h_n)", dstates="(d_output, d_h_n)") + """
    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> gru = nn.GRU(10, 20, bidirectional=True, rng=0)
        >>> output, h_n = gru(np.zeros((5, 3, 10), np.float32))  # (T, N, input_size)
        >>> output.shape, h_n.shape  # D = 2: directions concatenated
        ((5, 3, 40), (2, 3, 20))
    """

    GATES = 3

    def _cell_forward(self, xw, h0, c0, w_hh, b_ih, b_hh):
        hs, gates, hns = gru_forward(xw, h0, w_hh, b_ih, b_hh)  # (T, N, H), (T, N, 3H), (T, N, H)
        return hs, last_state(hs, h0), None, (gates, hns)

    def _cell_backward(self, dhs, dhT, dcT, cache, w_hh):
        _, h0, hs, (gates, hns) = cache
        dxw, dhw, dh0 = gru_backward(dhs, dhT, gates, hns, hs, h0, w_hh)  # dxw (T, N, 3H) over the gates
        return dxw, dhw, dh0, None
