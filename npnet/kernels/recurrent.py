"""The time loops of the recurrent cells (RNN, LSTM, GRU), forward and backward: Numba kernels beside
their plain NumPy references (``*_ref``, the step-by-step code a learner reads).

Shapes: L steps, N sequences, H hidden units, G = gates * H (RNN 1, GRU 3, LSTM 4). ``xw`` (L, N, G)
is every step's input product ``x_t W_ih^T`` (one matrix product for the whole sequence, made by
the layer before the loop); ``h0``, ``c0`` (N, H); ``w_hh`` (G, H); biases (G,) or None. The kernels
write into ``xw`` (the LSTM's and GRU's gates, the RNN's h_t) and the backward kernels into the
gates (their gradients): the layer makes ``xw`` for the loop and drops it after the backward.
Arrays of one call share one dtype, float32 or float64; results have it too.

Why a kernel: the NumPy loop makes a temporary and one pass per operation for each of the L steps,
~16 operations in the LSTM's step, more in its backward. Here one Numba function runs the whole time
loop: at each step one BLAS product (``blas.gemm``: SciPy's ``sgemm``, the one ``np.dot`` calls
inside Numba, with BLAS's ``beta`` so that ``h W_hh^T`` is added where ``xw`` lies) and one pass over
the step's gates that computes them, c_t and h_t (backward: the pre-activations' gradients, dc).
No Python runs per step. tanh and sigmoid come from ``_activations`` (C's ``tanhf`` would not
vectorise: 16 ns against 0.37 per element).

Measured on a 2-core AMD EPYC (Zen 4) shared with other jobs (load 2-5; CPU time, 1 thread), one
layer of the benchmark's LSTM (L 28, N 128, H 128, float32): forward 6.7-7.1 ms against 11.5 for the
NumPy twin, of which the 28 products are 5.2-5.5 and the gates' pass 1.5-1.9 (the twin's element-wise
work: 5.7); backward 6.8-7.0 against 9.7-11.0. What is left is BLAS: the step's product, 128 x 128 x
512, runs at ~85 GFLOP/s. The other way, a Python loop calling ``kernels.matmul`` and a Numba pass
per step: 7.5-7.7 ms CPU at 1 thread; at 2 threads 10-11.6 ms CPU and 21-24 ms wall against 7.5-8.5
and 15.7-17 for the one function (a hand-off to the second worker at each step, twice per step).

Threads: the rows of a batch are independent sequences, so each worker (``_threads.run_workers``)
runs the whole time loop for its block of rows, with no synchronisation between steps; with fewer
than ``_MIN_ROWS`` rows per worker a call runs on the calling thread alone (16: a guess, not
measured: the machine was never idle enough to time 2 workers against 1). float64 (the gradient
checks) runs the same loops with C's ``tanh``, exact to rounding and ~40x slower per element.
"""
import numpy as np

from ._activations import sigmoid, tanh
from ._jit import CACHE, njit
from ._threads import one_blas_thread, run_workers, workers_for
from .blas import gemm
from .reference import reference_enabled

_MIN_ROWS = 16  # sequences per worker below which a second worker is not started (not measured)


@njit(nogil=True, cache=CACHE)
def _rows(t, T, N):
    """Worker t's block of rows lo .. hi of N (the blocks of t = 0 .. T-1 cover all)."""
    return t * N // T, (t + 1) * N // T


@njit(nogil=True, cache=CACHE)
def _prev(s, lo, N, H, h0, hs):
    """The flat h_{s-1} of rows lo.. (h0 at s = 0), as gemm reads a matrix: from its first element."""
    return h0.reshape(-1)[lo * H:] if s == 0 else hs.reshape(-1)[((s - 1) * N + lo) * H:]


