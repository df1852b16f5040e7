"""The pieces of one run, built from a validated config: data, transforms, loss, optimizer, model
and Trainer. Nothing here writes a file; ``runner.run_experiment`` puts the pieces together.

Every failure a user can cause (data not on disk, a missing ``data.root``, a model that does not
fit the images) is a ``RunError`` whose message says what was wrong and what to do.
"""
import math
import os
from typing import NamedTuple, Optional

import numpy as np

from .. import data, distributed, init, losses, nn, optim
from ..models import build_model, input_kind
from ..train import Checkpoint, LayerStats, Trainer
from .config import TEXT_DATASETS
from .sample import VocabularyFile, windows
from .speed import apply_speed


class RunError(Exception):
    """A run that cannot start: the message says what was wrong and what to do."""


_DATA_HINT = ("The shipped CIFAR-10 configs need CIFAR-10 on disk (cifar-10-python.tar.gz in "
              "$NPNET_DATA, ~/.cache/npnet or data.root); to run a config on the Fashion-MNIST "
              "subset embedded in npnet instead, add --set data.dataset=fashion-mnist-mini.")


def load_data(config):
    """The dataset's ``DatasetSplits`` as ``data.dataset`` and ``data.root`` say; ``RunError`` if
    it is not there (an explicit ``data.root`` must exist: no silent fallback elsewhere)."""
    d = config["data"]
    if d["dataset"] in TEXT_DATASETS:
        return _load_corpus(d)
    options = {"progress": False}
    if d["dataset"] != "fashion-mnist-mini" and d["root"] is not None:
        if not os.path.isdir(os.path.expanduser(d["root"])):
            raise RunError(f"data.root {d['root']!r} is not a folder; create it and put the "
                           f"{d['dataset']} files there, or remove data.root to use $NPNET_DATA "
                           "or ~/.cache/npnet")
        options["root"] = d["root"]
    try:
        return data.load_dataset(d["dataset"], **options)
    except (OSError, ValueError) as e:  # not found, download failed, bad checksum, bad file
        raise RunError(f"cannot load dataset {d['dataset']!r}: {e}\n{_DATA_HINT}") from None


def _load_corpus(d):
    """The ``CharCorpus`` of a text dataset (``data.root``: the standard library's folder)."""
    options = {} if d["dataset"].endswith("-mini") or d["root"] is None else {"stdlib": d["root"]}
    try:
        return data.load_char_corpus(d["dataset"], **options)
    except (OSError, ValueError) as e:
        raise RunError(f"cannot load the text corpus {d['dataset']!r}: {e}; python-source-mini is "
                       "embedded in npnet") from None


def is_text(config):
    """Whether the run is a language model's, on a text corpus."""
    return config["data"]["dataset"] in TEXT_DATASETS


class PreparedData(NamedTuple):
    """The images of one run, as its ``data`` section asks (from ``prepare_data``). Images are
    ``(N, C, H, W)`` uint8, labels ``(N,)`` int64."""

    x_train: np.ndarray  # (N_train, C, H, W): after subsampling, long tail and the split
    y_train: np.ndarray  # (N_train,)
    x_val: Optional[np.ndarray]  # (N_val, C, H, W), or None when data.val_fraction is 0
    y_val: Optional[np.ndarray]  # (N_val,) or None
    x_test: np.ndarray  # (N_test, C, H, W): after data.max_test
    y_test: np.ndarray  # (N_test,)
    classes: tuple  # the class names, indexed by label


def prepare_data(config):
    """The ``PreparedData`` the config asks for: subsampled, made long-tailed, split (seeded by
    ``config['seed']``)."""
    d, seed = config["data"], config["seed"]
    if is_text(config):
        return _prepare_text(config)
    x_train, y_train, x_test, y_test = load_data(config)
    x_train, y_train = _subsample(x_train, y_train, d["max_train"], seed)
    x_test, y_test = _subsample(x_test, y_test, d["max_test"], seed)
    x_val = y_val = None
    try:
        if d["imbalance"] != "regular":
            x_train, y_train, _ = data.make_long_tailed(x_train, y_train, d["imbalance_factor"],
                                                        d["imbalance"], seed=seed)
        if d["val_fraction"] > 0:
            x_train, y_train, x_val, y_val = data.train_val_split(x_train, y_train,
                                                                  d["val_fraction"], seed=seed)
    except ValueError as e:
        raise RunError(f"cannot prepare the data as the config's data section asks: {e}") from None
    if len(x_train) == 0 or (x_val is not None and len(x_val) == 0):
        raise RunError(f"the data section leaves {len(x_train)} training and "
                       f"{0 if x_val is None else len(x_val)} validation images; raise "
                       "data.max_train or lower data.val_fraction")
    return PreparedData(x_train, y_train, x_val, y_val, x_test, y_test, data.CLASSES[d["dataset"]])


