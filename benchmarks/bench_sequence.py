"""Sequence models: npnet vs PyTorch CPU, train step and inference, same process, same threads.

    python benchmarks/bench_sequence.py [--models lstm gru transformer] [--steps 5] [--rounds 2]
        [--threads N] [--markdown] [--no-torch] [--no-memory] [--mem-steps 3] [--mem-repeats 1]
        [--json FILE]

Models (float32, random data and labels, 10 classes), the sizes of issue 34:

* ``lstm``: ``LSTM(28, 128, num_layers=2, batch_first=True)`` on (128, 28, 28) (a batch of
  Fashion-MNIST images read row by row), the last step's output -> ``Linear(128, 10)``.
* ``gru``: the same with ``GRU(28, 128, num_layers=2, batch_first=True)``.
* ``transformer``: ``Embedding(256, 128)`` of (64, 128) token ids, ``PositionalEncoding``, a
  ``TransformerEncoder`` of 2 ``TransformerEncoderLayer(128, 4, dim_feedforward=512,
  dropout=0.0, batch_first=True)`` (post-norm, ReLU), the mean over tokens -> ``Linear(128, 10)``.

Train step = ``npnet.train.train_step`` (zero_grad -> forward -> CrossEntropyLoss -> backward
without the input gradient -> SGD(momentum=0.9).step), PyTorch's the same; inference = forward in
eval mode under ``no_grad``. The PyTorch twin has the same modules under the same names and loads
npnet's ``state_dict()`` strictly; logits, loss and weight gradients are compared before timing.
Times: median of the timed steps, npnet and PyTorch alternating in blocks
(``_common.time_interleaved``); the share of the CPUs other processes used meanwhile is printed
beside each row (``_common.OtherLoad``).

Peak memory of a train step, as ``bench_models.py`` measures it (``_common.peak_memory``): each
(framework, model) in a fresh subprocess that imports its framework, warms it on a short batch
(kernels compiled, thread pools started), resets the peak-RSS mark, then builds the model, optimizer
and data and runs ``--mem-steps`` train steps; the figure is peak RSS minus that baseline
(parameters, gradients, momentum, activations, work buffers, allocator overhead), the median of
``--mem-repeats`` subprocesses. ``--no-memory`` skips it.
"""
import argparse
import json
import math
import os
import sys

import _common

MODELS = ("lstm", "gru", "transformer")
RECURRENT = ("lstm", "gru")
LR = 1e-3


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per side (at least)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--mem-steps", type=int, default=3, help="train steps per peak-memory subprocess")
    ap.add_argument("--mem-repeats", type=int, default=1, help="subprocesses per figure (the median)")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--child", nargs=2, metavar=("FRAMEWORK", "MODEL"), help=argparse.SUPPRESS)
    return ap.parse_args(argv)


ARGS = parse_args()
_common.pin_threads(ARGS.threads)    # before NumPy, Numba or PyTorch load their thread pools
torch = _common.load_frameworks(ARGS.threads, want_torch=not ARGS.no_torch)

import numpy as np  # noqa: E402

from npnet import losses, nn, no_grad  # noqa: E402


# -- the npnet models ------------------------------------------------------------------------------
class RecurrentClassifier(nn.Module):
    """(N, T, 28) rows -> 2-layer LSTM (or GRU) -> the last step's output -> (N, 10) logits."""

    def __init__(self, kind="lstm", rng=0):
        super().__init__()
        cls = nn.LSTM if kind == "lstm" else nn.GRU
        setattr(self, kind, cls(28, 128, num_layers=2, batch_first=True, rng=rng))
        self.kind = kind
        self.head = nn.Linear(128, 10, rng=rng)

    def forward(self, x):
        out, _ = getattr(self, self.kind)(x)       # (N, T, 128)
        self.cache = out.shape
        return self.head(out[:, -1])

    def backward(self, dout, input_grad=True):
        dy = np.zeros(self.cache, dtype=dout.dtype)
        dy[:, -1] = self.head.backward(dout)
        return getattr(self, self.kind).backward((dy, None), input_grad=input_grad)


