"""RNN (Elman): ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, act tanh or ReLU."""
import numpy as np

from ..kernels.recurrent import rnn_backward, rnn_forward
from .recurrent import RNNBase, last_state

ARGS_DOC = """
    Args:
        input_size (int): the features of x_t.
        hidden_size (int): H, the features of h_t.
        num_layers (int): stacked layers, each reading the output of the one below (default 1).{nonlinearity}
        bias (bool): learn ``bias_ih_l{{k}}`` and ``bias_hh_l{{k}}`` (default True).
        batch_first (bool): x and output are (N, T, ...) instead of (T, N, ...); the states
            keep their (num_layers * D, N, H) shape, as in PyTorch (default False).
        dropout (float): dropout probability on every layer's output except the last, in training
            only (default 0).
        bidirectional (bool): add a reverse direction to every layer, D = 2 (default False).
        rng: a ``numpy.random.Generator``, an int seed or None: the generator of the
            initialisation; None uses npnet's default generator (seeded by ``npnet.manual_seed``).
        dtype: the parameters' dtype, default ``np.float32``.

    Parameters of layer ``k`` with direction suffix ``''`` or ``'_reverse'``, PyTorch's names and
    shapes, {gates} of H rows each: ``weight_ih_l{{k}}`` ({gh}, I_k), ``weight_hh_l{{k}}``
    ({gh}, H), ``bias_ih_l{{k}}`` and ``bias_hh_l{{k}}`` ({gh},), with I_0 = input_size and
    I_k = D * H above; all initialised from U(-1/sqrt(H), 1/sqrt(H)), as PyTorch.
"""

KERNELS_DOC = """
    Where the code is: the time loop, forward and backward, is ``{cell}_forward`` / ``{cell}_backward``
    in ``npnet/kernels/recurrent.py`` (Numba: one function runs every step); beside them are their
    plain NumPy twins ``{cell}_forward_ref`` / ``{cell}_backward_ref``, the same loop one step at a
    time, which ``with npnet.kernels.use_reference():`` runs instead. The products of the whole
    sequence and the weight gradients are in ``RNNBase`` (``npnet/nn/recurrent.py``).
"""

STATES_DOC = """
    Shape (T steps, N sequences, D = 2 if bidirectional else 1, H = hidden_size):
        x: (T, N, input_size), or (N, T, input_size) with ``batch_first``.
        hx: {hx} of shape (num_layers * D, N, H); None is zeros.
        output: (T, N, D * H) (or (N, T, D * H)): the last layer's h_t, forward and reverse
        direction concatenated on the last axis. {final}

    ``module(x, hx)`` returns ``{returns}`` as PyTorch. The reverse direction's final state is
    its state after reading x_0. ``dropout`` applies to every layer's output except the last, in
    training only. Only batched 3-D input (PyTorch also takes an unbatched 2-D sequence).

    Backward takes the gradient of what forward returned: ``backward(d_output)``, or
    ``backward({dstates})``, any part None for zeros (a classifier on h_n passes
    ``(None, d_h_n)``). It returns d_x and leaves the gradient of the initial states in
    ``self.hx_grad`` ({hx} structure, zeros for hx=None), so a truncated-BPTT loop can pass it
    on to the previous chunk.
"""


class RNN(RNNBase):
    __doc__ = """Multi-layer Elman RNN, as ``torch.nn.RNN``: ``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1}
    + b_hh)`` (``nonlinearity='relu'``: max(., 0)).
    """ + KERNELS_DOC.format(cell="rnn") + ARGS_DOC.format(gates="one gate", gh="H", nonlinearity="""
        nonlinearity (str): ``'tanh'`` (default) or ``'relu'``.""") + STATES_DOC.format(
        hx="h_0", final="h_n: (num_layers * D, N, H), each layer's last state.",
        returns="(output, h_n)", dstates="(d_output, d_h_n)") + """
    Example:
        >>> import numpy as np
        >>> from npnet import nn
        >>> rnn = nn.RNN(10, 20, num_layers=2, rng=0)
        >>> x = np.zeros((5, 3, 10), np.float32)  # (T, N, input_size)
        >>> output, h_n = rnn(x)
        >>> output.shape, h_n.shape
        ((5, 3, 20), (2, 3, 20))
        >>> dx = rnn.backward((None, np.ones_like(h_n)))  # a loss on h_n only
        >>> dx.shape, rnn.hx_grad.shape
        ((5, 3, 10), (2, 3, 20))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, rng=None, dtype=np.float32):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, rng, dtype)
        self.nonlinearity = nonlinearity

    def extra_repr(self):
        act = ", nonlinearity='relu'" if self.nonlinearity == "relu" else ""
        return super().extra_repr() + act

    def _cell_forward(self, xw, h0, c0, w_hh, b_ih, b_hh):
        hs = rnn_forward(xw, h0, w_hh, b_ih, b_hh, self.nonlinearity == "relu")  # (T, N, H) over xw
        return hs, last_state(hs, h0), None, None

    def _cell_backward(self, dhs, dhT, dcT, cache, w_hh):
        da, dh0 = rnn_backward(dhs, dhT, cache[2], w_hh, self.nonlinearity == "relu")  # da (T, N, H)
        return da, da, dh0, None
