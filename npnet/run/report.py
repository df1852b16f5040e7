"""The end of a run: test metrics (``metrics.json``) and the figures of its folder."""
import json
import math
import os

import numpy as np

from .. import metrics
from .._io import atomic_write_text
from ..functional import softmax
from ..train import LayerStats
from ..train.checkpoint import load_checkpoint


def report(trainer, config, run, test, classes, has_val, log=print, world=None):
    """Evaluates on the test set (with the best checkpoint's weights when there is one), writes
    ``metrics.json`` (with ``world``, the processes that trained: ``ranks.world_record()``) and the
    figures to ``run``; returns the metrics dict."""
    x_te, y_te, eval_tf = test
    best = os.path.join(run, "best.npz")
    used = "last"
    if config["network"]["save_best"] and os.path.exists(best):
        arrays = load_checkpoint(best)  # the model's weights are its "model/<key>" entries
        trainer.model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model/")})
        used = "best.npz"
    logits = trainer.predict(x_te, config["train"]["eval_batch_size"], eval_tf)
    c = len(classes)
    cm = metrics.confusion_matrix(y_te, logits, c)
    per_class = metrics.per_class_accuracy(y_te, logits, c)
    monitor = "val_accuracy" if has_val else "train_accuracy"
    best_epoch, best_value = trainer.history.best(monitor)
    result = {"test_accuracy": metrics.accuracy(y_te, logits),
              "balanced_accuracy": metrics.balanced_accuracy(y_te, logits, c),
              "per_class_accuracy": dict(zip(classes, map(float, per_class))),
              "confusion_matrix": np.asarray(cm).tolist(), "classes": list(classes),
              "weights": used, "epochs": trainer.epoch, "best_epoch": best_epoch,
              "best_val_accuracy": best_value if has_val else None,
              "train_seconds": round(float(sum(r["time"] or 0.0 for r in trainer.history.epochs)), 3),
              # what the config's speed passes did: fused modules, each convolution's algorithm
              "speed": getattr(trainer, "speed", None), "world": world}
    watch = next((cb for cb in trainer.callbacks if isinstance(cb, LayerStats)), None)
    if watch is not None:  # the last value of every statistic, e.g. for a sweep's summary
        result["layer_stats"] = watch.last()
    result = _without_float_noise(result)
    atomic_write_text(os.path.join(run, "metrics.json"), json.dumps(result, indent=1))
    log(f"test accuracy {result['test_accuracy']:.4f}, balanced {result['balanced_accuracy']:.4f} "
        f"({used} weights)")
    _figures(trainer, config, run, x_te, y_te, logits, cm, per_class, classes)
    if watch is not None and watch.stats:
        from .. import plots
        plots.plot_layer_stats(watch.stats, os.path.join(run, "layer_stats.png"),
                               title=f"{config['name']}: per-layer statistics")
    return result


def _without_float_noise(obj):
    """Floats that are a short decimal but for rounding noise in their last bits (0.69, not
    0.6900000000000001: sums of fractions such as a balanced accuracy carry it) written as that
    decimal, through dicts and lists; any other float (2/3, 19/60) is kept exactly."""
    if isinstance(obj, float):
        short = float(f"{obj:.12g}") if math.isfinite(obj) else obj
        return short if abs(short - obj) <= 4 * math.ulp(obj) else obj
    if isinstance(obj, dict):
        return {k: _without_float_noise(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_without_float_noise(v) for v in obj]
    return obj


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
