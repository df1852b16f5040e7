"""Optimizers (SGD, Adam, AdamW) and epoch-based learning-rate schedules."""
from . import lr_scheduler
from .adam import Adam, AdamW
from .lr_scheduler import CosineAnnealingLR, ExponentialLR, LRScheduler, MultiStepLR
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "LRScheduler", "MultiStepLR", "ExponentialLR",
           "CosineAnnealingLR", "lr_scheduler"]
