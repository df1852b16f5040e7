"""LSTM with PyTorch's gate order i, f, g, o (rows of weight_ih / weight_hh in that order)."""
import numpy as np

from .recurrent import RNNBase
from .rnn import ARGS_DOC, STATES_DOC  # the shared parts of the docstrings


def _sigmoid(a):
    return 0.5 * (np.tanh(0.5 * a) + 1)  # no exp overflow, keeps the dtype


class LSTM(RNNBase):
    __doc__ = """Multi-layer LSTM, as ``torch.nn.LSTM`` (no ``proj_size``). One step, gates of H rows each::

        i, f, g, o = sigmoid(a_i), sigmoid(a_f), tanh(a_g), sigmoid(a_o)
        with a = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh  (4H rows in the order i, f, g, o)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)
    """ + ARGS_DOC.format(gates="4 gates (i, f, g, o)", gh="4H", nonlinearity="") + STATES_DOC.format(
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

    def _cell_forward(self, xw, h0, c0, w_hh, b_hh):
        T, N, G = xw.shape
        H = G // 4
        gates = np.empty_like(xw)  # (T, N, 4H) after their activations: i, f, g, o
        cs = np.empty((T, N, H), xw.dtype)  # c_t
        hs = np.empty((T, N, H), xw.dtype)  # h_t
        h, c = h0, c0
        for t in range(T):
            a = xw[t] + h @ w_hh.T  # (N, 4H)
            if b_hh is not None:
                a += b_hh
            gates[t] = _sigmoid(a)
            gates[t, :, 2 * H:3 * H] = np.tanh(a[:, 2 * H:3 * H])  # g is the one tanh gate
            i, f, g, o = np.split(gates[t], 4, axis=1)
            c = f * c + i * g
            h = o * np.tanh(c)
            cs[t], hs[t] = c, h
        return hs, h, c, (gates, cs, c0)

    def _cell_backward(self, dhs, dhT, dcT, cache, w_hh):
        _, _, hs, (gates, cs, c0) = cache
        T = hs.shape[0]
        da = np.empty_like(gates)  # (T, N, 4H): d loss / d pre-activations a
        dh, dc = dhT, dcT
        for t in range(T - 1, -1, -1):
            i, f, g, o = np.split(gates[t], 4, axis=1)
            c_prev = cs[t - 1] if t > 0 else c0
            tc = np.tanh(cs[t])
            dh = dh + dhs[t]  # from the output at t and from step t + 1
            dc = dc + dh * o * (1 - tc * tc)  # h_t = o tanh(c_t); plus what step t + 1 sent
            di, df, dg, do = dc * g, dc * c_prev, dc * i, dh * tc
            da[t] = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g),
                                    do * o * (1 - o)], axis=1)
            dc = dc * f  # to c_{t-1}
            dh = da[t] @ w_hh  # to h_{t-1}
        return da, da, dh, dc
