"""LSTM with PyTorch's gate order i, f, g, o (rows of weight_ih / weight_hh in that order)."""
from ..kernels.recurrent import lstm_backward, lstm_forward
from .recurrent import RNNBase, last_state
from .rnn import ARGS_DOC, STATES_DOC, KERNELS_DOC  # the shared parts of the docstrings


class LSTM(RNNBase):
    __doc__ = """Multi-layer LSTM, as ``torch.nn.LSTM`` (no ``proj_size``). One step, gates of H rows each::

        i, f, g, o = sigmoid(a_i), sigmoid(a_f), tanh(a_g), sigmoid(a_o)
        with a = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh  (4H rows in the order i, f, g, o)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)
    """ + KERNELS_DOC.format(cell="lstm") + ARGS_DOC.format(
        gates="4 gates (i, f, g, o)", gh="4H", nonlinearity="") + STATES_DOC.format(
        hx="(h_0, c_0)", final="h_n, c_n: (num_layers * D, N, H) each.",
        returns="(output, (h_n, c_n))", dstates="(d_output, (d_h_n, d_c_n))") + """
    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> lstm = nn.LSTM(10, 20, batch_first=True, rng=0)
        >>> x = np.zeros((3, 5, 10), np.float32)  # (N, T, input_size)
        >>> output, (h_n, c_n) = lstm(x)
        >>> output.shape, h_n.shape, c_n.shape
        ((3, 5, 20), (1, 3, 20), (1, 3, 20))
        >>> lstm.backward((np.ones_like(output), (None, None))).shape  # d_x
        (3, 5, 10)
    """

    GATES, HAS_CELL = 4, True

    def _cell_forward(self, xw, h0, c0, w_hh, b_ih, b_hh):
        hs, cs, gates = lstm_forward(xw, h0, c0, w_hh, b_ih, b_hh)  # (T, N, H), (T, N, H), (T, N, 4H)
        return hs, last_state(hs, h0), last_state(cs, c0), (gates, cs, c0)

    def _cell_backward(self, dhs, dhT, dcT, cache, w_hh):
        _, _, _, (gates, cs, c0) = cache
        da, dh0, dc0 = lstm_backward(dhs, dhT, dcT, gates, cs, c0, w_hh)  # da (T, N, 4H) over the gates
        return da, da, dh0, dc0
