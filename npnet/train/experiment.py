"""``run_experiment(config)``: one complete run from a validated config, written to a folder.

The folder ``<out>/<name>-<timestamp>/`` receives: ``config.yaml`` (the resolved config),
``history.csv`` / ``history.json``, ``metrics.json`` (test accuracy, per-class and balanced
accuracy, confusion matrix), ``best.npz`` and ``last.npz`` checkpoints, and the figures
(``learning_curves.png``, ``confusion_matrix.png``, ``per_class_accuracy.png``,
``predictions.png``, and ``weights.png`` for the linear model).
"""
import json
import os
import sys
import time

import numpy as np

from .. import data, init, losses, metrics, optim
from ..functional import softmax
from ..models import build_model
from .callbacks import Checkpoint, EpochLogger
from .checkpoint import atomic_write, load_checkpoint, section
from .trainer import NonFiniteLossError, Trainer


def prepare_data(config):
    """(x_train, y_train, x_val, y_val, x_test, y_test, class names) as the config asks:
    subsampled, made long-tailed, split (seeded by ``config['seed']``)."""
    d, seed = config["data"], config["seed"]
    kwargs = {} if d["dataset"] == "fashion-mnist-mini" or d["root"] is None else {"root": d["root"]}
    x_train, y_train, x_test, y_test = data.load_dataset(d["dataset"], **kwargs)
    x_train, y_train = _subsample(x_train, y_train, d["max_train"], seed)
    x_test, y_test = _subsample(x_test, y_test, d["max_test"], seed)
    if d["imbalance"] != "regular":
        x_train, y_train, _ = data.make_long_tailed(x_train, y_train, d["imbalance_factor"],
                                                    d["imbalance"], seed=seed)
    x_val = y_val = None
    if d["val_fraction"] > 0:
        x_train, y_train, x_val, y_val = data.train_val_split(x_train, y_train, d["val_fraction"],
                                                              seed=seed)
    return x_train, y_train, x_val, y_val, x_test, y_test, data.CLASSES[d["dataset"]]


def _subsample(x, y, limit, seed):
    if limit is None or limit >= len(x):
        return x, y
    keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:limit])
    return x[keep], y[keep]


def transforms(config, image_shape):
    """(train transform, eval transform): normalisation with the dataset's statistics, after a
    random crop (padding 4, or 2 below 32 pixels) and a horizontal flip when augmenting."""
    normalize = data.Normalize.for_dataset(config["data"]["dataset"])
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
        counts = np.bincount(y_train, minlength=num_classes)
        weight = losses.class_balanced_weights(counts, c["beta"])
    if c["loss_type"] == "MSE":
        if weight is not None:
            raise ValueError("loss.beta (class weights) is not supported with loss_type MSE")
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
    if t["schedule"] == "cosine":
        return opt, optim.CosineAnnealingLR(opt, t["epochs"])
    if t["schedule"] == "multistep" and (t["steps"] or t["warmup"]):
        return opt, optim.MultiStepLR(opt, t["steps"], t["lr_decay"], t["warmup"])
    return opt, None


