"""Batch transforms: each is called on a whole batch `(N, C, H, W)`, with no loop over images.

ToFloat and Normalize return float32. RandomCrop, RandomHorizontalFlip and Flatten move pixels and
keep the dtype, so they can run on uint8 before the conversion. Random transforms own a numpy
Generator (`seed=` or `rng=`) and expose it through `state_dict()` / `load_state_dict()`.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._io import rng_state, set_rng_state
from ..init import get_rng

#: per-channel mean and std of the Fashion-MNIST training pixels on [0, 1] (for ``Normalize``).
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
# Over all pixels of the 60,000 training images on [0, 1] (Debian's copy): mean 0.286041, std 0.353024;
# tests/test_data_loaders.py::test_real_fashion_mnist_from_debian re-checks them when the files exist.
#: per-channel (R, G, B) mean and std of the CIFAR-10 training pixels on [0, 1].
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
# The widely published per-channel (R, G, B) mean and std of the 50,000 CIFAR-10 training images on
# [0, 1], taken over all pixels; not recomputed here (CIFAR-10 cannot be downloaded on this machine).
# The triple (0.2023, 0.1994, 0.2010) that also circulates is not the per-pixel std of the training set.
STATS = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD),
         "fashion-mnist": (FASHION_MNIST_MEAN, FASHION_MNIST_STD),
         "fashion-mnist-mini": (FASHION_MNIST_MEAN, FASHION_MNIST_STD)}


def _check_batch(x, who):
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        got = x.shape if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{who}: expected a batch of shape (N, C, H, W), received {got}")
    return x.shape


class Transform:
    """Base class: a callable on batches, with (empty) state for checkpoints."""

    def __call__(self, x):
        raise NotImplementedError

    def state_dict(self):
        """The transform's state as a flat ``str -> array`` dict (a random generator's state), for
        checkpoints; empty for a transform without state."""
        return {}

    def load_state_dict(self, state):
        """Restores what ``state_dict`` returned."""
        pass

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "rng")
        return f"{type(self).__name__}({args})"


class RandomTransform(Transform):
    """A transform that draws from a Generator: ``rng`` (a Generator), else a new one seeded with
    ``seed``, else npnet's default generator (see ``npnet.manual_seed``)."""

    def __init__(self, seed=None, rng=None):
        if seed is not None and rng is not None:
            raise ValueError(f"{type(self).__name__}: pass either seed or rng, not both")
        self.rng = get_rng(seed if rng is None else rng)

    def state_dict(self):
        return {"rng": rng_state(self.rng)}

    def load_state_dict(self, state):
        set_rng_state(self.rng, state["rng"])


class ToFloat(Transform):
    """uint8 in [0, 255] -> float32 in [0, 1]; float input is only cast to float32."""

    def __call__(self, x):
        if x.dtype == np.uint8:
            return np.divide(x, np.float32(255), dtype=np.float32)
        return x.astype(np.float32, copy=False)


class Normalize(Transform):
    """Per channel `(x - mean[c]) / std[c]`, float32 out.

    uint8 input is first scaled to [0, 1] (the statistics are on that scale); float input is
    assumed to be in [0, 1] already. `len(mean) == len(std) == C`, no silent broadcast.
    """

    def __init__(self, mean, std):
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != len(self.std) or min(self.std, default=0) <= 0:
            raise ValueError(f"Normalize: need one positive std per mean, received mean={self.mean}, "
                             f"std={self.std}")

    @classmethod
    def for_dataset(cls, name):
        """Normalize with the training statistics of "cifar10" or "fashion-mnist"."""
        if name not in STATS:
            raise ValueError(f"no statistics for {name!r}; known: {sorted(STATS)}")
        return cls(*STATS[name])

    def __call__(self, x):
        C = _check_batch(x, "Normalize")[1]
        if C != len(self.mean):
            raise ValueError(f"Normalize: batch has {C} channels, mean/std have {len(self.mean)}")
        mean = np.array(self.mean, np.float32).reshape(1, C, 1, 1)
        std = np.array(self.std, np.float32).reshape(1, C, 1, 1)
        if x.dtype == np.uint8:
            out = ToFloat()(x)  # (N, C, H, W), a new array: update it in place
            out -= mean
        else:
            out = np.subtract(x, mean, dtype=np.float32)
        out /= std
        return out


def crop(x, top, left, size, padding=0, fill=0):
    """Crop image i of `x` (N, C, H, W) at (top[i], left[i]) of its zero-padded copy -> (N, C, h, w).

    `padding` pixels of value `fill` are added on every side first; `size` is int or (h, w).
    """
    N, C, H, W = _check_batch(x, "crop")
    h, w = (size, size) if np.isscalar(size) else size
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=fill)
    if h > x.shape[2] or w > x.shape[3]:
        raise ValueError(f"crop: size {(h, w)} exceeds the padded image {x.shape[2:]}")
    windows = sliding_window_view(x, (h, w), axis=(2, 3))  # (N, C, H+2p-h+1, W+2p-w+1, h, w), a view
    return windows[np.arange(N), :, top, left]  # the advanced axes come first: (N, C, h, w)


class RandomCrop(RandomTransform):
    """Pad by `padding` on every side, then crop `size` at a random place, drawn per image."""

    def __init__(self, size, padding=0, fill=0, seed=None, rng=None):
        super().__init__(seed, rng)
        self.size = (size, size) if np.isscalar(size) else tuple(size)
        self.padding, self.fill = padding, fill

    def __call__(self, x):
        N, _, H, W = _check_batch(x, "RandomCrop")
        (h, w), p = self.size, self.padding
        if h > H + 2 * p or w > W + 2 * p:
            raise ValueError(f"RandomCrop: size {(h, w)} exceeds the padded image {(H + 2 * p, W + 2 * p)}")
        top = self.rng.integers(0, H + 2 * p - h + 1, size=N)
        left = self.rng.integers(0, W + 2 * p - w + 1, size=N)
        return crop(x, top, left, (h, w), p, self.fill)


class RandomHorizontalFlip(RandomTransform):
    """Mirror each image left-right (`x[..., ::-1]`) with probability `p`, drawn per image."""

    def __init__(self, p=0.5, seed=None, rng=None):
        super().__init__(seed, rng)
        self.p = p

    def __call__(self, x):
        N = _check_batch(x, "RandomHorizontalFlip")[0]
        flip = self.rng.random(N) < self.p  # (N,)
        return np.where(flip[:, None, None, None], x[..., ::-1], x)


class Flatten(Transform):
    """(N, C, H, W) -> (N, C*H*W), for linear models."""

    def __call__(self, x):
        return x.reshape(len(x), -1)


class Compose(Transform):
    """Apply transforms in order; state keys are prefixed with the transform's index ("0.rng")."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def state_dict(self):
        return {f"{i}.{k}": v for i, t in enumerate(self.transforms)
                for k, v in getattr(t, "state_dict", dict)().items()}

    def load_state_dict(self, state):
        for i, t in enumerate(self.transforms):
            own = {k[len(f"{i}."):]: v for k, v in state.items() if k.startswith(f"{i}.")}
            if own and hasattr(t, "load_state_dict"):
                t.load_state_dict(own)
