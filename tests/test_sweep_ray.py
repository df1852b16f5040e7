"""``npnet sweep --address``: a real local Ray head on 127.0.0.1, started inside the test; the
2x2 grid of test_sweep gives the same metrics as on the local backend (same seeds, one thread
per trial). All traffic stays on loopback: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes Ray use
127.0.0.1 as the node address; RAY_USAGE_STATS_ENABLED=0 keeps usage reports off. The head and
the driver share a token of their own (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN): Ray would otherwise
decide on authentication from whether ~/.ray/auth_token exists, differently for the two."""
import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from test_sweep import ROOT, local_grid, rows, write_sweep  # noqa: F401  (local_grid: a fixture)

# Ray reads its environment when it is imported, so it runs in processes started with it set
pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="the Ray backend needs ray (pip install -e '.[ray]')")

LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """``ray start --head --block`` on 127.0.0.1 in its own process group; yields its address
    and stops exactly that head (its process group) afterwards."""
    ray_cli = shutil.which("ray") or pytest.skip("the `ray` command is not on PATH")
    port, temp = free_port(), tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short socket paths
    env = dict(os.environ, PYTHONPATH=ROOT, MPLBACKEND="Agg", **LOOPBACK)
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port",
         str(port), "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
         "--temp-dir", temp], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 600  # only a bound on a hung start: it ends once the port opens
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert head.poll() is None, "ray start --head exited"
            assert time.time() < deadline, f"the Ray head opened no port {port} in 600 s"
            time.sleep(0.5)
        yield address
    finally:  # this head's own process group only; Ray drains for 30 s on SIGTERM: kill
        signal_group(head.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=5)
        signal_group(head.pid, signal.SIGKILL)  # what of the group is left after the head
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


def signal_group(pgid, sig):
    """Sends ``sig`` to the process group ``pgid``; a group whose processes have all exited
    already (the head may end on SIGTERM, with its children) is no error."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def sweep_on_ray(path, address, out, *more, timeout=600):
    env = dict(os.environ, PYTHONPATH=ROOT, MPLBACKEND="Agg", **LOOPBACK)
    return subprocess.run(
        [sys.executable, "-m", "npnet", "sweep", path, "--address", address,
         "--threads-per-trial", "1", "--workers", "2", "--out", str(out), "--quiet", *more],
        env=env, capture_output=True, text=True, timeout=timeout)


def test_ray_backend_gives_the_local_backends_metrics(local_grid, ray_head, tmp_path):  # noqa: F811
    path, _, local_folder, _ = local_grid
    driver = sweep_on_ray(path, ray_head, tmp_path / "out")
    assert driver.returncode == 0, driver.stderr
    ray_rows, local_rows = rows(tmp_path / "out" / "grid"), rows(local_folder)
    keep = [k for k in local_rows[0] if k.startswith(("test_", "balanced", "best_val", "acc_"))]
    assert len(ray_rows) == 4 and all(r["status"] == "done" for r in ray_rows)
    assert [{k: r[k] for k in keep} for r in ray_rows] == [{k: r[k] for k in keep}
                                                          for r in local_rows]


def test_asha_on_ray_stops_or_finishes_every_trial(local_grid, ray_head, tmp_path):  # noqa: F811
    """ASHA's actor and the trials' reports: 2 epochs, a rung after the first; which trials stop
    depends on the order they reach it, so only the outcome kinds are checked."""
    path, *_ = local_grid
    driver = sweep_on_ray(path, ray_head, tmp_path / "out", "--asha", "1",
                          "--set", "train.epochs=2")
    assert driver.returncode == 0, driver.stderr
    table = rows(tmp_path / "out" / "grid")
    assert {r["status"] for r in table} <= {"done", "stopped"} and len(table) == 4
    assert all(r["epochs"] == ("2" if r["status"] == "done" else "1") for r in table)
    assert any(r["status"] == "done" for r in table)


def test_no_head_at_the_address_fails_fast_and_writes_nothing(tmp_path):
    """Without a check of its own, ray.init retries for minutes, repeating its warnings."""
    path = write_sweep(tmp_path)
    address = f"127.0.0.1:{free_port()}"  # bound and closed again: nobody listens there
    try:  # a bound on a hang only; npnet's own check (its message, below) is what fails fast
        driver = sweep_on_ray(path, address, tmp_path / "out", timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail(f"npnet sweep --address {address} (nothing listening) ran for 600 s")
    assert driver.returncode == 2, driver.stderr
    (line,) = driver.stderr.strip().splitlines()  # ray.init's retries would repeat warnings
    assert line.startswith(f"npnet sweep: no Ray head at {address}") and "ray start --head" in line
    assert not (tmp_path / "out").exists()
