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

# Added for issue 13: activations, normalisations, losses, containers, embedding, nn.utils.
from pyengine.nn import utils  # noqa: E402
from pyengine.nn.activation import (  # noqa: E402
    ELU,
    GELU,
    Hardtanh,
    Mish,
    PReLU,
    ReLU6,
    SiLU,
    Softplus,
)
from pyengine.nn.layers import LogSoftmax, ModuleDict, NLLLoss, Unflatten  # noqa: E402
from pyengine.nn.loss import BCELoss, BCEWithLogitsLoss, HuberLoss, SmoothL1Loss  # noqa: E402
from pyengine.nn.normalization import GroupNorm, InstanceNorm2d, LayerNorm  # noqa: E402
from pyengine.nn.sparse import Embedding  # noqa: E402

__all__ += ["ELU", "GELU", "PReLU", "SiLU", "Softplus", "ModuleDict", "Embedding", "utils"]
__all__ += ["LogSoftmax", "NLLLoss", "Unflatten", "Hardtanh", "Mish", "ReLU6"]
__all__ += ["BCELoss", "BCEWithLogitsLoss", "HuberLoss", "SmoothL1Loss"]
__all__ += ["GroupNorm", "InstanceNorm2d", "LayerNorm"]
from pyengine.nn import parallel  # noqa: E402  (DistributedDataParallel; imports no MPI)
from pyengine.nn.sync_batchnorm import SyncBatchNorm  # noqa: E402

__all__ += ["SyncBatchNorm", "parallel"]
__all__ += ["PixelShuffle", "PixelUnshuffle"]
