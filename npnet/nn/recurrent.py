"""The machinery shared by RNN, LSTM and GRU: parameters with PyTorch's names, the loop over
layers and directions, batch_first, dropout between layers, initial and final states.

Each subclass hands one cell's time loop (``_cell_forward`` / ``_cell_backward``, in ``rnn.py``,
``lstm.py``, ``gru.py``) to its kernel in ``npnet/kernels/recurrent.py``; everything here is the
same for the three. Inside, sequences are time-major, ``(T, N, features)``. The input-to-hidden
product of a whole sequence is one matrix product before the loop (it does not depend on the
previous step), and so are the weight gradients after the backward loop (``kernels.matmul``, on
the same worker threads as the time loops). Measured against NumPy's ``@`` for these products, in
one process on a shared 2-core Zen 4 (the benchmark's 2-layer LSTM, batch 128, 28 steps): at 2
threads ``kernels.matmul`` is faster (train step 71-80 ms against 91-103, inference 18-22 against
26-44: NumPy's own BLAS threads keep spinning after each product, beside the kernels' workers); at
1 thread NumPy's is 5-10 % faster on the train step (its OpenBLAS 0.3.31 does the long-K weight
gradients in 5.3-5.4 ms where SciPy's 0.3.30, which Numba calls, takes 6.7-7.0).
"""
import math

import numpy as np

from .. import init
from ..kernels.matmul import matmul
from ._call import MultiInput
from ._checks import check_grad, check_input
from .module import Module, Parameter