def _prepare_text(config):
    """``PreparedData`` of a text corpus (``sample.windows``); ``classes`` holds the
    vocabulary's characters, in id order."""
    d, seed = config["data"], config["seed"]
    corpus = load_data(config)
    try:
        x_tr, y_tr, x_val, y_val, x_te, y_te = windows(corpus, d["seq_len"], d["val_fraction"])
    except ValueError as e:
        raise RunError(str(e)) from None
    x_tr, y_tr = _subsample(x_tr, y_tr, d["max_train"], seed)
    x_te, y_te = _subsample(x_te, y_te, d["max_test"], seed)
    return PreparedData(x_tr, y_tr, x_val, y_val, x_te, y_te, corpus.vocab.chars)


def _subsample(x, y, limit, seed):
    if limit is None or limit >= len(x):
        return x, y
    keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:limit])
    return x[keep], y[keep]


def transforms(config, image_shape):
    """(train transform, eval transform): normalisation with the dataset's statistics, after a
    random crop (padding 4, or 2 below 32 pixels) and a horizontal flip when augmenting; a
    sequence model reads the result row by row (``data.Rows``); a language model's ids pass as
    they are (None, None)."""
    if is_text(config):
        return None, None
    normalize = data.Normalize.for_dataset(config["data"]["dataset"])
    if input_kind(config["network"]["model"]) == "sequence":
        normalize = data.Compose([normalize, data.Rows()])
    if not config["data"]["augment"]:
        return normalize, normalize
    seed, size = config["seed"], image_shape[1:]
    pad = 4 if min(size) >= 32 else 2
    return data.Compose([data.RandomCrop(size, padding=pad, seed=seed + 1),
                         data.RandomHorizontalFlip(seed=seed + 2), normalize]), normalize


def make_loss(config, y_train, num_classes):
    """The criterion; ``beta > 0`` adds class-balanced weights from the training counts."""
    c = config["loss"]
    weight = None
    if c["beta"] > 0:
        counts = np.bincount(y_train.ravel(), minlength=num_classes)
        weight = losses.class_balanced_weights(counts, c["beta"])
    if c["loss_type"] == "MSE":
        if weight is not None:
            raise RunError("loss.beta (class weights) is not supported with loss_type MSE; "
                           "set loss.beta to 0 or use loss_type CE or Focal")
        return losses.MSELoss()
    if c["loss_type"] == "Focal":
        return losses.FocalLoss(c["gamma"], weight, kind=c["focal_kind"])
    return losses.CrossEntropyLoss(weight, label_smoothing=c["label_smoothing"])


def make_optimizer(config, model):
    """(optimizer, scheduler or None) from the ``train`` section; ``reg`` is the weight decay."""
    t = config["train"]
    params, lr, wd = model.parameters(), t["learning_rate"], t["reg"]
    if t["optimizer"] == "sgd":
        opt = optim.SGD(params, lr, momentum=t["momentum"], nesterov=t["nesterov"], weight_decay=wd)
    else:
        opt = (optim.Adam if t["optimizer"] == "adam" else optim.AdamW)(params, lr, weight_decay=wd)
    if t["clip_grad_norm"] is not None:
        clip_before_step(opt, t["clip_grad_norm"])
    if t["schedule"] == "cosine":
        return opt, optim.CosineAnnealingLR(opt, t["epochs"])
    if t["schedule"] == "multistep" and (t["steps"] or t["warmup"]):
        return opt, optim.MultiStepLR(opt, t["steps"], t["lr_decay"], t["warmup"])
    return opt, None


def clip_before_step(optimizer, max_norm):
    """Makes ``optimizer.step()`` first scale the gradients so that their joint 2-norm is at most
    ``max_norm`` (``nn.utils.clip_grad_norm_`` over ``optimizer.params``), where a PyTorch loop
    calls it: after the backward pass, before the step. Returns the optimizer."""
    step = optimizer.step

    def clipped_step():
        nn.utils.clip_grad_norm_(optimizer.params, max_norm)
        step()

    optimizer.step = clipped_step
    return optimizer


