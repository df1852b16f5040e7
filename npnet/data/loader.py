"""DataLoader: mini-batches in a fresh, seeded order every epoch, resumable from a checkpoint."""
import numpy as np

from .._io import rng_state, set_rng_state


class DataLoader:
    """Iterate `(xb, yb)` over `x` (N, ...) and `y` (N,) in batches.

    batch_size=None gives one batch of everything (full-batch gradient descent). With shuffle=True,
    every `iter()` starts an epoch with a new permutation drawn from a Generator seeded by `seed`, so
    the sequence of epochs is the same for the same seed. `transform` is applied to each `xb`.
    Without shuffling, batches are read-only views of `x` (no copy); with it, fresh arrays.

    `state_dict()` returns a flat dict of numpy arrays (RNG state as a JSON string in a 0-d str
    array, epoch and position as int64) that `np.savez` stores without pickle; a loader given it by
    `load_state_dict()` replays the same batches, also when saved in the middle of an epoch.
    """

    def __init__(self, x, y, batch_size, shuffle=True, drop_last=False, transform=None, seed=0,
                 classes=None):
        if len(x) != len(y):
            raise ValueError(f"DataLoader: x has {len(x)} samples but y has {len(y)}")
        if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
            raise ValueError("DataLoader: batch_size must be a positive int or None, "
                             f"received {batch_size!r}")
        self.x, self.y = x, y
        self.batch_size = len(x) if batch_size is None else int(batch_size)
        self.shuffle, self.drop_last, self.transform = shuffle, drop_last, transform
        self.classes = None if classes is None else tuple(classes)
        self.rng = np.random.default_rng(seed)
        self.epoch = 0           # completed epochs
        self._position = 0       # batches handed out in the current epoch
        self._epoch_state = None  # RNG state before the current epoch's permutation
        self._resume = False
        self.shard = None  # (rank, world): see the class docstring

    @property
    def dataset_size(self):
        """The number of samples, ``len(x)``."""
        return len(self.x)

    def __len__(self):
        """Batches per epoch."""
        n, b = len(self.x), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self):
        start = self._position if self._resume else 0
        self._resume = False
        self._epoch_state = rng_state(self.rng)
        order = self.rng.permutation(len(self.x)) if self.shuffle else None  # (N,)
        self._position = start
        for i in range(start, len(self)):
            lo, hi = i * self.batch_size, min((i + 1) * self.batch_size, len(self.x))
            if self.shard is not None:
                lo, hi = _part(lo, hi, *self.shard)
            self._position = i + 1
            if self._position == len(self):
                self.epoch += 1
            if hi > lo:
                xb, yb = self._take(order, lo, hi)
                yield (self.transform(xb) if self.transform is not None else xb), yb

    def _take(self, order, lo, hi):
        if order is not None:
            idx = order[lo:hi]
            return self.x[idx], self.y[idx]
        xb, yb = self.x[lo:hi], self.y[lo:hi]
        if isinstance(xb, np.ndarray):  # views: make them read-only so the dataset stays intact
            xb, yb = xb.view(), yb.view()
            xb.flags.writeable = yb.flags.writeable = False
        return xb, yb

    def state_dict(self):
        """Flat dict of numpy arrays: RNG state, completed epochs, position in the current epoch."""
        mid_epoch = self._epoch_state is not None and 0 < self._position < len(self)
        state = {"rng": self._epoch_state if mid_epoch else rng_state(self.rng),
                 "epoch": np.array(self.epoch, np.int64),
                 "position": np.array(self._position if mid_epoch else 0, np.int64)}
        if self.transform is not None and hasattr(self.transform, "state_dict"):
            state.update({f"transform.{k}": v for k, v in self.transform.state_dict().items()})
        return state

    def load_state_dict(self, state):
        """Restore `state_dict()` output; the next `iter()` continues where the saved loader was."""
        set_rng_state(self.rng, state["rng"])
        self.epoch = int(state["epoch"])
        self._position = int(state["position"])
        self._resume = self._position > 0
        # a loader restored mid-epoch reports that same pending state until it is iterated
        self._epoch_state = rng_state(self.rng) if self._resume else None
        own = {k[len("transform."):]: v for k, v in state.items() if k.startswith("transform.")}
        if own and hasattr(self.transform, "load_state_dict"):
            self.transform.load_state_dict(own)

    def __repr__(self):
        return (f"DataLoader(dataset_size={self.dataset_size}, batch_size={self.batch_size}, "
                f"batches={len(self)}, shuffle={self.shuffle}, drop_last={self.drop_last})")


def _part(lo, hi, rank, world):
    """Rank ``rank``'s rows of the batch ``[lo, hi)`` split over ``world`` ranks (sizes differ by
    at most one)."""
    n = hi - lo
    return lo + n * rank // world, lo + n * (rank + 1) // world
