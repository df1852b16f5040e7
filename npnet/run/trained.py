"""A trained run, for inference: ``load_run(path)`` rebuilds the model of a run folder written by
``npnet train`` (or of one of its checkpoints) with its weights, and predicts on new images with
the run's own preprocessing.

    run = npnet.load_run("runs/cnn_small-20260101-120000")   # best.npz, else last.npz
    probs = run.predict(images)            # (N, num_classes): images (N, C, H, W) uint8
    run.classes[probs.argmax(axis=1)[0]]   # the first image's class name

``read_images(path)`` reads images to predict on from a file: an ``.npy`` array, a PNG, a
Fashion-MNIST IDX file (``*-images-idx3-ubyte``, optionally ``.gz``) or a CIFAR-10 batch (the
python archive's ``data_batch_1`` ..., or the binary version's ``.bin``).
"""
import os

import numpy as np

from .. import data
from .._io import from_json_array
from ..functional import softmax
from ..train.checkpoint import load_checkpoint
from .config import ConfigError, validate_config
from .experiment import RunError, is_text, make_model, transforms

#: the image shape (C, H, W) of every dataset a config can name
IMAGE_SHAPES = {"cifar10": (3, 32, 32), "fashion-mnist": (1, 28, 28),
                "fashion-mnist-mini": (1, 28, 28)}


class TrainedRun:
    """A run's trained model with what inference needs from its config.

    Attributes: ``model`` (in eval mode), ``config`` (the run's validated config), ``classes``
    (the class names, indexed by label), ``image_shape`` ``(C, H, W)``, ``transform`` (the run's
    test-time transform: normalisation with the dataset's statistics), ``checkpoint`` (the file
    the weights came from) and ``epoch`` (the epochs it had trained).
    """

    def __init__(self, model, config, checkpoint, epoch):
        self.model, self.config, self.checkpoint, self.epoch = model, config, checkpoint, epoch
        dataset = config["data"]["dataset"]
        self.classes = data.CLASSES[dataset]
        self.image_shape = IMAGE_SHAPES[dataset]
        self.transform = transforms(config, self.image_shape)[1]
        model.eval()

    def __repr__(self):
        return (f"TrainedRun({self.config['network']['model']!r} on {self.config['data']['dataset']}, "
                f"{self.epoch} epoch(s), weights {self.checkpoint!r})")

    def logits(self, images, batch_size=None):
        """The model's outputs ``(N, num_classes)`` float32 for ``images`` ``(N, C, H, W)`` (or
        one image ``(C, H, W)``; grey images may be ``(N, H, W)``), uint8 in [0, 255] or float
        in [0, 1] as the loaders give them; normalised as in the run's evaluation."""
        from ..nn import no_grad
        x = self._batch(images)
        bs = len(x) if batch_size is None else int(batch_size)
        with no_grad():
            outs = [self.model(self.transform(x[i:i + bs])) for i in range(0, len(x), bs)]
        return np.concatenate(outs) if outs else np.zeros((0, len(self.classes)), np.float32)

    def predict(self, images, batch_size=None):
        """Class probabilities ``(N, num_classes)``: the softmax of ``logits(images)``, as the
        run's ``predictions.png`` shows them; the predicted class is ``argmax(axis=1)``."""
        return softmax(self.logits(images, batch_size))

    def _batch(self, images):
        x = np.asarray(images)
        c, h, w = self.image_shape
        if x.ndim == 2 and c == 1 and x.shape == (h, w):
            x = x[None, None]  # one grey image
        elif x.ndim == 3 and c == 1 and x.shape[1:] == (h, w):
            x = x[:, None]  # (N, H, W) grey -> (N, 1, H, W)
        elif x.ndim == 3 and x.shape == (c, h, w):
            x = x[None]
        if x.ndim != 4 or x.shape[1:] != (c, h, w):
            raise ValueError(f"TrainedRun.predict: this run's model takes images of shape "
                             f"(N, {c}, {h}, {w}) (the {self.config['data']['dataset']} size), "
                             f"got an array of shape {x.shape}")
        if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"TrainedRun.predict: expected uint8 images (0..255) or float ones "
                            f"(0..1), got dtype {x.dtype}")
        return x


