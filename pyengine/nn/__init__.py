"""``pyengine.nn``: modules, parameters, functional API and initialisation, as in torch.nn."""

from pyengine.nn import functional, init
from pyengine.nn.conv import Conv2d, ConvTranspose2d
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
from pyengine.nn.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from pyengine.nn.summary import summary
from pyengine.nn.upsampling import PixelShuffle, PixelUnshuffle, Upsample

__all__ = [
    "Conv2d",
    "ConvTranspose2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "summary",
    "CrossEntropyLoss",
    "Dropout",
    "Dropout2d",
    "Flatten",
    "Identity",
    "L1Loss",
    "LeakyReLU",
    "Linear",
    "MSELoss",
    "Module",
    "ModuleList",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "functional",
    "init",
]
__all__ += ["AdaptiveAvgPool2d", "AvgPool2d", "MaxPool2d", "Upsample"]
__all__ += ["PixelShuffle", "PixelUnshuffle"]
