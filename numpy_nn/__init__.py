"""numpy_nn: a neural-network library written by hand in NumPy.

Every forward and every backward is derived and coded here (no autograd); names, arguments,
defaults and layouts follow ``torch.nn`` / ``torch.optim`` so the two can be read side by side.
This package never imports torch.
"""

from . import init, losses, optim, regularization
from .blocks import ResidualBlock
from .conv import Conv2d
from .gradcheck import GradcheckError, gradcheck, reseed_dropout
from .layers import Dropout, Flatten, LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .module import Identity, Module, Parameter, Sequential
from .norm import BatchNorm1d, BatchNorm2d
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from .regularization import penalty, penalty_backward
from .rng import default_generator, manual_seed
from .serialization import load, save
from .training import train_step, weight_decay_groups

__all__ = [
    "Parameter", "Module", "Sequential", "Identity",
    "Linear", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "Dropout", "Flatten",
    "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "BatchNorm1d", "BatchNorm2d", "ResidualBlock",
    "BCEWithLogitsLoss", "MSELoss", "CrossEntropyLoss",
    "penalty", "penalty_backward",
    "train_step", "weight_decay_groups",
    "gradcheck", "GradcheckError", "reseed_dropout",
    "init", "losses", "optim", "regularization", "manual_seed", "default_generator", "save", "load",
]
