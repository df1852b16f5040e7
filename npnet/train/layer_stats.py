"""LayerStats: watch a network learn, layer by layer, from forward and backward hooks.

Statistics (``LayerStats.STATISTICS``), each recorded against the global step:

* ``out_mean``, ``out_std``: mean and standard deviation of a layer's output (training batches).
* ``zero_fraction``: share of exact zeros in a ReLU's output.
* ``saturation``: share of a Sigmoid's outputs below 0.01 or above 0.99, and of a Tanh's outputs
  with ``|y| > 0.99``: where the local derivative, ``y (1 - y)`` or ``1 - y**2``, is below 4 %
  (Sigmoid) or 2 % (Tanh) of its maximum, so that little gradient passes back. The Tanh bound is
  the same output threshold rather than the exact image of the Sigmoid's (``tanh(x) = 2
  sigmoid(2x) - 1`` maps 0.01 / 0.99 to -0.98 / 0.98); it is the stricter of the two.
* ``dead_fraction``: share of a ReLU's *units* that were zero for every sample seen in the epoch,
  recorded at the end of each epoch. A unit is a feature of a (N, F) output and a channel (a whole
  feature map: one filter) of a (N, C, H, W) output.
* ``grad_norm``: the L2 norm of the gradient a layer passes back (its ``dx``); not recorded for the
  first layer of a training step, which is asked for no ``dx``.
* ``update_ratio`` (per parameter, keyed by the parameter's name): ``||w_after - w_before|| /
  ||w_before||`` over one optimizer step; CS231n's rule of thumb puts a healthy value near 1e-3.

Activations are recognised by type (``isinstance``, so subclasses count). All but
``dead_fraction`` are sampled every ``every`` training steps (the first step included), so
the cost of a step that is not sampled is one reduction per ReLU output (for the dead units).
Evaluation passes (modules in eval mode) are ignored.
"""
import os

import numpy as np

from .. import nn
from .._io import from_json_array, to_json_array
from .._layer_stats_csv import STATISTICS as _STATISTICS, write_layer_stats_csv
from .callbacks import Callback

_SKIPPED = (nn.Flatten, nn.Identity, nn.Dropout)  # they only reshape or mask: nothing to watch
SATURATION_BOUND = 0.99  # Sigmoid: y < 1 - bound or y > bound; Tanh: |y| > bound


def saturation(module, out):
    """The share of ``out`` in the flat tails of a Sigmoid or Tanh ``module`` (module
    docstring); None for any other module."""
    if isinstance(module, nn.Sigmoid):
        return float(np.mean((out < 1.0 - SATURATION_BOUND) | (out > SATURATION_BOUND)))
    if isinstance(module, nn.Tanh):
        return float(np.mean(np.abs(out) > SATURATION_BOUND))
    return None


