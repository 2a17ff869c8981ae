"""Losses composed from kernels (csrc/activation.cpp maps + elementwise/reduce ops), with
torch.nn.functional's names, arguments and reductions."""

from __future__ import annotations

import numpy as np

from pyengine.ops.activation import activation
from pyengine.tensor import Tensor


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{reduction} is not a valid value for reduction")


def _check_pair(input: Tensor, target: Tensor, who: str) -> None:
    for t, name in ((input, "input"), (target, "target")):
        if not isinstance(t, Tensor):
            raise TypeError(f"{who}: {name} must be a Tensor, got {type(t).__name__}")
    if input.dtype.kind != "f":
        raise TypeError(f"{who}: expected a floating-point input, got {input.dtype}")
    if target.shape != input.shape:
        raise ValueError(
            f"Using a target size ({target.shape}) that is different to the input size "
            f"({input.shape}) is deprecated. Please ensure they have the same size."
        )


def binary_cross_entropy(
    input: Tensor, target: Tensor, weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """-w (t log(x) + (1 - t) log(1 - x)) with each log clamped at -100, as PyTorch does."""
    _check_pair(input, target, "binary_cross_entropy")
    x = input.detach().numpy()
    if x.size and not (np.all(x >= 0) and np.all(x <= 1)):
        raise RuntimeError("all elements of input should be between 0 and 1")
    target = target.to(input.dtype)
    loss = -(
        target * activation(input, "log_clamped")
        + (1 - target) * activation(1 - input, "log_clamped")
    )
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """(1 - t) x + (1 + (pos_weight - 1) t) softplus(-x): PyTorch's stable form."""
    _check_pair(input, target, "binary_cross_entropy_with_logits")
    target = target.to(input.dtype)
    sp = activation(-input, "softplus", 1.0, float("inf"))
    if pos_weight is not None:
        sp = sp * ((pos_weight - 1) * target + 1)
    loss = (1 - target) * input + sp
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def smooth_l1_loss(
    input: Tensor, target: Tensor, reduction: str = "mean", beta: float = 1.0
) -> Tensor:
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    return _reduce(activation(input - target, "smooth_l1", float(beta)), reduction)


def huber_loss(
    input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0
) -> Tensor:
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    return _reduce(activation(input - target, "huber", float(delta)), reduction)
