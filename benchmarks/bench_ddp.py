"""Data-parallel training over MPI: what communication costs, here and (modelled) on a cluster.

    python benchmarks/bench_ddp.py [--models resnet32 cnn-small mlp] [--steps 6] [--rounds 3]
        [--nprocs 1 2] [--markdown] [--json FILE]

For each N in ``--nprocs`` the script starts itself under ``mpiexec -n N -host localhost`` (1
thread per rank: Numba, BLAS) and, per model, times with the same global batch (128 images of
3x32x32; mlp 500 rows of 3072), in alternating blocks, every rank the same number of steps:

* ``compute``: ``train_step`` of the plain model on this rank's slice (B / N images), no
  communication at all;
* ``blocking``: ``train_step`` of ``DistributedDataParallel(model)``: the same, then the gradients
  summed over the ranks by blocking allreduces after the backward (the default);
* ``overlap``: ``DistributedDataParallel(model, overlap=True)``: bucketed non-blocking allreduces
  started from backward hooks while the earlier layers still compute.

A step's time is the slowest rank's (each rank's time, max-reduced). ``exposed`` = step - compute
(the communication the step waited for); ``comm alone`` = the gradient allreduce timed by itself
(packed buffers, after a barrier); ``overlapped`` = comm alone - exposed (>= 0): communication
hidden behind the backward. Then the allreduce's latency (8 bytes) and bandwidth (16 MiB; the ring
model's "bus" bandwidth ``2 (N-1)/N x bytes / (t - latency)``) are measured on N = 2.

The cluster table models one node per rank, weak scaling (each node its own batch of 128, the
measured 1-process compute time), ring allreduce of the gradients after the backward:
``t_comm = 2 (P-1)/P x gradient bytes / bandwidth + latency x log2 P`` at 10 and 25 Gbit/s with an
assumed 25 us network latency per step of the ring (not measured here: one machine).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import _common

SPECS = {"resnet32": (128, (3, 32, 32)), "cnn-small": (128, (3, 32, 32)), "mlp": (500, (3, 32, 32))}
NET_LATENCY = 25e-6  # seconds per allreduce step on a cluster network: an assumption, see above


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(SPECS))
    ap.add_argument("--steps", type=int, default=6, help="timed steps per side and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--json", help="write the measurements to this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # the JSON file a rank 0 writes
    return ap.parse_args(argv)


# -- inside the ranks ------------------------------------------------------------------------------
def worker(args):
    _common.pin_threads(1)
    _common.load_frameworks(1, want_torch=False)
    import numpy as np
    from npnet import distributed as dist
    dist.init()
    out = {"nproc": dist.world_size(), "models": {}}
    for name in args.models:
        out["models"][name] = time_model(name, args, np, dist)
    if dist.world_size() > 1:
        out["allreduce"] = allreduce_speed(np, dist)
    if dist.rank() == 0:
        with open(args.worker, "w") as f:
            json.dump(out, f)


def time_model(name, args, np, dist):
    from npnet import losses, optim
    from npnet.models import build_model
    from npnet.train import train_step
    batch, shape = SPECS[name]
    model = build_model(name, shape, 10, rng=0)
    lo, hi = batch * dist.rank() // dist.world_size(), batch * (dist.rank() + 1) // dist.world_size()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, *shape)).astype(np.float32)[lo:hi]
    y = rng.integers(0, 10, size=batch)[lo:hi]
    opt, loss = optim.SGD(model.parameters(), 1e-3, momentum=0.9), losses.CrossEntropyLoss()
    sides = {"compute": model}
    if dist.world_size() > 1:
        sides["blocking"] = dist.DistributedDataParallel(model)
        over = dist.DistributedDataParallel(model, overlap=True)
        over.remove_hooks()  # put on again only while its side is timed
        sides["overlap"] = over
    times = {k: [] for k in sides}
    for _ in range(2):  # warm-up: compilation, first touch
        for k, m in sides.items():
            timed_steps(k, m, over if "overlap" in sides else None, opt, loss, x, y, 1, dist)
    for _ in range(args.rounds):
        for k, m in sides.items():
            times[k] += timed_steps(k, m, over if "overlap" in sides else None, opt, loss, x, y,
                                    args.steps, dist)
    row = {k: float(np.median(v)) for k, v in times.items()}
    row["grad_bytes"] = int(sum(p.grad.nbytes for p in model.parameters()))
    if dist.world_size() > 1:
        row["comm_alone"] = comm_alone(model, args.steps * args.rounds, np, dist)
    return row


def timed_steps(kind, model, over, opt, loss, x, y, n, dist):
    """``n`` step times of one side, each the slowest rank's."""
    from npnet.train import train_step
    if kind == "overlap":
        over.install_hooks()
    out = []
    for _ in range(n):
        dist_barrier(dist)
        t = time.perf_counter()
        train_step(model, loss, opt, x, y)
        out.append(slowest(time.perf_counter() - t, dist))
    if kind == "overlap":
        over.remove_hooks()
    return out


def comm_alone(model, n, np, dist):
    """Median seconds of the gradient allreduce by itself (blocking, packed), the slowest rank's."""
    from npnet.distributed.buckets import Reducer, make_buckets
    from npnet.distributed.world import comm, mpi
    _, buckets = make_buckets(model, float("inf"))
    reducer = Reducer(comm(), mpi(), buckets, overlap=False)
    out = []
    for _ in range(n + 2):
        dist_barrier(dist)
        t = time.perf_counter()
        reducer.finish()
        out.append(slowest(time.perf_counter() - t, dist))
    return float(np.median(out[2:]))


