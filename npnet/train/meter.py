"""Meter: the running sums of one pass over a loader (loss, correct predictions, images, time).

The Trainer keeps one per epoch and one per evaluation; the progress bar and the per-epoch line
read it; a checkpoint written in the middle of an epoch stores it (``to_dict``), so that the
resumed epoch reports the same means as an uninterrupted one.
"""
import time


class Meter:
    """Sums over the batches seen so far: ``steps``, ``loss_sum`` (batch loss x batch size),
    ``correct`` (None once a batch had no class labels), ``seen`` (images) and ``time`` (seconds
    of work, including any before a resume)."""

    def __init__(self, steps=0, loss_sum=0.0, correct=0, seen=0, seconds=0.0):
        self.steps, self.loss_sum, self.correct, self.seen = int(steps), float(loss_sum), correct, int(seen)
        now = time.perf_counter()
        self._start = now - float(seconds)  # time counts on from a resumed epoch's
        # images since this process took over, and the time of the last batch: for images/s
        self._fresh, self._fresh_start, self._last = 0, now, now

    def update(self, loss, correct, n):
        """Adds one batch of ``n`` images with mean loss ``loss`` and ``correct`` right answers
        (None: the targets are not class labels)."""
        self.steps += 1
        self.loss_sum += float(loss) * n
        self.correct = None if correct is None or self.correct is None else self.correct + correct
        self.seen += n
        self._fresh += n
        self._last = time.perf_counter()

    @property
    def time(self):
        """Seconds since the pass began (counting any time before a resume), up to now."""
        return time.perf_counter() - self._start

    @property
    def loss(self):
        """The mean loss per image so far (0.0 before the first batch)."""
        return self.loss_sum / max(self.seen, 1)

    @property
    def accuracy(self):
        """The fraction of right answers so far, or None without class labels."""
        return None if self.correct is None else self.correct / max(self.seen, 1)

    @property
    def images_per_s(self):
        """Images per second from the start to the last batch (in this process: a resumed epoch
        starts counting anew), so that what follows the last batch (validation) does not count."""
        return self._fresh / max(self._last - self._fresh_start, 1e-9)

    # -- in a checkpoint (JSON) ------------------------------------------------------------------
    def to_dict(self):
        """The running sums as a JSON-ready dict (stored in checkpoints of an unfinished epoch)."""
        return {"step": self.steps, "loss": self.loss_sum, "correct": self.correct,
                "seen": self.seen, "time": self.time}

    @classmethod
    def from_dict(cls, d):
        """A Meter from ``to_dict()``'s output."""
        return cls(d["step"], d["loss"], d["correct"], d["seen"], d["time"])