class TransformerClassifier(nn.Module):
    """(N, L) token ids -> embedding + positions -> 2 encoder layers -> mean over L -> (N, 10)."""

    def __init__(self, rng=0):
        super().__init__()
        self.embed = nn.Embedding(256, 128, rng=rng)
        self.pos = nn.PositionalEncoding(128, dropout=0.0, batch_first=True)
        layer = nn.TransformerEncoderLayer(128, 4, dim_feedforward=512, dropout=0.0, batch_first=True, rng=rng)
        self.encoder = nn.TransformerEncoder(layer, 2, rng=rng)
        self.head = nn.Linear(128, 10, rng=rng)

    def forward(self, tokens):
        h = self.encoder(self.pos(self.embed(tokens)))   # (N, L, 128)
        self.cache = h.shape
        return self.head(h.mean(axis=1))

    def backward(self, dout, input_grad=True):
        N, L, D = self.cache
        dh = np.broadcast_to(self.head.backward(dout)[:, None, :] / np.float32(L), (N, L, D))
        self.embed.backward(self.pos.backward(self.encoder.backward(np.ascontiguousarray(dh))))
        return None


def build(name, batch=None, length=None):
    """(npnet model, x, y) of one benchmark model (``batch``, ``length``: a smaller batch, shorter
    sequences, to warm up on)."""
    rng = np.random.default_rng(0)
    if name in RECURRENT:
        N, T = batch or 128, length or 28
        return RecurrentClassifier(name), rng.standard_normal((N, T, 28), dtype=np.float32), rng.integers(0, 10, N)
    N, L = batch or 64, length or 128
    return TransformerClassifier(), rng.integers(0, 256, (N, L)), rng.integers(0, 10, N)


# -- the PyTorch twins -----------------------------------------------------------------------------
def torch_twin(name, model):
    """The same model in PyTorch, with npnet's weights loaded strictly."""
    tnn = torch.nn

    class RecurrentTwin(tnn.Module):
        def __init__(self):
            super().__init__()
            cls = tnn.LSTM if name == "lstm" else tnn.GRU
            setattr(self, name, cls(28, 128, num_layers=2, batch_first=True))
            self.head = tnn.Linear(128, 10)

        def forward(self, x):
            return self.head(getattr(self, name)(x)[0][:, -1])

    class TransformerTwin(tnn.Module):
        def __init__(self):
            super().__init__()
            self.embed = tnn.Embedding(256, 128)
            # the table in float64, rounded to float32 once, as npnet's PositionalEncoding does
            pos = torch.arange(128, dtype=torch.float64)[:, None]
            div = torch.exp(torch.arange(0, 128, 2, dtype=torch.float64) * (-math.log(1e4) / 128))
            pe = torch.zeros(128, 128, dtype=torch.float64)
            pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
            self.register_buffer("pe", pe.float(), persistent=False)
            layer = tnn.TransformerEncoderLayer(128, 4, dim_feedforward=512, dropout=0.0, batch_first=True)
            self.encoder = tnn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = tnn.Linear(128, 10)

        def forward(self, tokens):
            h = self.embed(tokens) + self.pe[:tokens.shape[1]]
            return self.head(self.encoder(h).mean(dim=1))

    twin = RecurrentTwin() if name in RECURRENT else TransformerTwin()
    twin.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in model.state_dict().items()},
                         strict=True)
    return twin


def check_same_function(model, twin, x, y):
    """Relative differences of logits, loss and the largest weight-gradient difference."""
    model.train(), twin.train()
    criterion = losses.CrossEntropyLoss()
    out = model(x)
    loss = criterion(out, y)
    model.backward(criterion.backward(), input_grad=False)
    tout = twin(torch.from_numpy(x))
    tloss = torch.nn.functional.cross_entropy(tout, torch.from_numpy(y))
    tloss.backward()
    tp = dict(twin.named_parameters())
    grads = max(float(np.abs(p.grad - tp[k].grad.numpy()).max() / np.abs(tp[k].grad.numpy()).max())
                for k, p in model.named_parameters())
    model.zero_grad(), twin.zero_grad()
    tout = tout.detach().numpy()
    return {"logits": float(np.abs(out - tout).max() / np.abs(tout).max()),
            "loss": abs(loss - tloss.item()) / abs(tloss.item()), "grads": grads}


# -- timing ----------------------------------------------------------------------------------------
def steps(model, twin, x, y, mode):
    """name -> zero-argument callable of one train step or one inference forward per side."""
    fns = {}
    if mode == "train":
        model.train()
        fns["npnet"] = _common.npnet_train_step(model, x, y, LR)
    else:
        model.eval()
        fns["npnet"] = lambda: _no_grad(model, x)
    if twin is not None:
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        if mode == "train":
            twin.train()
            opt, crit = torch.optim.SGD(twin.parameters(), lr=LR, momentum=0.9), torch.nn.CrossEntropyLoss()

            def torch_train():
                opt.zero_grad()
                crit(twin(tx), ty).backward()
                opt.step()
            fns["torch"] = torch_train
        else:
            twin.eval()
            fns["torch"] = lambda: _torch_no_grad(twin, tx)
    return fns


