"""A process-wide on/off setting (reference mode): shared plumbing, no npnet imports."""
import contextlib


class Switch:
    """``switch.on`` is the setting; ``set(flag)`` changes it and returns the previous one;
    ``with switch.turned(flag):`` holds it for a block (nests, restores on exit)."""

    def __init__(self, on):
        self.on = bool(on)

    def set(self, flag):
        previous, self.on = self.on, bool(flag)
        return previous

    @contextlib.contextmanager
    def turned(self, flag):
        previous = self.set(flag)
        try:
            yield
        finally:
            self.set(previous)
