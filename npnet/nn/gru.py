"""GRU with PyTorch's gate order r, z, n and its reset-gate placement (r multiplies W_hn h + b_hn)."""
import numpy as np

from .lstm import _sigmoid
from .recurrent import RNNBase
from .rnn import ARGS_DOC, STATES_DOC  # the shared parts of the docstrings


class GRU(RNNBase):
    __doc__ = """Multi-layer GRU, as ``torch.nn.GRU``. One step, with x-products xr, xz, xn
    (``W_ih x_t + b_ih``) and h-products hr, hz, hn (``W_hh h_{t-1} + b_hh``), rows r, z, n::

        r = sigmoid(xr + hr),  z = sigmoid(xz + hz)
        n = tanh(xn + r * hn)             (r scales the h-product *including* b_hn, as PyTorch)
        h_t = (1 - z) * n + z * h_{t-1}

    Because of r * hn, the n rows of the x-side and h-side pre-activations get different
    gradients; the backward keeps both (``dxw`` and ``dhw``).
    """ + ARGS_DOC.format(gates="3 gates (r, z, n)", gh="3H", nonlinearity="") + STATES_DOC.format(
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

    def _cell_forward(self, xw, h0, c0, w_hh, b_hh):
        T, N, G = xw.shape
        H = G // 3
        hs = np.empty((T, N, H), xw.dtype)
        gates = np.empty_like(xw)  # (T, N, 3H): r, z, n after their activations
        hns = np.empty((T, N, H), xw.dtype)  # hn = W_hn h + b_hn, which r scaled
        h = h0
        for t in range(T):
            hw = h @ w_hh.T  # (N, 3H)
            if b_hh is not None:
                hw += b_hh
            rz = _sigmoid(xw[t, :, :2 * H] + hw[:, :2 * H])
            r, z = rz[:, :H], rz[:, H:]
            n = np.tanh(xw[t, :, 2 * H:] + r * hw[:, 2 * H:])
            h = (1 - z) * n + z * h
            gates[t, :, :2 * H], gates[t, :, 2 * H:], hns[t], hs[t] = rz, n, hw[:, 2 * H:], h
        return hs, h, None, (gates, hns)

    def _cell_backward(self, dhs, dhT, dcT, cache, w_hh):
        _, h0, hs, (gates, hns) = cache
        T = hs.shape[0]
        dxw, dhw = np.empty_like(gates), np.empty_like(gates)  # (T, N, 3H) each
        dh = dhT
        for t in range(T - 1, -1, -1):
            r, z, n = np.split(gates[t], 3, axis=1)
            h_prev = hs[t - 1] if t > 0 else h0
            dh = dh + dhs[t]  # from the output at t and from step t + 1
            dn_pre = dh * (1 - z) * (1 - n * n)  # d / d (xn + r * hn)
            dr_pre = dn_pre * hns[t] * r * (1 - r)
            dz_pre = dh * (h_prev - n) * z * (1 - z)
            dxw[t] = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
            dhw[t] = np.concatenate([dr_pre, dz_pre, dn_pre * r], axis=1)
            dh = dh * z + dhw[t] @ w_hh  # to h_{t-1}: directly through z, and through the products
        return dxw, dhw, dh, None