# -- LSTM ---------------------------------------------------------------------------------------
@njit(nogil=True, cache=CACHE, error_model="numpy")
def _lstm_forward(t, T, xw, h0, c0, w_hh, b, hs, cs):
    # worker t of T: rows lo .. hi of every step; xw (L, N, 4H) -> gates i, f, g, o
    L, N, G = xw.shape
    H = G // 4
    lo, hi = _rows(t, T, N)
    a, w = xw.reshape(-1), w_hh.reshape(-1)
    for s in range(L):
        gemm(False, True, hi - lo, G, H, _prev(s, lo, N, H, h0, hs), H, w, H, 1.0, a[(s * N + lo) * G:], G)
        for n in range(lo, hi):                             # a += h_{s-1} W_hh^T (above), then the cell
            _lstm_cell(xw[s, n], b, c0[n] if s == 0 else cs[s - 1, n], cs[s, n], hs[s, n], H)


@njit(nogil=True, cache=CACHE, error_model="numpy", inline="always")
def _lstm_cell(a, b, cp, c, h, H):
    # one sequence, one step: a (4H) pre-activations less the bias b -> gates; c, h (H) from c_prev cp
    ai, af, ag, ao = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
    bi, bf, bg, bo = b[:H], b[H:2 * H], b[2 * H:3 * H], b[3 * H:]
    for j in range(H):
        i, f = sigmoid(ai[j] + bi[j]), sigmoid(af[j] + bf[j])
        g, o = tanh(ag[j] + bg[j]), sigmoid(ao[j] + bo[j])
        ai[j], af[j], ag[j], ao[j] = i, f, g, o
        cj = f * cp[j] + i * g
        c[j] = cj
        h[j] = o * tanh(cj)


@njit(nogil=True, cache=CACHE, error_model="numpy")
def _lstm_backward(t, T, dhs, gates, cs, c0, w_hh, dh, dc):
    # worker t of T, rows lo .. hi; dh, dc (N, H) come in as d h_L, d c_L and leave as d h_0, d c_0;
    # gates (L, N, 4H) -> d loss / d pre-activations
    L, N, G = gates.shape
    H = G // 4
    lo, hi = _rows(t, T, N)
    da, w, dh_flat = gates.reshape(-1), w_hh.reshape(-1), dh.reshape(-1)
    for s in range(L - 1, -1, -1):
        for n in range(lo, hi):
            _lstm_cell_grad(gates[s, n], cs[s, n], c0[n] if s == 0 else cs[s - 1, n], dhs[s, n], dh[n], dc[n], H)
        gemm(False, False, hi - lo, H, G, da[(s * N + lo) * G:], G, w, H, 0.0, dh_flat[lo * H:], H)  # to h_{s-1}


@njit(nogil=True, cache=CACHE, error_model="numpy", inline="always")
def _lstm_cell_grad(g4, c, cp, dy, dh, dc, H):
    # one sequence, one step: gates g4 (4H) -> their pre-activations' gradient; dc (H) -> to c_{s-1};
    # dh (H) from step s + 1 (dy: from the output at s)
    one = g4.dtype.type(1)
    gi, gf, gg, go = g4[:H], g4[H:2 * H], g4[2 * H:3 * H], g4[3 * H:]
    for j in range(H):
        i, f, g, o = gi[j], gf[j], gg[j], go[j]
        tc = tanh(c[j])
        d_h = dh[j] + dy[j]
        d_c = dc[j] + d_h * o * (one - tc * tc)               # h = o tanh(c); plus what step s + 1 sent
        gi[j] = d_c * g * (i - i * i)
        gf[j] = d_c * cp[j] * (f - f * f)
        gg[j] = d_c * i * (one - g * g)
        go[j] = d_h * tc * (o - o * o)
        dc[j] = d_c * f