def _no_grad(model, x):
    with no_grad():
        return model(x)


def _torch_no_grad(twin, tx):
    with torch.no_grad():
        return twin(tx)


def time_model(name):
    model, x, y = build(name)
    twin = torch_twin(name, model) if torch is not None else None
    result = {"model": name, "batch": len(x), "params": model.num_parameters(),
              "check": check_same_function(model, twin, x, y) if twin is not None else None}
    for mode in ("train", "infer"):
        with _common.OtherLoad() as load:
            times = _common.time_interleaved(steps(model, twin, x, y, mode), ARGS.steps, ARGS.warmup, ARGS.rounds)
        result[mode] = {side: _common.median(t) * 1e3 for side, t in times.items()}
        result[mode]["other_load"] = load.share
        print(f"  {name} {mode}: " + ", ".join(f"{s} {v:.1f} ms" for s, v in result[mode].items()
                                               if s != "other_load"), file=sys.stderr, flush=True)
    return result


# -- peak memory (subprocess) ----------------------------------------------------------------------
def memory_child(framework, name):
    """Runs in a fresh process: prints the JSON of ``_common.peak_memory`` for ``--mem-steps`` train steps."""
    small, x, y = build(name, batch=4, length=3)             # warm-up: compiled kernels, started pools
    twin = torch_twin(name, small) if framework == "torch" else None
    steps(small, twin, x, y, "train")[framework]()
    del small, twin, x, y

    def run():
        model, x, y = build(name)
        twin = torch_twin(name, model) if framework == "torch" else None
        step = steps(model, twin, x, y, "train")[framework]
        if twin is not None:
            del model           # the twin was loaded from it (0.2 M weights, ~2 MB with gradients)
        for _ in range(ARGS.mem_steps):
            step()
    mem = _common.peak_memory(run, trace=framework == "npnet")
    print(json.dumps({"framework": framework, "model": name, "pass": "train", **mem}))


def measure_memory(name):
    """framework -> the peak-memory result of a train step of ``name`` (None where it failed)."""
    sides = ["npnet"] + (["torch"] if torch is not None else [])
    cmd = [sys.executable, os.path.abspath(__file__), "--threads", str(ARGS.threads), "--mem-steps",
           str(ARGS.mem_steps), "--child"]
    return {s: _common.memory_in_children(cmd + [s, name], ARGS.mem_repeats, f"memory {s} {name}") for s in sides}


def memory_row(r):
    n, t = r["memory"].get("npnet"), r["memory"].get("torch")
    return [r["model"], "train", _common.fmt(n and n["delta_mb"]), _common.fmt(n and n["traced_mb"]),
            _common.fmt(t and t["delta_mb"]), _common.fmt(n["delta_mb"] / t["delta_mb"], 2) if n and t else "-"]


def report(results):
    headers = ["model", "pass", "npnet ms", "PyTorch ms", "npnet / PyTorch", "other load"]
    rows = []
    for r in results:
        for mode in ("train", "infer"):
            n, t = r[mode]["npnet"], r[mode].get("torch")
            rows.append([r["model"], mode, _common.fmt(n), _common.fmt(t) if t else "-",
                         _common.fmt(n / t, 2) if t else "-", f"{r[mode]['other_load']:.0%}"])
    _common.print_table(headers, rows, markdown=ARGS.markdown)
    mem = [memory_row(r) for r in results if r.get("memory")]
    if mem:
        print("\nPeak memory of a train step: growth of peak RSS over the warmed-up process, MB (see the docstring)\n")
        _common.print_table(["model", "pass", "npnet MB", "npnet traced MB", "PyTorch MB", "npnet / PyTorch"], mem,
                            markdown=ARGS.markdown)
    for r in results:
        if r["check"]:
            c = r["check"]
            print(f"{r['model']}: against PyTorch, logits {c['logits']:.1e}, loss {c['loss']:.1e}, "
                  f"weight gradients {c['grads']:.1e} (relative)")


def main():
    if ARGS.child:
        return memory_child(*ARGS.child)
    print(_common.machine_state(), file=sys.stderr)
    results = [time_model(name) for name in ARGS.models]
    if not ARGS.no_memory:
        for r in results:
            r["memory"] = measure_memory(r["model"])
            print(f"  {r['model']} train memory: " + ", ".join(f"{s} {m['delta_mb']:.1f} MB"
                                                          for s, m in r["memory"].items() if m),
                  file=sys.stderr, flush=True)
    report(results)
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
