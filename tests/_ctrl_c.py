"""Sending Ctrl-C to a command a test started, once it is far enough: shared by the tests of
``npnet train`` and ``npnet sweep`` that stop a run on purpose."""
import signal
import time


def interrupt_when(proc, ready, what, seconds=900, poll=0.1, wait=300):
    """Sends SIGINT to ``proc`` once ``ready()`` is true and returns its ``(stdout, stderr)``.
    Fails if ``proc`` ends first or ``seconds`` pass (``what``: what was awaited, for the message:
    a bound on a hung start only); ``proc`` is killed if anything goes wrong."""
    try:
        deadline = time.time() + seconds
        while not ready():
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, f"{what} in {seconds} s"
            time.sleep(poll)
        proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=wait)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
