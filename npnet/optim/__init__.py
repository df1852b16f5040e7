"""Optimizers (SGD, Adam, AdamW, RMSprop, Adagrad) and epoch-based learning-rate schedules."""
from . import lr_scheduler
from .adam import Adam, AdamW
from .adaptive import Adagrad, RMSprop
from .lr_scheduler import CosineAnnealingLR, ExponentialLR, LRScheduler, MultiStepLR
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "LRScheduler", "MultiStepLR", "ExponentialLR",
           "CosineAnnealingLR", "lr_scheduler"]
