"""Batch transforms and the DataLoader."""
import io

import numpy as np
import pytest

from npnet.data import (CIFAR10_MEAN, FASHION_MNIST_MEAN, FASHION_MNIST_STD, Compose, DataLoader,
                        Flatten, Normalize, RandomCrop, RandomHorizontalFlip, ToFloat,
                        load_fashion_mnist_mini)
from npnet.data.transforms import crop


def batch(n=6, c=3, h=8, w=10, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, w), dtype=np.uint8)


# ------------------------------------------------------------------------------------- transforms

def test_to_float():
    x = batch()
    out = ToFloat()(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out, x.astype(np.float32) / np.float32(255))
    assert ToFloat()(x.astype(np.float64)).dtype == np.float32


def test_normalize_per_channel():
    x = batch()
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    out = Normalize(mean, std)(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    for c in range(3):
        np.testing.assert_allclose(out[:, c], (x[:, c] / 255 - mean[c]) / std[c], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(Normalize(mean, std)(x / np.float32(255)), out, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="batch has 3 channels, mean/std have 1"):
        Normalize.for_dataset("fashion-mnist")(x)


def test_normalize_by_name():
    assert Normalize.for_dataset("cifar10").mean == CIFAR10_MEAN
    fm = Normalize.for_dataset("fashion-mnist")
    assert fm.mean == FASHION_MNIST_MEAN == (0.2860,) and fm.std == FASHION_MNIST_STD == (0.3530,)
    with pytest.raises(ValueError, match="no statistics for 'mnist'"):
        Normalize.for_dataset("mnist")
    x = load_fashion_mnist_mini().x_train
    out = fm(x)
    assert abs(out.mean()) < 0.05 and abs(out.std() - 1) < 0.05  # the mini set is close to the full one


def test_flip_moves_pixels_as_claimed():
    x = batch()
    np.testing.assert_array_equal(RandomHorizontalFlip(p=1.0, seed=0)(x), x[..., ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(p=0.0, seed=0)(x), x)
    out = RandomHorizontalFlip(seed=1)(batch(n=64))
    flipped = [np.array_equal(o, b[..., ::-1]) for o, b in zip(out, batch(n=64))]
    kept = [np.array_equal(o, b) for o, b in zip(out, batch(n=64))]
    assert all(f or k for f, k in zip(flipped, kept)) and 10 < sum(flipped) < 54
    assert out.dtype == np.uint8


def test_crop_with_known_offsets_equals_padded_slice():
    x = batch()
    top, left = np.array([0, 1, 2, 3, 4, 0]), np.array([4, 3, 2, 1, 0, 5])
    out = crop(x, top, left, size=(7, 9), padding=2)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    assert out.shape == (6, 3, 7, 9) and out.dtype == np.uint8
    for i in range(6):
        np.testing.assert_array_equal(out[i], padded[i, :, top[i]:top[i] + 7, left[i]:left[i] + 9])


def test_random_crop_picks_a_window_of_the_padded_image():
    x = batch(n=8, h=6, w=6)
    out = RandomCrop(6, padding=2, seed=0)(x)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = set()
    for i in range(8):
        hits = [(t, l) for t in range(5) for l in range(5)
                if np.array_equal(out[i], padded[i, :, t:t + 6, l:l + 6])]
        assert hits, f"crop {i} is not a 6x6 window of the padded image"
        offsets.add(hits[0])
    assert len(offsets) > 1  # offsets are drawn per image


def test_random_transforms_are_seeded():
    x = batch(n=16)
    for make in (lambda s: RandomCrop(6, padding=1, seed=s), lambda s: RandomHorizontalFlip(seed=s)):
        np.testing.assert_array_equal(make(5)(x), make(5)(x))
        assert not np.array_equal(make(5)(x), make(6)(x))
    t = RandomCrop(6, padding=1, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(t(x), RandomCrop(6, padding=1, seed=5)(x))


def test_compose_flatten_and_state():
    x = batch(n=5)
    pipeline = lambda: Compose([RandomCrop(8, padding=2, seed=0), RandomHorizontalFlip(seed=1),
                                Normalize(CIFAR10_MEAN, (0.25, 0.25, 0.25)), Flatten()])
    a = pipeline()
    out = a(x)
    assert out.shape == (5, 3 * 8 * 8) and out.dtype == np.float32
    state = a.state_dict()
    assert sorted(state) == ["0.rng", "1.rng"]
    expected = a(x)
    b = pipeline()
    b.load_state_dict(state)
    np.testing.assert_array_equal(b(x), expected)


def test_transforms_reject_non_batches():
    message = r"RandomCrop: expected a batch of shape \(N, C, H, W\), received \(8, 8\)"
    with pytest.raises(ValueError, match=message):
        RandomCrop(4)(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"size \(9, 9\) exceeds the padded image \(8, 10\)"):
        RandomCrop(9)(batch())


# ------------------------------------------------------------------------------------- DataLoader

def dataset(n=23):
    return np.arange(n * 2, dtype=np.float32).reshape(n, 2), np.arange(n)


def epoch(loader):
    return [yb.copy() for _, yb in loader]


def test_batches_cover_the_data_once_per_epoch():
    x, y = dataset()
    loader = DataLoader(x, y, batch_size=5, seed=0, classes=["a", "b"])
    assert len(loader) == 5 and loader.dataset_size == 23 and loader.classes == ("a", "b")
    first, second = epoch(loader), epoch(loader)
    assert [len(b) for b in first] == [5, 5, 5, 5, 3]
    assert sorted(np.concatenate(first).tolist()) == list(range(23))
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))  # new order each epoch
    for xb, yb in DataLoader(x, y, 5):
        np.testing.assert_array_equal(xb[:, 0], 2 * yb)  # x and y stay aligned
    assert loader.epoch == 2


def test_same_seed_same_batches():
    x, y = dataset()
    a, b, c = (DataLoader(x, y, 4, seed=s) for s in (7, 7, 8))
    assert all(np.array_equal(u, v) for u, v in zip(epoch(a) + epoch(a), epoch(b) + epoch(b)))
    assert not np.array_equal(np.concatenate(epoch(a)), np.concatenate(epoch(c)))


def test_drop_last_full_batch_and_no_shuffle():
    x, y = dataset()
    assert len(DataLoader(x, y, 5, drop_last=True)) == 4
    assert [len(b) for b in epoch(DataLoader(x, y, 5, drop_last=True))] == [5] * 4
    (xb, yb), = list(DataLoader(x, y, None))
    assert xb.shape == (23, 2) and sorted(yb.tolist()) == list(range(23))
    batches = list(DataLoader(x, y, 10, shuffle=False))
    np.testing.assert_array_equal(np.concatenate([b for _, b in batches]), y)
    with pytest.raises(ValueError):  # views of the dataset are read-only
        batches[0][0][0, 0] = -1
    with pytest.raises(ValueError, match="batch_size must be a positive int or None, received 0"):
        DataLoader(x, y, 0)


def test_transform_is_applied():
    x = batch(n=10)
    loader = DataLoader(x, np.zeros(10, np.int64), 4, transform=Compose([ToFloat(), Flatten()]))
    xb, _ = next(iter(loader))
    assert xb.shape == (4, 3 * 8 * 10) and xb.dtype == np.float32


def roundtrip(state):
    """Through an .npz without pickle, as a trainer's checkpoint would store it."""
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("stop_after", [0, 2, 5])  # batches of the 3rd epoch consumed before saving
def test_state_dict_replays_the_same_batches(stop_after):
    x, y = batch(n=23), np.arange(23)
    make = lambda: DataLoader(x, y, 5, seed=3, transform=Compose([RandomCrop(6, padding=2, seed=4),
                                                                  RandomHorizontalFlip(seed=5)]))
    reference = make()
    runs = [[(xb.copy(), yb.copy()) for xb, yb in reference] for _ in range(4)]
    expected = [b for run in runs[2:] for b in run][stop_after:]

    original = make()
    for _ in range(2):
        list(original)
    it = iter(original)
    for _ in range(stop_after):
        next(it)
    state = roundtrip(original.state_dict())
    assert all(isinstance(v, np.ndarray) for v in state.values())

    resumed = make()
    resumed.load_state_dict(state)
    again = roundtrip(resumed.state_dict())  # a restored, not yet iterated loader saves the same state
    assert again.keys() == state.keys() and all(np.array_equal(again[k], state[k]) for k in state)
    got = [(xb, yb) for _ in range(2) for xb, yb in resumed][:len(expected)]
    assert len(got) == len(expected)
    for (gx, gy), (ex, ey) in zip(got, expected):
        np.testing.assert_array_equal(gy, ey)
        np.testing.assert_array_equal(gx, ex)
    assert resumed.epoch == 4 if stop_after < 5 else resumed.epoch == 5