def load_run(path, weights="best"):
    """The ``TrainedRun`` of a run folder (``weights``: "best" uses ``best.npz`` when the run
    kept one, else ``last.npz``; "last" uses ``last.npz``) or of a checkpoint file (``.npz``);
    for a language model's run, a ``sample.TrainedLanguageModel`` (its ``vocab.json`` beside).

    Raises ``ValueError`` naming the path when it is neither a run folder nor a checkpoint of
    ``npnet train`` (FileNotFoundError when nothing is there).
    """
    if weights not in ("best", "last"):
        raise ValueError(f"load_run: weights must be 'best' or 'last', got {weights!r}")
    checkpoint = _checkpoint_file(os.fspath(path), weights)
    arrays = load_checkpoint(checkpoint)  # ValueError naming the file when it is not one
    if "config" not in arrays:
        raise ValueError(f"{checkpoint}: a checkpoint without the run's config, so not one "
                         "written by npnet train; load_run needs a run folder of npnet train")
    try:
        config = validate_config(from_json_array(arrays["config"]))
    except ConfigError as e:
        raise ValueError(f"{checkpoint}: the checkpoint's config is not a valid npnet train "
                         f"config ({e})") from None
    if is_text(config):
        from .sample import language_model_run
        return language_model_run(config, checkpoint, arrays, _build)
    shape = IMAGE_SHAPES[config["data"]["dataset"]]
    try:
        model = make_model(config, shape, len(data.CLASSES[config["data"]["dataset"]]))
    except RunError as e:
        raise ValueError(f"{checkpoint}: {e}") from None
    state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    model.load_state_dict(state)  # strict: a key or shape that differs is a ValueError
    return TrainedRun(model, config, checkpoint, int(arrays.get("epoch", 0)))


def _build(config, in_shape, num_classes):
    try:
        return make_model(config, in_shape, num_classes)
    except RunError as e:
        raise ValueError(str(e)) from None


def _checkpoint_file(path, weights):
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such run folder or checkpoint file; give a folder "
                                "written by npnet train (runs/<name>-<time>) or its best.npz")
    names = ["best.npz", "last.npz"] if weights == "best" else ["last.npz"]
    for name in names:
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    raise ValueError(f"{path}: no {' or '.join(names)} in this folder, so it is not the folder "
                     "of a run of npnet train (or the run ended before its first checkpoint)")


def read_images(path, channels=None):
    """The images stored in the file ``path`` as an array ``(N, C, H, W)`` (``(N, H, W)`` for a
    grey IDX file or .npy array of that shape): ``.npy`` (allow_pickle=False), ``.png`` (uint8; an
    alpha channel is dropped), a Fashion-MNIST / MNIST IDX image file (``.gz`` or not), a CIFAR-10
    python batch (read without executing code) or binary batch (``.bin``).

    channels: 1 or 3 converts a PNG to grey (ITU-R 601 luma) or RGB (the grey value repeated), as
    a model of that many channels needs; None keeps the PNG's own. Other formats are as stored."""
    path = os.fspath(path)
    name = os.path.basename(path).lower()
    if name.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    if name.endswith(".png"):
        return _read_png(path, channels)
    if "idx3-ubyte" in name:
        from pathlib import Path

        from ..data.fashion_mnist import read_idx
        return read_idx(Path(path))  # (N, H, W) uint8; gzipped when the name ends in .gz
    if name.endswith(".bin") or name.startswith(("data_batch_", "test_batch")):
        from ..data.cifar import _parse_binary, _parse_python
        with open(path, "rb") as f:
            blob = f.read()
        return (_parse_binary if name.endswith(".bin") else _parse_python)(blob, path)[0]
    raise ValueError(f"{path}: not an image file npnet reads; give .npy, .png, an IDX image file "
                     "(*-images-idx3-ubyte[.gz]) or a CIFAR-10 batch (data_batch_N, test_batch, "
                     "*.bin)")


def _read_png(path, channels):
    import matplotlib.image
    if channels not in (None, 1, 3):
        raise ValueError(f"read_images: channels must be None, 1 or 3, got {channels!r}")
    try:
        img = np.asarray(matplotlib.image.imread(path), np.float64)  # (H, W) or (H, W, 3|4) in [0, 1]
    except (OSError, ValueError, SyntaxError) as e:  # Pillow: SyntaxError for a broken PNG
        raise ValueError(f"{path}: not a readable PNG image ({e})") from None
    img = np.moveaxis(img[..., :3], -1, 0) if img.ndim == 3 else img[None]  # (C, H, W)
    if channels == 1 and len(img) == 3:
        img = np.tensordot([0.299, 0.587, 0.114], img, axes=1)[None]
    elif channels == 3 and len(img) == 1:
        img = np.repeat(img, 3, axis=0)
    return np.round(img * 255).astype(np.uint8)[None]  # (1, C, H, W)