class RNNBase(MultiInput, Module):
    """Base of RNN, LSTM, GRU; see those classes for the conventions of states and gradients.

    Parameters of layer ``k``, direction suffix ``''`` or ``'_reverse'``, G gates of H each:
    ``weight_ih_l{k}`` (G*H, I_k), ``weight_hh_l{k}`` (G*H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}``
    (G*H,), where I_0 = input_size and I_k = H * num_directions above. All are initialised from
    U(-1/sqrt(H), 1/sqrt(H)), as PyTorch.
    """

    GATES = 1  # gates per cell (G): 1 RNN, 4 LSTM (i, f, g, o), 3 GRU (r, z, n)
    HAS_CELL = False  # LSTM carries a cell state c beside h

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, rng=None, dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        if int(num_layers) < 1 or int(hidden_size) < 1 or int(input_size) < 1:
            raise ValueError(f"{name}: input_size, hidden_size and num_layers must be >= 1, got "
                             f"{input_size}, {hidden_size}, {num_layers}")
        if not 0 <= dropout < 1:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.bias, self.batch_first, self.bidirectional = bool(bias), bool(batch_first), bool(bidirectional)
        self.dropout, self.rng = float(dropout), init.get_rng(rng)
        self.num_directions = 2 if self.bidirectional else 1
        H, G = self.hidden_size, self.GATES
        bound = 1 / math.sqrt(H)
        for k in range(self.num_layers):
            fin = self.input_size if k == 0 else H * self.num_directions
            for sfx in self._suffixes():
                shapes = {"weight_ih": (G * H, fin), "weight_hh": (G * H, H)}
                if self.bias:
                    shapes.update(bias_ih=(G * H,), bias_hh=(G * H,))
                for pname, shape in shapes.items():
                    p = Parameter(np.zeros(shape, dtype=dtype))
                    init.uniform_(p, -bound, bound, self.rng)
                    setattr(self, f"{pname}_l{k}{sfx}", p)

    def _suffixes(self):
        return ("", "_reverse")[:self.num_directions]

    def _weights(self, k, d):
        """(weight_ih, weight_hh, bias_ih, bias_hh) Parameters of layer k, direction d (biases may be None)."""
        sfx = self._suffixes()[d]
        return tuple(getattr(self, f"{n}_l{k}{sfx}", None)
                     for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        s += f", num_layers={self.num_layers}" if self.num_layers != 1 else ""
        s += ", bias=False" if not self.bias else ""
        s += ", batch_first=True" if self.batch_first else ""
        s += f", dropout={self.dropout}" if self.dropout else ""
        return s + (", bidirectional=True" if self.bidirectional else "")

    # -- checks -------------------------------------------------------------------------------
    def _check_state(self, h, N, what):
        shape = (self.num_layers * self.num_directions, N, self.hidden_size)
        if not isinstance(h, np.ndarray) or h.shape != shape or h.dtype != self.dtype:
            got = (h.shape, h.dtype) if isinstance(h, np.ndarray) else type(h).__name__
            raise ValueError(f"{self._label()}: expected {what} of shape {shape} (num_layers * "
                             f"num_directions, N, hidden_size) and dtype {self.dtype}, got {got}")
        return h

    def _initial_states(self, hx, N, dtype):
        zeros = np.zeros((self.num_layers * self.num_directions, N, self.hidden_size), dtype=dtype)
        if not self.HAS_CELL:
            return (zeros if hx is None else self._check_state(hx, N, "h_0")), None
        if hx is None:
            return zeros, zeros.copy()
        if not isinstance(hx, tuple) or len(hx) != 2:
            raise ValueError(f"{self._label()}: expected hx as a tuple (h_0, c_0), got {type(hx).__name__}")
        return self._check_state(hx[0], N, "h_0"), self._check_state(hx[1], N, "c_0")

    # -- forward ------------------------------------------------------------------------------
    def forward(self, x, hx=None):
        """``(output, h_n)`` (LSTM: ``(output, (h_n, c_n))``) for input x and initial states hx
        (None: zeros); shapes in the class docstring."""
        desc = "(N, L, input_size)" if self.batch_first else "(L, N, input_size)"
        check_input(self, x, (3,), desc, self.input_size, axis=2)
        x = x.transpose(1, 0, 2) if self.batch_first else x  # (T, N, I)
        h0, c0 = self._initial_states(hx, x.shape[1], x.dtype)
        caches, masks, h_n, c_n = [], [], [], []
        inp = x
        for k in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                j = k * self.num_directions + d
                out, hT, cT, cache = self._run_direction(inp, h0[j], None if c0 is None else c0[j], k, d)
                outs.append(out)
                caches.append(cache)
                h_n.append(hT)
                c_n.append(cT)
            inp = np.concatenate(outs, axis=2) if len(outs) > 1 else outs[0]  # (T, N, D*H)
            if k < self.num_layers - 1 and self.training and self.dropout > 0:
                keep = self.rng.random(inp.shape, dtype=inp.dtype) >= self.dropout
                masks.append(keep * inp.dtype.type(1 / (1 - self.dropout)))
                inp = inp * masks[-1]
            else:
                masks.append(None)
        self.cache = (caches, masks, x.shape, x.dtype)
        output = inp.transpose(1, 0, 2) if self.batch_first else inp
        h_n = np.stack(h_n)
        return (output, (h_n, np.stack(c_n))) if self.HAS_CELL else (output, h_n)

    def _run_direction(self, x, h0, c0, k, d):
        """One layer, one direction: the reverse direction reads the sequence backwards."""
        w_ih, w_hh, b_ih, b_hh = self._weights(k, d)
        xs = x[::-1] if d == 1 else x
        T, N, I = xs.shape
        xw = matmul(xs.reshape(T * N, I), w_ih.data.T).reshape(T, N, len(w_ih.data))  # (T, N, G*H): all steps'
        hs, hT, cT, cell = self._cell_forward(xw, h0, c0, w_hh.data, _data(b_ih), _data(b_hh))
        return (hs[::-1] if d == 1 else hs), hT, cT, (xs, h0, hs, cell)

    # -- backward -----------------------------------------------------------------------------
    def backward(self, dout, input_grad=True):
        """``dout`` is the gradient of what ``forward`` returned: ``d_output``, or a tuple
        ``(d_output, d_h_n)`` (RNN, GRU) / ``(d_output, (d_h_n, d_c_n))`` (LSTM), any part None
        for zeros. Adds into the weights' ``grad``, stores the initial states' gradient in
        ``self.hx_grad`` (hx's structure) and returns ``d_x`` (x's shape), or None without ``input_grad``."""
        caches, masks, xshape, dtype = self._saved()
        dy, dh_n, dc_n = self._split_grad(dout, xshape, dtype)  # dy time-major (T, N, D*H)
        D, H = self.num_directions, self.hidden_size
        dh0, dc0 = np.zeros_like(dh_n), np.zeros_like(dh_n)
        for k in range(self.num_layers - 1, -1, -1):
            if masks[k] is not None:  # the dropout that fed layer k + 1
                dy = dy * masks[k]
            need_dx, dinp = k > 0 or input_grad, None
            for d in range(D):
                j = k * D + d
                dx, dh0[j], dc = self._backprop_direction(dy[..., d * H:(d + 1) * H], dh_n[j],
                                                          None if dc_n is None else dc_n[j], caches[j], k, d, need_dx)
                if dc is not None:
                    dc0[j] = dc
                dinp = dx if dinp is None else dinp + dx
            dy = dinp
        self.hx_grad = (dh0, dc0) if self.HAS_CELL else dh0
        self.cache = None
        if not input_grad:
            return None
        return dy.transpose(1, 0, 2) if self.batch_first else dy

    def _split_grad(self, dout, xshape, dtype):
        T, N, _ = xshape
        state_shape = (self.num_layers * self.num_directions, N, self.hidden_size)
        if isinstance(dout, tuple) and len(dout) != 2:
            raise ValueError(f"{self._label()}.backward: expected d_output or a pair (d_output, "
                             f"d_states), got a tuple of {len(dout)}")
        dy, dst = dout if isinstance(dout, tuple) else (dout, None)
        out_shape = (N, T, self.num_directions * self.hidden_size) if self.batch_first else \
            (T, N, self.num_directions * self.hidden_size)
        dy = np.zeros(out_shape, dtype) if dy is None else check_grad(self, dy, out_shape, dtype)
        dy = dy.transpose(1, 0, 2) if self.batch_first else dy
        if self.HAS_CELL:
            if dst is not None and not (isinstance(dst, tuple) and len(dst) == 2):
                raise ValueError(f"{self._label()}.backward: expected the states' gradient as "
                                 f"(d_h_n, d_c_n), got {type(dst).__name__}")
            dh, dc = (None, None) if dst is None else dst
        else:
            dh, dc = dst, None
        dh = np.zeros(state_shape, dtype) if dh is None else check_grad(self, dh, state_shape, dtype)
        if self.HAS_CELL:
            dc = np.zeros(state_shape, dtype) if dc is None else check_grad(self, dc, state_shape, dtype)
        return dy, dh, dc

    def _backprop_direction(self, dy, dhT, dcT, cache, k, d, need_dx):
        """One layer, one direction: returns (d_x time-major or None, d_h0, d_c0 or None)."""
        w_ih, w_hh, b_ih, b_hh = self._weights(k, d)
        xs, h0, hs, _ = cache
        dys = dy[::-1] if d == 1 else dy
        dxw, dhw, dh0, dc0 = self._cell_backward(dys, dhT, dcT, cache, w_hh.data)  # (T, N, G*H) each
        T, N, GH = dxw.shape
        hprev = np.concatenate([h0[None], hs[:-1]])[:T]  # (T, N, H): the state each step read
        db = None
        for w, b, dpre, inp in ((w_ih, b_ih, dxw, xs), (w_hh, b_hh, dhw, hprev)):
            if w.requires_grad:  # sum over steps and batch of dpre^T inp, as one product
                matmul(dpre.reshape(T * N, GH).T, inp.reshape(T * N, inp.shape[2]), out=w.grad, accumulate=True)
            if b is not None and b.requires_grad:
                if db is None or dhw is not dxw:  # LSTM, RNN: dhw is dxw, summed once for both biases
                    db = dpre.sum(axis=(0, 1))
                b.grad += db
        if not need_dx:
            return None, dh0, dc0
        dx = matmul(dxw.reshape(T * N, GH), w_ih.data).reshape(T, N, w_ih.data.shape[1])  # (T, N, I)
        return (dx[::-1] if d == 1 else dx), dh0, dc0


def _data(p):
    """A Parameter's array, or None for a missing bias."""
    return None if p is None else p.data


def last_state(hs, h0):
    """The state after the last step of hs (T, N, H): h0 for an empty sequence."""
    return hs[-1] if len(hs) else h0
