"""The local backend of ``npnet sweep``: at most ``workers`` trials at a time, each in a fresh
process pinned to ``threads`` threads.

One process per trial (started with ``spawn``, never ``fork``: Numba's and BLAS's threads do not
survive a fork) keeps trials apart: the thread-count variables are in its environment before it
imports NumPy, its memory goes back when it ends, and a trial that crashes the interpreter is
recorded as failed while the others go on. Trial, result and each epoch's line travel as JSON
over a pipe.

Ctrl-C: the worker processes run in their own process group, so a Ctrl-C in the terminal reaches
the driver only; the driver then asks every running trial to stop (one SIGINT: the Trainer
finishes its step and writes ``last.npz``), starts no new one, and waits for their results. A
second Ctrl-C kills the workers. Each worker also gets SIGINT if the driver dies (Linux).
"""
import json
import multiprocessing
import os
import signal
import sys
from multiprocessing.connection import wait

from .threads import thread_env


def run_local(specs, workers, on_result, stopper, on_progress=None):
    """Runs every trial spec (dicts for ``trial.run_trial``), ``workers`` at a time; calls
    ``on_result(result)`` in the driver as each one ends, and ``on_progress(trial id, line)``
    (if given) with each epoch's line of a running trial. ``stopper`` (a ``Stopper``) says when
    to stop starting trials and to interrupt the running ones."""
    ctx = multiprocessing.get_context("spawn")
    pending, running = list(specs), {}  # connection -> (process, spec)
    while pending or running:
        while pending and len(running) < workers and not stopper.stopping:
            spec = pending.pop(0)
            conn, proc = _start(ctx, spec)
            running[conn] = (proc, spec)
        stopper.forward([proc for proc, _ in running.values()])
        ready = wait(list(running) + [p.sentinel for p, _ in running.values()], timeout=0.5)
        for conn in [c for c in running if c in ready or running[c][0].sentinel in ready]:
            result = _poll(conn, *running[conn], stopper.killing, on_progress)
            if result is not None:
                running.pop(conn)
                on_result(result)
        if stopper.stopping and not running:
            break


def _start(ctx, spec):
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(send, json.dumps(spec)), daemon=True,
                       name=f"npnet-trial-{spec['id']}")
    saved = {k: os.environ.get(k) for k in thread_env(1)}
    os.environ.update(thread_env(spec["threads"]))  # inherited by the child at start
    try:
        proc.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    send.close()
    return receive, proc


def _poll(conn, proc, spec, killed, on_progress):
    """Passes on the progress lines the worker sent; its result once it ended (a failed, or
    with ``killed`` interrupted, one if it ended without sending a result), else None."""
    while conn.poll():
        message = _read(conn)
        if message is None or message.get("kind") != "progress":
            return _finish(conn, proc, spec, message, killed)
        if on_progress is not None:
            on_progress(spec["id"], message["line"])
    return None if proc.is_alive() else _finish(conn, proc, spec, None, killed)


def _read(conn):
    try:
        return json.loads(conn.recv_bytes().decode("utf-8"))
    except (EOFError, OSError):  # the worker ended: nothing more will come
        return None


def _finish(conn, proc, spec, result, killed):
    conn.close()
    if result is None:
        proc.join(timeout=5)
        why = ("killed by a second Ctrl-C" if killed else "killed, out of memory or crashed")
        result = {"id": spec["id"], "status": "interrupted" if killed else "failed",
                  "run_dir": spec["run_dir"], "metrics": None, "history": None,
                  "traceback": None, "seconds": None,
                  "error": f"the worker process ended without a result (exit code "
                           f"{proc.exitcode}: {why}); rerun the sweep to resume this trial "
                           "from its last checkpoint"}
    proc.join(timeout=30)
    return result


def _worker(send, spec_json):
    """In the worker process: run one trial, sending each epoch's line and then its result
    back as JSON."""
    os.setpgrp()  # a terminal Ctrl-C goes to the driver, which forwards it once
    _signal_when_parent_dies(signal.SIGINT)
    from ..train import EpochLogger
    from .trial import run_trial

    def progress(line):
        send.send_bytes(json.dumps({"kind": "progress", "line": line}).encode("utf-8"))
    result = run_trial(json.loads(spec_json), [EpochLogger(progress)])
    send.send_bytes(json.dumps(result).encode("utf-8"))
    send.close()


def _signal_when_parent_dies(sig):
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