def allreduce_speed(np, dist):
    """Latency (8 bytes) and bandwidth (16 MiB) of an in-place float32 allreduce."""
    from npnet.distributed.world import comm, mpi
    result = {}
    for label, count, reps in (("latency_s", 2, 200), ("big_s", 4 * 2 ** 20, 10)):
        buf = np.ones(count, np.float32)
        ts = []
        for _ in range(reps):
            dist_barrier(dist)
            t = time.perf_counter()
            comm().Allreduce(mpi().IN_PLACE, buf, op=mpi().SUM)
            ts.append(slowest(time.perf_counter() - t, dist))
        result[label] = float(np.median(ts))
    n, size = dist.world_size(), 16 * 2 ** 20
    result["bytes"] = size
    result["algo_GBps"] = size / result["big_s"] / 1e9
    result["bus_GBps"] = 2 * (n - 1) / n * size / max(result["big_s"] - result["latency_s"], 1e-12) / 1e9
    return result


def dist_barrier(dist):
    if dist.world_size() > 1:
        from npnet.distributed.world import comm
        comm().Barrier()


def slowest(seconds, dist):
    if dist.world_size() == 1:
        return seconds
    from npnet.distributed.world import comm, mpi
    return comm().allreduce(seconds, op=mpi().MAX)


# -- the driver ------------------------------------------------------------------------------------
def run_ranks(args, nproc, path):
    from npnet.run.launch import find_mpiexec
    cmd = [find_mpiexec(), "-n", str(nproc), "-host", "localhost", sys.executable,
           os.path.abspath(__file__), "--worker", path, "--models", *args.models,
           "--steps", str(args.steps), "--rounds", str(args.rounds)]
    env = dict(os.environ, NPNET_LAUNCHER="1", PYTHONPATH=_common.REPO)
    subprocess.run(cmd, check=True, env=env)
    with open(path) as f:
        return json.load(f)


def tables(results):
    """(measured table rows, allreduce line, modelled table rows)."""
    one = {r["nproc"]: r for r in results}
    rows = []
    for n, r in sorted(one.items()):
        for name, m in r["models"].items():
            ref = one[1]["models"][name]["compute"] if 1 in one else None
            for side in ("compute", "blocking", "overlap"):
                if side not in m:
                    continue
                exposed = m[side] - m["compute"] if side != "compute" else 0.0
                hidden = max(0.0, m.get("comm_alone", 0.0) - exposed) if side != "compute" else 0.0
                speed = f"{ref / m[side]:.2f}x" if ref else ""
                rows.append([name, str(n), side, f"{m[side] * 1e3:.1f}", f"{exposed * 1e3:.1f}",
                             f"{100 * exposed / m[side]:.1f}%", f"{hidden * 1e3:.1f}",
                             f"{m.get('comm_alone', 0) * 1e3:.1f}", speed])
    ar = next((r["allreduce"] for r in results if "allreduce" in r), None)
    model_rows = []
    if 1 in one:
        for name, m in one[1]["models"].items():
            for p in (4, 8, 16, 32, 64):
                cells = [name, str(p), f"{m['compute'] * 1e3:.0f}"]
                for gbit in (10, 25):
                    t = 2 * (p - 1) / p * m["grad_bytes"] / (gbit * 1e9 / 8) + NET_LATENCY * math.log2(p)
                    cells += [f"{t * 1e3:.2f}", f"{100 * m['compute'] / (m['compute'] + t):.1f}%"]
                model_rows.append(cells)
    return rows, ar, model_rows


def markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main():
    args = parse_args()
    if args.worker:
        return worker(args)
    state = _common.machine_state()
    results = [run_ranks(args, n, f"/tmp/bench_ddp_{os.getpid()}_{n}.json") for n in args.nprocs]
    rows, ar, model_rows = tables(results)
    print(f"# bench_ddp: {_cpu()}; 1 thread per rank; {state}\n")
    print(markdown(["model", "N", "side", "step ms", "exposed comm ms", "exposed share",
                    "overlapped comm ms", "comm alone ms", "speed vs N=1 compute"], rows))
    if ar:
        print(f"\nallreduce on 2 ranks (shared memory): latency {ar['latency_s'] * 1e6:.1f} us "
              f"(8 bytes); 16 MiB in {ar['big_s'] * 1e3:.2f} ms: {ar['algo_GBps']:.2f} GB/s "
              f"algorithm bandwidth, {ar['bus_GBps']:.2f} GB/s bus bandwidth (ring model)")
    print("\nmodelled cluster, weak scaling (batch 128 per node; mlp 500), ring allreduce after the "
          f"backward, network latency {NET_LATENCY * 1e6:.0f} us (assumed):\n")
    print(markdown(["model", "nodes", "compute ms", "comm ms 10 Gbit/s", "efficiency 10",
                    "comm ms 25 Gbit/s", "efficiency 25"], model_rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"state": state, "cpu": _cpu(), "results": results}, f, indent=1)


def _cpu():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


if __name__ == "__main__":
    main()
