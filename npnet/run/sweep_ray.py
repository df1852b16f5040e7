"""The Ray backend of ``npnet sweep``: each trial is a Ray task asking for ``threads`` CPUs.

``address``: ``auto`` (the cluster this machine belongs to), ``HOST:PORT`` (a head started with
``ray start --head``) or ``ray://HOST:PORT`` (Ray Client); None starts a local Ray instance on
this machine's cores. Every node needs npnet installed (``pip install -e ".[ray]"``) and the
data the configs name. A task gets the thread-count variables in its runtime environment and
pins itself again at run time (``threads.pin_threads``).

Where things are: each trial writes its run folder (checkpoints, figures) on the node that runs
it, at the sweep folder's absolute path; its result (metrics, per-class accuracy, history) comes
back to the driver as JSON, and the driver alone writes the sweep folder, so the summary needs
no shared file system. A rerun resumes an interrupted trial from its ``last.npz`` only where
that file can be seen (the same node, or a shared file system); elsewhere it starts again.

``asha``: stop hopeless trials early (``asha.Asha``), through a small Ray actor that every
trial reports its validation accuracy to after each epoch. Off by default.
"""
import contextlib
import json
import os
import socket

from .experiment import RunError
from .threads import available_cores, thread_env


@contextlib.contextmanager
def ray_backend(address):
    """Connects to Ray (``address`` as above; None: a local instance), yields the function that
    runs the trial specs there (``run_ray``'s arguments but the first), and disconnects. Every
    failure to connect is a ``RunError`` raised on entry, before the sweep writes anything."""
    ray = _import_ray()
    _init(ray, address)
    try:
        yield lambda specs, **kw: run_ray(ray, specs, **kw)
    finally:
        ray.shutdown()


def run_ray(ray, specs, workers, threads, asha, on_result, stopper, on_progress=None):
    """Runs the trial specs as Ray tasks on the connected ``ray``, at most ``workers`` at a time
    (the cluster's free CPUs decide the rest); ``on_result`` gets each result in the driver.
    ``on_progress`` is not called: a task's epoch lines stay in its run folder's log.txt."""
    actor = _asha_actor(ray, specs, asha) if asha else None
    remote = ray.remote(_ray_trial).options(
        num_cpus=threads, max_retries=0, runtime_env={"env_vars": thread_env(threads)})
    _loop(ray, remote, specs, workers, actor, on_result, stopper)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RunError("--backend ray needs Ray: pip install -e \".[ray]\" (or pip install "
                       "'ray[default]'), or use the local backend") from None
    return ray


def _init(ray, address):
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports unless asked for
    options = {"logging_level": "WARNING", "log_to_driver": False}
    if address:
        _check_listening(address)
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=available_cores(), include_dashboard=False, **options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise RunError(f"cannot connect to {where}: {e}. Start a head with `ray start --head`, "
                       "give its address (HOST:PORT, ray://HOST:10001 or auto), or leave "
                       "--address out to start Ray locally. A head that uses token "
                       "authentication (it says so when it starts) needs RAY_AUTH_MODE=token "
                       "and its token (RAY_AUTH_TOKEN or ~/.ray/auth_token) here too") from None


def _check_listening(address, timeout=10.0):
    """``RunError`` at once when nothing accepts connections at the HOST:PORT of ``address``
    (plain or ``ray://``): ``ray.init`` would retry for minutes, repeating its warnings.
    ``auto`` and other forms are left to Ray."""
    client = address.startswith("ray://")
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        option = f"--ray-client-server-port {port}" if client else f"--port {port}"
        raise RunError(f"no Ray head at {address}: nothing accepts connections there "
                       f"({e.strerror or e}). Start one with `ray start --head {option}` on "
                       f"{host or 'that machine'} and pass its address, or leave --address out "
                       "to run the trials on a local Ray instance") from None


def _loop(ray, remote, specs, workers, actor, on_result, stopper):
    pending, running, cancelled = list(specs), {}, False
    while pending or running:
        while pending and len(running) < workers and not stopper.stopping:
            spec = pending.pop(0)
            running[remote.remote(json.dumps(spec), actor)] = spec
        if stopper.stopping and not cancelled:
            for ref in running:
                ray.cancel(ref, force=stopper.killing)
            cancelled = stopper.killing
        if not running:
            break
        ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
        for ref in ready:
            on_result(_get(ray, ref, running.pop(ref)))


def _get(ray, ref, spec):
    """The task's result, or a failed / interrupted result for a task that did not return."""
    from ray.exceptions import RayError, TaskCancelledError
    try:
        return json.loads(ray.get(ref))
    except TaskCancelledError:
        status, error = "interrupted", "stopped by Ctrl-C (Ray task cancelled)"
    except RayError as e:  # the worker died, the node was lost, ...
        status, error = "failed", f"Ray: {type(e).__name__}: {str(e).splitlines()[0]}"
    return {"id": spec["id"], "status": status, "error": error, "run_dir": spec["run_dir"],
            "metrics": None, "history": None, "traceback": None, "seconds": None}


def _ray_trial(spec_json, actor=None):
    """In a Ray worker: one trial; returns its result as JSON."""
    from .trial import run_trial
    spec = json.loads(spec_json)
    callbacks = [] if actor is None else [_asha_callback(actor, spec["id"])]
    return json.dumps(run_trial(spec, callbacks))


def _asha_actor(ray, specs, asha):
    from .asha import Asha
    missing = [s["id"] for s in specs if not s["config"]["data"]["val_fraction"] > 0]
    if missing:
        raise RunError(f"--asha decides on validation accuracy, but trial {missing[0]} has no "
                       "validation split: --set data.val_fraction=0.1")
    epochs = max(s["config"]["train"]["epochs"] for s in specs)
    return ray.remote(num_cpus=0)(Asha).remote(epochs, asha["grace_period"])


def _asha_callback(actor, trial_id):
    import ray

    from ..train import Callback

    class AshaReport(Callback):
        """After each epoch: report the validation accuracy; stop when ASHA says so."""

        def on_epoch_end(self, trainer, epoch, logs):
            if not ray.get(actor.report.remote(trial_id, epoch, logs.get("val_accuracy"))):
                trainer.stop_training = True

    return AshaReport()