class LayerStats(Callback):
    """Per-layer statistics of training (see the module docstring).

    every: sample the statistics every ``every`` steps. folder: if given, ``layer_stats.csv`` is
    written there (atomically) after every epoch; draw it with ``npnet.plots.plot_layer_stats``.
    layers: the names of the modules to watch (default: every leaf module except Flatten,
    Identity and Dropout). tensorboard: a folder for a TensorBoard event file (needs
    ``pip install -e ".[tensorboard]"``): the same scalars plus a histogram of every output.

    ``stats[layer][statistic]`` is a list of ``(step, value)``.
    """

    STATISTICS = _STATISTICS  # named with the records' file format (npnet/_layer_stats_csv.py)

    def __init__(self, every=50, folder=None, layers=None, tensorboard=None):
        if int(every) != every or every < 1:
            raise ValueError(f"LayerStats: every must be an int >= 1, got {every!r}")
        self.every, self.folder, self.layers = int(every), folder, layers
        self.tensorboard = tensorboard
        self.stats, self._handles, self._writer = {}, [], None
        self._active, self._before, self._step, self._sampling = {}, None, 0, True

    # -- Trainer hooks ------------------------------------------------------------------------
    def on_fit_begin(self, trainer):
        self.remove()
        self._step = trainer.global_step
        self._sampling = self._step % self.every == 0
        model = trainer.model
        for name, module in self._watched(model):
            self._handles.append(module.register_forward_hook(self._forward_hook(name)))
            self._handles.append(module.register_full_backward_hook(self._backward_hook(name)))
        self._handles.append(model.register_forward_hook(self._snapshot))
        self._params = dict(model.named_parameters())
        if self.tensorboard is not None:
            self._writer = _tensorboard_writer(self.tensorboard)

    def on_batch_end(self, trainer, step, logs):
        if self._sampling and self._before is not None:
            for name, before in self._before.items():
                after = self._params[name].data
                norm = float(np.linalg.norm(before))
                ratio = float(np.linalg.norm(after - before)) / norm if norm > 0 else float("nan")
                self._add(name, "update_ratio", ratio)
        self._before = None
        self._step = trainer.global_step
        self._sampling = self._step % self.every == 0

    def on_epoch_end(self, trainer, epoch, logs):
        for name, active in self._active.items():
            self._add(name, "dead_fraction", float(1.0 - active.mean()))
        self._active = {}
        if self.folder is not None:
            self.to_csv(os.path.join(self.folder, "layer_stats.csv"))
        if self._writer is not None:
            self._writer.flush()

    def on_fit_end(self, trainer):
        self.remove()

    def state_dict(self):
        """The statistics so far and the epoch's unit record, for exact resume."""
        active = {k: v.tolist() for k, v in self._active.items()}
        return {"stats": to_json_array(self.stats), "active": to_json_array(active)}

    def load_state_dict(self, state):
        stats = from_json_array(state["stats"])
        self.stats = {layer: {stat: [tuple(p) for p in points] for stat, points in by_stat.items()}
                      for layer, by_stat in stats.items()}
        self._active = {k: np.array(v, bool) for k, v in from_json_array(state["active"]).items()}

    def remove(self):
        """Unregisters the hooks and closes the TensorBoard writer."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- the hooks ----------------------------------------------------------------------------
    def _watched(self, model):
        fused = [n for n, m in model.named_modules() if m._inline_names or type(m).__name__ == "ResidualReLU"]
        if fused:
            raise ValueError(f"LayerStats watches each layer's own output and gradient, which a fused "
                             f"module ({', '.join(fused[:3])}{', ...' if len(fused) > 3 else ''}) never "
                             "produces: attach LayerStats to the unfused model (npnet.unfuse(model)); "
                             "npnet.fuse leaves the layers it watches unfused")
        for name, module in model.named_modules():
            if self.layers is not None:
                if name in self.layers:
                    yield name, module
            elif name and not module._modules and not isinstance(module, _SKIPPED):
                yield name, module

    def _snapshot(self, model, inputs, out):
        """Forward hook of the whole model: the weights before this step's update."""
        if model.training and self._sampling:
            self._before = {k: p.data.copy() for k, p in self._params.items() if p.requires_grad}

    def _forward_hook(self, name):
        def hook(module, inputs, out):
            if not module.training:
                return
            relu = isinstance(module, nn.ReLU)
            if relu:
                self._track_active(name, out)
            if self._sampling:
                self._add(name, "out_mean", float(out.mean()))
                self._add(name, "out_std", float(out.std()))
                if relu:
                    self._add(name, "zero_fraction", float(np.mean(out == 0)))
                tails = saturation(module, out)
                if tails is not None:
                    self._add(name, "saturation", tails)
                if self._writer is not None:
                    self._writer.add_histogram(f"output/{name}", out, self._step)
        return hook

    def _backward_hook(self, name):
        def hook(module, grad_input, grad_output):
            if self._sampling and grad_input[0] is not None:
                self._add(name, "grad_norm", float(np.linalg.norm(grad_input[0])))
        return hook

    def _track_active(self, name, out):
        """ORs into the epoch's record which units were positive for some sample."""
        axes = (0,) if out.ndim == 2 else (0,) + tuple(range(2, out.ndim))
        positive = np.any(out > 0, axis=axes)  # (F,) or (C,)
        seen = self._active.get(name)
        self._active[name] = positive if seen is None else seen | positive

    def _add(self, layer, statistic, value):
        self.stats.setdefault(layer, {}).setdefault(statistic, []).append((self._step, value))
        if self._writer is not None:
            self._writer.add_scalar(f"{statistic}/{layer}", value, self._step)

    # -- output ---------------------------------------------------------------------------------
    def rows(self):
        """``(step, layer, statistic, value)`` tuples, in recording order per layer."""
        return [(step, layer, stat, value) for layer, by_stat in self.stats.items()
                for stat, points in by_stat.items() for step, value in points]

    def to_csv(self, path):
        """Writes ``step,layer,statistic,value`` rows to ``path`` atomically; returns the path.
        Read it back with ``npnet.train.read_layer_stats_csv``."""
        return write_layer_stats_csv(self.rows(), path)

    def last(self):
        """``{layer: {statistic: last value}}``, e.g. for a sweep's summary."""
        return {layer: {stat: points[-1][1] for stat, points in by_stat.items()}
                for layer, by_stat in self.stats.items()}


def _tensorboard_writer(folder):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ImportError("LayerStats(tensorboard=...): tensorboardX is not installed; "
                          "pip install -e \".[tensorboard]\"") from None
    return SummaryWriter(logdir=os.fspath(folder))
