"""``pyengine.nn.functional``: the PyTorch-shaped functional API over pyengine.ops."""

from __future__ import annotations

from pyengine import random
from pyengine.backend import backend
from pyengine.ops.conv import conv2d, conv_transpose2d
from pyengine.ops.elementwise import leaky_relu, relu, sigmoid, tanh
from pyengine.ops.gemm import linear
from pyengine.ops.loss import _reduce
from pyengine.ops.norm import batch_norm
from pyengine.ops.pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from pyengine.ops.reduce import log_softmax, nll, softmax
from pyengine.ops.resample import interpolate, pad, pixel_shuffle, pixel_unshuffle
from pyengine.ops.shape import cat, stack
from pyengine.tensor import Tensor

__all__ = [
    "batch_norm",
    "conv2d",
    "conv_transpose2d",
    "cat",
    "cross_entropy",
    "dropout",
    "dropout2d",
    "l1_loss",
    "leaky_relu",
    "linear",
    "log_softmax",
    "mse_loss",
    "nll_loss",
    "relu",
    "sigmoid",
    "softmax",
    "stack",
    "tanh",
]
__all__ += ["adaptive_avg_pool2d", "avg_pool2d", "interpolate", "max_pool2d", "pad"]
__all__ += ["pixel_shuffle", "pixel_unshuffle"]


def _same_shape(input: Tensor, target: Tensor, name: str) -> None:
    if input.shape != target.shape:
        raise ValueError(
            f"{name}: input shape {input.shape} and target shape {target.shape} differ"
        )


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    _same_shape(input, target, "mse_loss")
    return _reduce((input - target) ** 2, reduction)


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    _same_shape(input, target, "l1_loss")
    return _reduce((input - target).abs(), reduction)


def nll_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    return _reduce(nll(input, target), reduction)


def cross_entropy(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy of logits (N, C) against integer class labels (N,)."""
    if input.ndim != 2:
        raise ValueError(f"cross_entropy expects logits of shape (N, C), got {input.shape}")
    return nll_loss(log_softmax(input, 1), target, reduction)


def _dropout(input: Tensor, p: float, training: bool, mask_shape: tuple[int, ...]) -> Tensor:
    """Multiply by a Bernoulli(1 - p) mask scaled by 1 / (1 - p), broadcast from mask_shape."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    keep = random.generator().random(mask_shape) >= p
    mask = (keep / (1.0 - p)).astype(input.dtype)
    return input * Tensor._wrap(backend(input.device).from_numpy(mask), input.device)


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    return _dropout(input, p, training, input.shape)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero whole channels of an (N, C, H, W) input."""
    if input.ndim != 4:
        raise ValueError(f"dropout2d expects an (N, C, H, W) input, got {input.shape}")
    return _dropout(input, p, training, input.shape[:2] + (1, 1))


# Activations, normalisations, losses and index ops added for issue 13.
from pyengine.ops.activation import (  # noqa: E402
    elu,
    gelu,
    hardtanh,
    mish,
    prelu,
    relu6,
    silu,
    softplus,
)
from pyengine.ops.embedding import embedding, one_hot  # noqa: E402
from pyengine.ops.loss import (  # noqa: E402
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    huber_loss,
    smooth_l1_loss,
)
from pyengine.ops.norm import group_norm, instance_norm, layer_norm  # noqa: E402

__all__ += ["elu", "gelu", "prelu", "silu", "softplus", "embedding", "one_hot"]
__all__ += ["hardtanh", "mish", "relu6"]
__all__ += ["binary_cross_entropy", "binary_cross_entropy_with_logits", "huber_loss"]
__all__ += ["smooth_l1_loss", "group_norm", "instance_norm", "layer_norm"]