def new_run_dir(out, name):
    """A fresh folder ``out/<name>-<YYYYmmdd-HHMMSS>`` (a suffix -2, -3, ... if it exists)."""
    base = os.path.join(out, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, i = base, 1
    while os.path.exists(path):
        i += 1
        path = f"{base}-{i}"
    os.makedirs(path)
    return path


def run_experiment(config, out="runs", resume=None, progress=None, log=print):
    """Trains and evaluates as ``config`` (from ``validate_config``) says; returns
    ``(run folder, exit status)``: 0 done, 1 non-finite loss, 130 stopped by Ctrl-C (resumable
    with ``resume=<folder>/last.npz``, which continues in the same folder)."""
    init.manual_seed(config["seed"])
    x_tr, y_tr, x_val, y_val, x_te, y_te, classes = prepare_data(config)
    run = os.path.dirname(os.path.abspath(resume)) if resume else new_run_dir(out, config["name"])
    _write_yaml(os.path.join(run, "config.yaml"), config)
    bar = progress if progress is not None else sys.stderr.isatty()
    extra = [] if bar else [EpochLogger(log)]  # no progress bar: one line per epoch instead
    trainer, loaders, eval_tf = _build(config, run, (x_tr, y_tr, x_val, y_val), len(classes),
                                       progress, extra)
    log(f"run folder: {run}\nmodel {config['network']['model']}: "
        f"{trainer.model.num_parameters():,} parameters; train {len(x_tr)}, "
        f"val {0 if x_val is None else len(x_val)}, test {len(x_te)} images")
    status = 0
    try:
        trainer.fit(*loaders, epochs=config["train"]["epochs"], resume=resume)
    except NonFiniteLossError as e:
        log(str(e))
        e.history.save(run)
        return run, 1
    if trainer.history.interrupted:
        log(f"resume with: npnet train CONFIG --resume {os.path.join(run, 'last.npz')}")
        status = 130
    trainer.history.save(run)
    _report(trainer, config, run, (x_te, y_te, eval_tf), classes, loaders[1] is not None, log)
    return run, status


def _build(config, run, arrays, num_classes, progress, callbacks):
    """(trainer, (train loader, val loader or None), eval transform) for the run."""
    x_tr, y_tr, x_val, y_val = arrays
    t = config["train"]
    train_tf, eval_tf = transforms(config, x_tr.shape[1:])
    train_loader = data.DataLoader(x_tr, y_tr, t["batch_size"], shuffle=True, transform=train_tf,
                                   seed=config["seed"])
    val_loader = None if x_val is None else data.DataLoader(
        x_val, y_val, t["eval_batch_size"], shuffle=False, transform=eval_tf)
    model = build_model(config["network"]["model"], x_tr.shape[1:], num_classes,
                        rng=config["seed"], **config["network"]["options"])
    opt, sched = make_optimizer(config, model)
    monitor = "val_accuracy" if val_loader is not None else "train_accuracy"
    best = config["network"]["save_best"]
    ckpt = Checkpoint(os.path.join(run, "best.npz" if best else "last.npz"), save_best=best,
                      monitor=monitor, last_path=os.path.join(run, "last.npz") if best else None)
    trainer = Trainer(model, make_loss(config, y_tr, num_classes), opt, sched, callbacks + [ckpt],
                      config=config, progress=progress)
    return trainer, (train_loader, val_loader), eval_tf


def _report(trainer, config, run, test, classes, has_val, log):
    """Test metrics (with the best checkpoint's weights when there is one) and figures."""
    x_te, y_te, eval_tf = test
    best = os.path.join(run, "best.npz")
    used = "last"
    if config["network"]["save_best"] and os.path.exists(best):
        trainer.model.load_state_dict(section(load_checkpoint(best), "model"))
        used = "best.npz"
    logits = trainer.predict(x_te, config["train"]["eval_batch_size"], eval_tf)
    c = len(classes)
    cm = metrics.confusion_matrix(y_te, logits, c)
    per_class = metrics.per_class_accuracy(y_te, logits, c)
    result = {"test_accuracy": metrics.accuracy(y_te, logits),
              "balanced_accuracy": metrics.balanced_accuracy(y_te, logits, c),
              "per_class_accuracy": dict(zip(classes, map(float, per_class))),
              "confusion_matrix": np.asarray(cm).tolist(), "classes": list(classes),
              "weights": used, "epochs": trainer.epoch, "interrupted": trainer.history.interrupted,
              "best_epoch": trainer.history.best("val_accuracy" if has_val else "train_accuracy")[0]}
    text = json.dumps(result, indent=1)
    atomic_write(os.path.join(run, "metrics.json"), lambda f: f.write(text.encode()))
    log(f"test accuracy {result['test_accuracy']:.4f}, balanced {result['balanced_accuracy']:.4f} "
        f"({used} weights)")
    _figures(trainer, config, run, x_te, y_te, logits, cm, per_class, classes)


def _figures(trainer, config, run, x_te, y_te, logits, cm, per_class, classes):
    from .. import plots
    name = config["name"]
    plots.plot_learning_curves({name: trainer.history}, path=os.path.join(run, "learning_curves.png"))
    plots.plot_confusion_matrix(cm, classes, os.path.join(run, "confusion_matrix.png"))
    plots.plot_per_class_accuracy({name: per_class}, classes,
                                  os.path.join(run, "per_class_accuracy.png"))
    probs = softmax(logits)
    pick = np.sort(np.random.default_rng(config["seed"]).permutation(len(x_te))[:32])
    plots.plot_predictions(x_te[pick], y_te[pick], probs[pick], classes,
                           os.path.join(run, "predictions.png"))
    if config["network"]["model"] == "linear":
        plots.plot_linear_weights(trainer.model[1].weight.data, x_te.shape[1:], classes,
                                  os.path.join(run, "weights.png"))


def _write_yaml(path, config):
    import yaml
    text = yaml.safe_dump(config, sort_keys=False)
    atomic_write(path, lambda f: f.write(text.encode()))
