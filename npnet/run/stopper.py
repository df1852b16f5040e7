"""Ctrl-C in a sweep's driver: the first asks the running trials to stop cleanly, the second
stops them at once. The backends ask ``stopping`` / ``killing`` and call ``forward``."""
import contextlib
import os
import signal
import sys
import threading


class Stopper:
    """Counts Ctrl-C presses while ``installed()``; ``forward(processes)`` passes them on: one
    SIGINT to each running worker after the first press (a worker's Trainer then finishes its
    step and writes ``last.npz``), a kill after the second."""

    def __init__(self, log=None):
        self.presses = 0
        self._told = set()
        self._log = log or (lambda text: print(text, file=sys.stderr, flush=True))

    @property
    def stopping(self):
        return self.presses >= 1

    @property
    def killing(self):
        return self.presses >= 2

    def press(self):
        self.presses += 1
        self._log("\nCtrl-C: no new trials; the running ones save a checkpoint and stop (press "
                  "again to kill them)" if self.presses == 1 else
                  "\nCtrl-C again: killing the running trials")

    @contextlib.contextmanager
    def installed(self):
        """While inside, SIGINT calls ``press`` (main thread only: Python delivers signals there)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, lambda signum, frame: self.press())
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    def forward(self, processes):
        """Passes the presses on to local worker ``processes`` (``multiprocessing.Process``)."""
        if not self.stopping:
            return
        for proc in processes:
            if proc.pid is None or not proc.is_alive():
                continue
            if self.killing:
                proc.kill()
            elif proc.pid not in self._told:
                self._told.add(proc.pid)
                os.kill(proc.pid, signal.SIGINT)
