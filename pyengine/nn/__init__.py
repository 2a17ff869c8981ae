"""``pyengine.nn``: modules, parameters, functional API and initialisation, as in torch.nn."""

from pyengine.nn import functional, init
from pyengine.nn.layers import (
    CrossEntropyLoss,
    Dropout,
    Dropout2d,
    Flatten,
    Identity,
    L1Loss,
    LeakyReLU,
    Linear,
    ModuleList,
    MSELoss,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
)
from pyengine.nn.module import Module, Parameter
from pyengine.nn.normalization import BatchNorm1d, BatchNorm2d
from pyengine.nn.summary import summary

__all__ = [
    "BatchNorm1d", "BatchNorm2d", "summary",
    "CrossEntropyLoss", "Dropout", "Dropout2d", "Flatten", "Identity", "L1Loss", "LeakyReLU",
    "Linear", "MSELoss", "Module", "ModuleList", "Parameter", "ReLU", "Sequential", "Sigmoid",
    "Softmax", "Tanh", "functional", "init",
]
