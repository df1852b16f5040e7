"""Per-layer benchmark: every distinct layer of the zoo models, forward and backward, npnet vs PyTorch.

    python benchmarks/bench_layers.py [--models cnn-bn resnet32 cnn-small mlp] [--only Conv2d]
        [--steps 5] [--warmup 2] [--threads N] [--markdown] [--no-torch]

The cases are read off the models themselves: each model runs one forward and every leaf layer
records its input shape (``_common.record_layer_inputs``); layers with the same configuration and
input shape are one case, and "uses" says how often it runs per step of that model (so that
``uses * (fwd + bwd)`` summed over a model's rows approximates its train step). Batch as in
bench_models: 128 for the conv models, 500 for the MLP. Extra rows: CrossEntropyLoss forward +
backward on the logits, and the optimizer (zero_grad + SGD momentum step) over each model's parameters.

npnet: ``layer(x)`` in train mode, then ``layer.backward(dout)`` on the cache of that forward.
PyTorch: the twin layer (same weights, ``_twin.py``) with autograd recording; backward is
``torch.autograd.grad(y, [x, *params], dout, retain_graph=True)``: the same gradients npnet computes
(dx always, also for a first layer, where a model would not need it). float32, random data.
"""
import argparse
import os
import sys

import _common


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["cnn-bn", "resnet32", "cnn-small", "mlp"])
    ap.add_argument("--only", nargs="+", default=None,
                    help="keep cases whose label contains one of these strings (e.g. Conv2d BatchNorm)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                    help="first wait up to this long for other processes to leave the CPUs idle")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    args.models = [m for item in args.models for m in item.split(",") if m]
    return args


ARGS = parse_args()
_common.pin_threads(ARGS.threads)
torch = _common.load_frameworks(ARGS.threads, want_torch=not ARGS.no_torch)

import numpy as np  # noqa: E402

from npnet import losses, nn, optim  # noqa: E402
from npnet.models import build_model  # noqa: E402

if torch is not None:
    import _twin  # noqa: E402

BATCH = {"mlp": 500}             # default 128
SKIP = (nn.Flatten, nn.Identity)  # reshape only: nothing to time


def label(m, shape):
    """A short description of layer ``m`` on input ``shape`` (with batch)."""
    dims = "x".join(map(str, shape))
    if isinstance(m, nn.Conv2d):
        k, s, p = m.kernel_size, m.stride, m.padding
        desc = f"Conv2d({m.in_channels}->{m.out_channels}, {k[0]}x{k[1]}, s{s[0]}, p{p[0]}" \
               f"{'' if m.bias is not None else ', no bias'})"
    elif isinstance(m, nn.Linear):
        desc = f"Linear({m.in_features}->{m.out_features})"
    elif isinstance(m, nn.BatchNorm2d):
        desc = f"BatchNorm2d({m.num_features})"
    elif isinstance(m, nn.MaxPool2d):
        desc = f"MaxPool2d({m.kernel_size[0]})"
    else:
        extra = m.extra_repr()
        desc = f"{type(m).__name__}({extra})"
    return f"{desc} on {dims}"


def collect_cases(models):
    """[(model name, label, module, input shape, uses)] for every distinct leaf layer of the models."""
    cases = {}
    for name in models:
        model = build_model(name, (3, 32, 32), 10, rng=0)
        batch = BATCH.get(name, 128)
        x = np.zeros((1, 3, 32, 32), dtype=np.float32)
        for m, shape in _common.record_layer_inputs(model, x):
            if isinstance(m, SKIP):
                continue
            full = (batch,) + tuple(shape[1:])
            key = (name, label(m, full))
            if key in cases:
                cases[key][4] += 1
            else:
                cases[key] = [name, key[1], m, full, 1]
    return [tuple(c) for c in cases.values()]


def layer_fns(m, shape, rng):
    """{'fwd': {side: fn}, 'bwd': {side: fn}} for one layer on random input of ``shape``."""
    m.train()
    # the twin is made before npnet's first forward: npnet's BatchNorm drops running_mean/var from
    # its state_dict once a training forward has updated them (see the README's findings)
    tm = _twin.load_npnet_state(_twin.build_twin(m), m).train() if torch is not None else None
    x = rng.standard_normal(shape, dtype=np.float32)
    y = m(x)
    dout = rng.standard_normal(y.shape, dtype=np.float32)
    cache = m.cache

    def np_bwd():
        m.cache = cache
        return m.backward(dout)
    fns = {"fwd": {"npnet": lambda: m(x)}, "bwd": {"npnet": np_bwd}}
    m.cache = cache                       # m(x) in the lambda may run later; backward reads this one
    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_(True)
        ty = tm(tx)
        inputs = [tx] + [p for p in tm.parameters()]
        tdout = torch.from_numpy(dout)
        fns["fwd"]["torch"] = lambda: tm(tx)
        fns["bwd"]["torch"] = lambda: torch.autograd.grad(ty, inputs, tdout, retain_graph=True)
    return fns


def loss_fns(batch, rng):
    logits = rng.standard_normal((batch, 10), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    crit = losses.CrossEntropyLoss()

    def np_loss():
        crit(logits, y)
        return crit.backward()
    fns = {"npnet": np_loss}
    if torch is not None:
        tl = torch.from_numpy(logits).requires_grad_(True)
        ty = torch.from_numpy(y.astype(np.int64))
        fns["torch"] = lambda: torch.autograd.grad(torch.nn.functional.cross_entropy(tl, ty), [tl])
    return fns


def optimizer_fns(model):
    """zero_grad + SGD(momentum=0.9).step over the model's parameters, with fixed random gradients."""
    rng = np.random.default_rng(1)
    params = list(model.parameters())
    grads = [rng.standard_normal(p.data.shape, dtype=np.float32) * np.float32(1e-3) for p in params]
    opt = optim.SGD(params, lr=1e-3, momentum=0.9)

    def np_step():
        opt.zero_grad()
        for p, g in zip(params, grads):
            p.grad += g                   # what backward does: accumulate
        opt.step()
    fns = {"npnet": np_step}
    if torch is not None:
        tparams = [torch.from_numpy(p.data.copy()).requires_grad_(True) for p in params]
        tgrads = [torch.from_numpy(g) for g in grads]
        topt = torch.optim.SGD(tparams, lr=1e-3, momentum=0.9)

        def t_step():
            topt.zero_grad()
            for p, g in zip(tparams, tgrads):
                p.grad = g.clone()        # autograd allocates a fresh grad after zero_grad(set_to_none)
            topt.step()
        fns["torch"] = t_step
    return fns


def row(totals, name, case_label, uses, pass_name, times, load, flops=None):
    """One table row; also adds uses * time to the model's totals."""
    n = _common.median(times["npnet"]) * 1e3
    t = _common.median(times["torch"]) * 1e3 if "torch" in times else None
    gf = f"{flops / n / 1e6:.0f}" if flops else "-"
    tgf = f"{flops / t / 1e6:.0f}" if flops and t else "-"
    tot = totals.setdefault(name, {"npnet": 0.0, "torch": 0.0 if t is not None else None})
    tot["npnet"] += uses * n
    if t is not None:
        tot["torch"] += uses * t
    return [name, case_label, uses, pass_name, f"{n:.2f}", _common.fmt(t, 2), gf, tgf,
            f"{n / t:.2f}" if t else "-", "-" if load is None else f"{load * 100:.0f}%"]


def main():
    machine = _common.machine_state(ARGS.wait_quiet)
    rng = np.random.default_rng(0)
    rows, totals = [], {}
    for name, case_label, m, shape, uses in collect_cases(ARGS.models):
        if ARGS.only and not any(s in case_label for s in ARGS.only):
            continue
        fns = layer_fns(m, shape, rng)
        macs = _common.layer_macs(m, shape[1:]) * shape[0]
        first_conv = isinstance(m, nn.Conv2d) and m.in_channels == 3
        for pass_name, sides in fns.items():
            with _common.OtherLoad() as load:
                times = _common.time_interleaved(sides, ARGS.steps, ARGS.warmup, ARGS.rounds)
            flops = 2 * macs * (1 if pass_name == "fwd" else 2) if macs else None
            rows.append(row(totals, name, case_label, uses, pass_name + (" (with dx)" if first_conv and
                            pass_name == "bwd" else ""), times, load.share, flops))
            print("  " + "  ".join(map(str, rows[-1])), file=sys.stderr, flush=True)
        m.cache = None
    for name in ARGS.models:
        batch = BATCH.get(name, 128)
        extras = [("CrossEntropyLoss fwd+bwd on %dx10" % batch, "fwd+bwd", loss_fns(batch, rng))]
        model = build_model(name, (3, 32, 32), 10, rng=0)
        extras.append((f"zero_grad + SGD momentum step, {model.num_parameters():,} params", "step",
                       optimizer_fns(model)))
        for case_label, pass_name, sides in extras:
            if ARGS.only and not any(s in case_label for s in ARGS.only):
                continue
            with _common.OtherLoad() as load:
                times = _common.time_interleaved(sides, ARGS.steps, ARGS.warmup, ARGS.rounds)
            rows.append(row(totals, name, case_label, 1, pass_name, times, load.share))
            print("  " + "  ".join(map(str, rows[-1])), file=sys.stderr, flush=True)
    print()
    print(f"command: python benchmarks/bench_layers.py {' '.join(sys.argv[1:])}")
    print(f"threads: {_common.thread_report(torch)}")
    print(f"machine at start: {machine}")
    print()
    _common.print_table(["model", "layer on input", "uses", "pass", "npnet ms", "torch ms",
                         "npnet GFLOP/s", "torch GFLOP/s", "npnet/torch", "other load"], rows, ARGS.markdown)
    print("other load: share of the machine's CPU time used by other processes while that row was timed")
    print()
    print("Sum over each model's rows of uses x time (forward, backward, loss, optimizer), in ms: "
          "compare with the train step of bench_models.py")
    print()
    _common.print_table(["model", "npnet ms", "torch ms", "npnet/torch"],
                        [[k, f"{v['npnet']:.1f}", _common.fmt(v["torch"]),
                          f"{v['npnet'] / v['torch']:.2f}" if v["torch"] else "-"]
                         for k, v in totals.items()], ARGS.markdown)


if __name__ == "__main__":
    main()