def lstm_forward(xw, h0, c0, w_hh, b_ih, b_hh):
    """The LSTM's time loop (gates i, f, g, o): ``(hs, cs, gates)``, each step's h_t and c_t (L, N, H)
    and its gates (L, N, 4H) after their activations, written over ``xw`` (if C-ordered).

    xw: (L, N, 4H) ``x_t W_ih^T``; h0, c0: (N, H); w_hh: (4H, H); b_ih, b_hh: (4H,) or None.
    """
    if reference_enabled():
        return lstm_forward_ref(xw, h0, c0, w_hh, b_ih, b_hh)
    xw, (h0, c0), w_hh, (b_ih, b_hh) = _operands("lstm_forward", 4, xw, (h0, c0), w_hh, (b_ih, b_hh))
    L, N, G = xw.shape
    hs, cs = np.empty((L, N, G // 4), xw.dtype), np.empty((L, N, G // 4), xw.dtype)
    with one_blas_thread():
        run_workers(_lstm_forward, _workers(N), xw, h0, c0, w_hh, b_ih + b_hh, hs, cs)
    return hs, cs, xw


def lstm_backward(dhs, dhT, dcT, gates, cs, c0, w_hh):
    """The LSTM's backward time loop: ``(da, dh0, dc0)``, the gradient of the pre-activations
    (L, N, 4H), written over ``gates`` (if C-ordered), and of h0 and c0 (N, H).

    dhs: (L, N, H) the gradient of each step's output h_t; dhT, dcT: (N, H) of the last states;
    gates, cs, c0, w_hh: as ``lstm_forward`` returned and took them.
    """
    if reference_enabled():
        return lstm_backward_ref(dhs, dhT, dcT, gates, cs, c0, w_hh)
    gates, (dh, dc, c0), w_hh, _ = _operands("lstm_backward", 4, gates, (dhT, dcT, c0), w_hh, ())
    dhs, cs = _sequences("lstm_backward", gates, w_hh.shape[1], dhs, cs)
    dh, dc = dh.copy(), dc.copy()                           # the workers turn them into d h_0, d c_0
    with one_blas_thread():
        run_workers(_lstm_backward, _workers(gates.shape[1]), dhs, gates, cs, c0, w_hh, dh, dc)
    return gates, dh, dc


# -- GRU ----------------------------------------------------------------------------------------
@njit(nogil=True, cache=CACHE, error_model="numpy")
def _gru_forward(t, T, xw, h0, w_hh, b_ih, b_hh, hs, hns):
    # worker t of T: rows lo .. hi of every step; xw (L, N, 3H) -> gates r, z, n
    L, N, G = xw.shape
    H = G // 3
    lo, hi = _rows(t, T, N)
    w = w_hh.reshape(-1)
    hw = np.empty((hi - lo, G), xw.dtype)                   # h_{s-1} W_hh^T of the worker's rows
    for s in range(L):
        gemm(False, True, hi - lo, G, H, _prev(s, lo, N, H, h0, hs), H, w, H, 0.0, hw.reshape(-1), G)
        for n in range(lo, hi):
            _gru_cell(xw[s, n], hw[n - lo], b_ih, b_hh, h0[n] if s == 0 else hs[s - 1, n], hns[s, n], hs[s, n], H)


@njit(nogil=True, cache=CACHE, error_model="numpy", inline="always")
def _gru_cell(a, hw, bi, bh, hp, hn, h, H):
    # one sequence, one step: a (3H) input products -> gates; hn = W_hn h_prev + b_hn and h (H)
    ar, az, an = a[:H], a[H:2 * H], a[2 * H:]
    wr, wz, wn = hw[:H], hw[H:2 * H], hw[2 * H:]
    for j in range(H):
        r = sigmoid(ar[j] + bi[j] + wr[j] + bh[j])
        z = sigmoid(az[j] + bi[H + j] + wz[j] + bh[H + j])
        hnj = wn[j] + bh[2 * H + j]
        nj = tanh(an[j] + bi[2 * H + j] + r * hnj)
        ar[j], az[j], an[j], hn[j] = r, z, nj, hnj
        h[j] = nj + z * (hp[j] - nj)                        # (1 - z) n + z h_prev


@njit(nogil=True, cache=CACHE, error_model="numpy")
def _gru_backward(t, T, dhs, gates, hns, hs, h0, w_hh, dhw, dh):
    # worker t of T, rows lo .. hi; dh (N, H): d h_L in, d h_0 out; gates -> the x-side gradient
    # (dxw), dhw: the h-side one (their n rows differ by the factor r)
    L, N, G = gates.shape
    H = G // 3
    lo, hi = _rows(t, T, N)
    dw, w, dh_flat = dhw.reshape(-1), w_hh.reshape(-1), dh.reshape(-1)
    for s in range(L - 1, -1, -1):
        for n in range(lo, hi):
            _gru_cell_grad(gates[s, n], dhw[s, n], hns[s, n], h0[n] if s == 0 else hs[s - 1, n], dhs[s, n], dh[n], H)
        gemm(False, False, hi - lo, H, G, dw[(s * N + lo) * G:], G, w, H, 1.0, dh_flat[lo * H:], H)  # dh z + ..


@njit(nogil=True, cache=CACHE, error_model="numpy", inline="always")
def _gru_cell_grad(g3, dw3, hn, hp, dy, dh, H):
    # one sequence, one step: gates g3 (3H) -> the x-side gradient, dw3 (3H) the h-side one; dh (H)
    # from step s + 1 -> its direct part to h_{s-1}, d h z (the product's part is added by gemm)
    one = g3.dtype.type(1)
    gr, gz, gn = g3[:H], g3[H:2 * H], g3[2 * H:]
    wr, wz, wn = dw3[:H], dw3[H:2 * H], dw3[2 * H:]
    for j in range(H):
        r, z, nj = gr[j], gz[j], gn[j]
        d_h = dh[j] + dy[j]
        dn = d_h * (one - z) * (one - nj * nj)                # d / d (xn + r hn)
        dr = dn * hn[j] * (r - r * r)
        dz = d_h * (hp[j] - nj) * (z - z * z)
        gr[j], gz[j], gn[j] = dr, dz, dn
        wr[j], wz[j], wn[j] = dr, dz, dn * r
        dh[j] = d_h * z


def gru_forward(xw, h0, w_hh, b_ih, b_hh):
    """The GRU's time loop (gates r, z, n): ``(hs, gates, hns)``, each step's h_t (L, N, H), its gates
    (L, N, 3H) after their activations, written over ``xw`` (if C-ordered), and hn = W_hn h_{t-1} + b_hn
    (L, N, H), which r scaled.

    xw: (L, N, 3H) ``x_t W_ih^T``; h0: (N, H); w_hh: (3H, H); b_ih, b_hh: (3H,) or None.
    """
    if reference_enabled():
        return gru_forward_ref(xw, h0, w_hh, b_ih, b_hh)
    xw, (h0,), w_hh, (b_ih, b_hh) = _operands("gru_forward", 3, xw, (h0,), w_hh, (b_ih, b_hh))
    L, N, G = xw.shape
    hs, hns = np.empty((L, N, G // 3), xw.dtype), np.empty((L, N, G // 3), xw.dtype)
    with one_blas_thread():
        run_workers(_gru_forward, _workers(N), xw, h0, w_hh, b_ih, b_hh, hs, hns)
    return hs, xw, hns


def gru_backward(dhs, dhT, gates, hns, hs, h0, w_hh):
    """The GRU's backward time loop: ``(dxw, dhw, dh0)``, the gradients of the x-side and the h-side
    pre-activations (L, N, 3H; ``dxw`` written over ``gates`` if C-ordered) and of h0 (N, H).

    dhs: (L, N, H) the gradient of each step's output; dhT: (N, H) of the last state; gates, hns, hs:
    as ``gru_forward`` returned them; h0, w_hh: as it took them.
    """
    if reference_enabled():
        return gru_backward_ref(dhs, dhT, gates, hns, hs, h0, w_hh)
    gates, (dh, h0), w_hh, _ = _operands("gru_backward", 3, gates, (dhT, h0), w_hh, ())
    dhs, hns, hs = _sequences("gru_backward", gates, w_hh.shape[1], dhs, hns, hs)
    dh, dhw = dh.copy(), np.empty_like(gates)
    with one_blas_thread():
        run_workers(_gru_backward, _workers(gates.shape[1]), dhs, gates, hns, hs, h0, w_hh, dhw, dh)
    return gates, dhw, dh


# -- RNN ----------------------------------------------------------------------------------------
@njit(nogil=True, cache=CACHE, error_model="numpy")
def _rnn_forward(t, T, xw, h0, w_hh, b, relu):
    # worker t of T: rows lo .. hi of every step; xw (L, N, H) -> h_t = act(xw_t + h_{t-1} W_hh^T + b)
    L, N, H = xw.shape
    lo, hi = _rows(t, T, N)
    a, w, zero = xw.reshape(-1), w_hh.reshape(-1), xw.dtype.type(0)
    for s in range(L):
        gemm(False, True, hi - lo, H, H, _prev(s, lo, N, H, h0, xw), H, w, H, 1.0, a[(s * N + lo) * H:], H)
        for n in range(lo, hi):
            h = xw[s, n]
            for j in range(H):
                v = h[j] + b[j]
                h[j] = (zero if v < 0 else v) if relu else tanh(v)   # NaN stays NaN, as np.maximum


@njit(nogil=True, cache=CACHE, error_model="numpy")
def _rnn_backward(t, T, dhs, hs, w_hh, relu, da, dh):
    # worker t of T, rows lo .. hi; dh (N, H): d h_L in, d h_0 out; da (L, N, H): d / d pre-activation
    L, N, H = hs.shape
    lo, hi = _rows(t, T, N)
    d_flat, w, dh_flat = da.reshape(-1), w_hh.reshape(-1), dh.reshape(-1)
    one, zero = hs.dtype.type(1), hs.dtype.type(0)
    for s in range(L - 1, -1, -1):
        for n in range(lo, hi):
            h, dy, d, dhn = hs[s, n], dhs[s, n], da[s, n], dh[n]
            for j in range(H):
                g = dhn[j] + dy[j]
                d[j] = (g if h[j] > 0 else g * zero) if relu else g * (one - h[j] * h[j])
        gemm(False, False, hi - lo, H, H, d_flat[(s * N + lo) * H:], H, w, H, 0.0, dh_flat[lo * H:], H)


def rnn_forward(xw, h0, w_hh, b_ih, b_hh, relu):
    """The Elman RNN's time loop: hs (L, N, H), each step's h_t = tanh (``relu``: max(., 0)) of
    ``xw_t + b_ih + h_{t-1} W_hh^T + b_hh``, written over ``xw`` (if C-ordered).

    xw: (L, N, H) ``x_t W_ih^T``; h0: (N, H); w_hh: (H, H); b_ih, b_hh: (H,) or None.
    """
    if reference_enabled():
        return rnn_forward_ref(xw, h0, w_hh, b_ih, b_hh, relu)
    xw, (h0,), w_hh, (b_ih, b_hh) = _operands("rnn_forward", 1, xw, (h0,), w_hh, (b_ih, b_hh))
    with one_blas_thread():
        run_workers(_rnn_forward, _workers(xw.shape[1]), xw, h0, w_hh, b_ih + b_hh, bool(relu))
    return xw


def rnn_backward(dhs, dhT, hs, w_hh, relu):
    """The Elman RNN's backward time loop: ``(da, dh0)``, the gradient of each step's pre-activation
    (L, N, H) and of h0 (N, H). dhs: (L, N, H), of each step's output; dhT: (N, H), of the last
    state; hs: as ``rnn_forward`` returned it."""
    if reference_enabled():
        return rnn_backward_ref(dhs, dhT, hs, w_hh, relu)
    hs, (dh,), w_hh, _ = _operands("rnn_backward", 1, hs, (dhT,), w_hh, ())
    (dhs,) = _sequences("rnn_backward", hs, hs.shape[2], dhs)
    dh, da = dh.copy(), np.empty_like(hs)
    with one_blas_thread():
        run_workers(_rnn_backward, _workers(hs.shape[1]), dhs, hs, w_hh, bool(relu), da, dh)
    return da, dh


# -- checks shared by the entry points ------------------------------------------------------------
def _workers(N):
    """Workers for N sequences: each takes at least ``_MIN_ROWS`` of them."""
    return workers_for(N // _MIN_ROWS)


def _operands(name, gates, xw, states, w_hh, biases):
    """xw (L, N, G), the (N, H) states, w_hh (G, H) and the (G,) biases as C-ordered arrays of xw's
    dtype (None biases as zeros), or a TypeError / ValueError: the kernels read them through raw
    pointers. Returns (xw, states, w_hh, biases)."""
    dtype = xw.dtype
    given = [xw, *states, w_hh] + [b for b in biases if b is not None]
    if dtype not in (np.float32, np.float64) or any(a.dtype != dtype for a in given):
        raise TypeError(f"{name}: expected float32 or float64 arrays of one dtype, got "
                        f"{', '.join(str(a.dtype) for a in given)}")
    if xw.ndim != 3 or xw.shape[2] % gates:
        raise ValueError(f"{name}: expected (L, N, {gates}H) pre-activations, got {xw.shape}")
    N, G = xw.shape[1:]
    H = G // gates
    bad = [a.shape for a in states if a.shape != (N, H)] + [w_hh.shape] * (w_hh.shape != (G, H)) + \
        [b.shape for b in biases if b is not None and b.shape != (G,)]
    if bad:
        raise ValueError(f"{name}: with pre-activations {xw.shape}, expected states {(N, H)}, w_hh {(G, H)} "
                         f"and biases {(G,)}, got {bad}")
    c = np.ascontiguousarray
    return (c(xw), tuple(c(a) for a in states), c(w_hh),
            tuple(np.zeros(G, dtype) if b is None else c(b) for b in biases))


def _sequences(name, like, H, *arrays):
    """(L, N, H) arrays of ``like``'s (L, N, G) sequence, C-ordered, of its dtype."""
    L, N = like.shape[:2]
    for a in arrays:
        if a.dtype != like.dtype or a.shape != (L, N, H):
            raise ValueError(f"{name}: expected ({L}, {N}, {H}) {like.dtype} sequences, got {a.shape} {a.dtype}")
    return tuple(np.ascontiguousarray(a) for a in arrays)


# ------------------------------------------------------------------------------------ NumPy references

def _sigmoid(a):
    return 0.5 * (np.tanh(0.5 * a) + 1)  # no exp overflow, keeps the dtype


def lstm_forward_ref(xw, h0, c0, w_hh, b_ih, b_hh):
    """Plain NumPy :func:`lstm_forward`: one step at a time."""
    T, N, G = xw.shape
    H = G // 4
    gates = xw  # (T, N, 4H): each step's pre-activations are overwritten by its gates i, f, g, o
    cs = np.empty((T, N, H), xw.dtype)  # c_t
    hs = np.empty((T, N, H), xw.dtype)  # h_t
    h, c = h0, c0
    for t in range(T):
        a = xw[t] + h @ w_hh.T  # (N, 4H)
        for b in (b_ih, b_hh):
            if b is not None:
                a += b
        gates[t] = _sigmoid(a)
        gates[t, :, 2 * H:3 * H] = np.tanh(a[:, 2 * H:3 * H])  # g is the one tanh gate
        i, f, g, o = np.split(gates[t], 4, axis=1)
        c = f * c + i * g
        h = o * np.tanh(c)
        cs[t], hs[t] = c, h
    return hs, cs, gates


def lstm_backward_ref(dhs, dhT, dcT, gates, cs, c0, w_hh):
    """Plain NumPy :func:`lstm_backward`: one step at a time, from the last."""
    T = gates.shape[0]
    da = gates  # (T, N, 4H): d loss / d pre-activations, written over each step's gates once read
    dh, dc = dhT, dcT
    for t in range(T - 1, -1, -1):
        i, f, g, o = np.split(gates[t].copy(), 4, axis=1)  # a copy: da[t] overwrites gates[t]
        c_prev = cs[t - 1] if t > 0 else c0
        tc = np.tanh(cs[t])
        dh = dh + dhs[t]  # from the output at t and from step t + 1
        dc = dc + dh * o * (1 - tc * tc)  # h_t = o tanh(c_t); plus what step t + 1 sent
        di, df, dg, do = dc * g, dc * c_prev, dc * i, dh * tc
        da[t] = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g),
                                do * o * (1 - o)], axis=1)
        dc = dc * f  # to c_{t-1}
        dh = da[t] @ w_hh  # to h_{t-1}
    return da, dh, dc


def gru_forward_ref(xw, h0, w_hh, b_ih, b_hh):
    """Plain NumPy :func:`gru_forward`: one step at a time."""
    T, N, G = xw.shape
    H = G // 3
    gates = xw  # (T, N, 3H): each step's input products are overwritten by its gates r, z, n
    hs = np.empty((T, N, H), xw.dtype)
    hns = np.empty((T, N, H), xw.dtype)  # hn = W_hn h + b_hn, which r scaled
    h = h0
    for t in range(T):
        xt = xw[t] if b_ih is None else xw[t] + b_ih  # (N, 3H)
        hw = h @ w_hh.T  # (N, 3H)
        if b_hh is not None:
            hw += b_hh
        rz = _sigmoid(xt[:, :2 * H] + hw[:, :2 * H])
        r, z = rz[:, :H], rz[:, H:]
        n = np.tanh(xt[:, 2 * H:] + r * hw[:, 2 * H:])
        h = (1 - z) * n + z * h
        gates[t, :, :2 * H], gates[t, :, 2 * H:], hns[t], hs[t] = rz, n, hw[:, 2 * H:], h
    return hs, gates, hns


def gru_backward_ref(dhs, dhT, gates, hns, hs, h0, w_hh):
    """Plain NumPy :func:`gru_backward`: one step at a time, from the last."""
    T = gates.shape[0]
    dxw, dhw = gates, np.empty_like(gates)  # (T, N, 3H) each; dxw written over each step's gates once read
    dh = dhT
    for t in range(T - 1, -1, -1):
        r, z, n = np.split(gates[t].copy(), 3, axis=1)  # a copy: dxw[t] overwrites gates[t]
        h_prev = hs[t - 1] if t > 0 else h0
        dh = dh + dhs[t]  # from the output at t and from step t + 1
        dn_pre = dh * (1 - z) * (1 - n * n)  # d / d (xn + r * hn)
        dr_pre = dn_pre * hns[t] * r * (1 - r)
        dz_pre = dh * (h_prev - n) * z * (1 - z)
        dxw[t] = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
        dhw[t] = np.concatenate([dr_pre, dz_pre, dn_pre * r], axis=1)
        dh = dh * z + dhw[t] @ w_hh  # to h_{t-1}: directly through z, and through the products
    return dxw, dhw, dh


def rnn_forward_ref(xw, h0, w_hh, b_ih, b_hh, relu):
    """Plain NumPy :func:`rnn_forward`: one step at a time."""
    hs = xw  # (T, N, H): each step's pre-activation is overwritten by h_t
    h = h0
    for t in range(xw.shape[0]):
        a = xw[t] + h @ w_hh.T  # (N, H)
        for b in (b_ih, b_hh):
            if b is not None:
                a += b
        h = np.maximum(a, 0) if relu else np.tanh(a)
        hs[t] = h
    return hs


def rnn_backward_ref(dhs, dhT, hs, w_hh, relu):
    """Plain NumPy :func:`rnn_backward`: one step at a time, from the last."""
    da = np.empty_like(hs)  # (T, N, H): d loss / d pre-activation of each step
    dh = dhT
    for t in range(hs.shape[0] - 1, -1, -1):
        dh = dh + dhs[t]  # from the output at t and from step t + 1
        da[t] = dh * (hs[t] > 0) if relu else dh * (1 - hs[t] * hs[t])
        dh = da[t] @ w_hh  # to h_{t-1}
    return da, dh