def make_model(config, in_shape, num_classes):
    """The zoo model of ``network``, seeded by ``config['seed']``; with ``network.init_prior`` p,
    the last Linear layer's bias starts at -log((1 - p) / p) (Lin et al. 2017: every sigmoid
    output starts at probability p; softmax outputs are unaffected by a constant shift).
    ``in_shape``: an image's (C, H, W), which a sequence model reads as (H, C*W) (``data.Rows``),
    or a window's (T,) for a language model (``num_classes``: the vocabulary size)."""
    n = config["network"]
    if input_kind(n["model"]) == "sequence" and len(in_shape) == 3:
        in_shape = data.Rows.output_shape(in_shape)
    try:
        model = build_model(n["model"], in_shape, num_classes, rng=config["seed"], **n["options"])
    except (ValueError, TypeError) as e:
        raise RunError(f"cannot build network.model {n['model']!r} for inputs of shape "
                       f"{tuple(in_shape)}: {e}") from None
    if n["init_prior"] is not None:
        last = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not last or last[-1].bias is None:
            raise RunError(f"network.init_prior needs a last Linear layer with a bias; "
                           f"{n['model']} has none: remove network.init_prior")
        last[-1].bias.data[:] = -math.log((1 - n["init_prior"]) / n["init_prior"])
    return model


def _watch(config, run):
    """[LayerStats] when the config's ``log`` section asks for it, else []."""
    log = config["log"]
    if not log["layer_stats"] or not distributed.is_writer():  # on several ranks: rank 0's
        return []
    board = os.path.join(run, "tensorboard") if log["tensorboard"] else None
    return [LayerStats(log["layer_stats"], folder=run, tensorboard=board)]


def make_trainer(config, run, arrays, num_classes, progress=None, callbacks=(), resuming=False, log=print,
                 vocab=None):
    """(trainer, (train loader, val loader or None), eval transform) for a run whose checkpoints
    go to the folder ``run`` (nothing is written until training starts). The model gets the
    config's ``speed`` passes (``speed.py``; ``trainer.speed`` is their record); ``resuming``:
    the checkpoint's algorithms will be loaded, so nothing is tuned. ``vocab``: a language model's
    characters, in id order (written to the run's ``vocab.json`` when training starts)."""
    x_tr, y_tr, x_val, y_val = arrays
    t = config["train"]
    init.manual_seed(config["seed"])
    train_tf, eval_tf = transforms(config, x_tr.shape[1:])
    train_loader = data.DataLoader(x_tr, y_tr, t["batch_size"], shuffle=True, transform=train_tf,
                                   seed=config["seed"])
    val_loader = None if x_val is None else data.DataLoader(
        x_val, y_val, t["eval_batch_size"], shuffle=False, transform=eval_tf)
    try:  # on several processes every one of them needs an image of each batch
        distributed.check_shards(len(x_tr), train_loader.batch_size, False, distributed.world_size())
    except distributed.ShardError as e:
        raise RunError(str(e)) from None
    model = make_model(config, x_tr.shape[1:], num_classes)
    if t["sync_bn"]:
        distributed.convert_sync_batchnorm(model)
    batch = min(t["batch_size"] or len(x_tr), len(x_tr))  # the global batch, on every number of ranks
    # only convolutions have algorithms to time: a model without one (a sequence model) is not
    # run on the zeros tune() would give it (a language model reads integer ids)
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    speed = apply_speed(model, dict(config["speed"], tune=config["speed"]["tune"] and has_conv),
                        (batch,) + tuple(x_tr.shape[1:]), resuming, log,
                        watched=bool(config["log"]["layer_stats"]))
    opt, sched = make_optimizer(config, model)
    split = "val" if val_loader is not None else "train"
    monitor = f"{split}_loss" if is_text(config) else f"{split}_accuracy"  # an LM has no accuracy
    best = config["network"]["save_best"]
    ckpt = Checkpoint(os.path.join(run, "best.npz" if best else "last.npz"), save_best=best,
                      monitor=monitor, last_path=os.path.join(run, "last.npz") if best else None)
    saves = [] if vocab is None else [VocabularyFile(run, vocab)]
    trainer = Trainer(model, make_loss(config, y_tr, num_classes), opt, sched,
                      list(callbacks) + _watch(config, run) + saves + [ckpt], config=config,
                      progress=progress)
    trainer.speed = speed
    return trainer, (train_loader, val_loader), eval_tf
