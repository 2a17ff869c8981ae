"""Activations with parameters (csrc/activation.cpp): gelu, elu, silu, softplus, mish, hardtanh,
relu6, prelu, and the
elementwise maps the losses compose from (smooth L1, Huber, the clamped log of BCE)."""

from __future__ import annotations

from pyengine.autograd import Function
from pyengine.tensor import Tensor


class Activation(Function):
    """y = op(x); the backward reads x (every gradient here is a cheap function of it)."""

    def forward(self, x, op: str, alpha: float = 0.0, beta: float = 0.0):
        self.op, self.alpha, self.beta = op, float(alpha), float(beta)
        y = self.be.empty(x.shape, x.dtype)
        self.k.activation_forward(op, x, y, self.alpha, self.beta)
        if self.needs_input_grad[0]:
            self.save_for_backward(x)
        return y

    def backward(self, g):
        (x,) = self.saved
        gx = self.be.empty(x.shape, g.dtype)
        self.k.activation_backward(self.op, x, g, gx, self.alpha, self.beta)
        return (gx,)


class PReLU(Function):
    """y = x > 0 ? x : w_c x with w (1,) or (C,) over dim 1 of x."""

    def forward(self, x, weight):
        y = self.be.empty(x.shape, x.dtype)
        self.k.prelu_forward(x, weight, y)
        if any(self.needs_input_grad):
            self.save_for_backward(x, weight)
        return y

    def backward(self, g):
        x, weight = self.saved
        gx = self.be.empty(x.shape, g.dtype) if self.needs_input_grad[0] else None
        gw = self.be.empty(weight.shape, g.dtype) if self.needs_input_grad[1] else None
        self.k.prelu_backward(x, weight, g, gx, gw)
        return gx, gw


def _check(x: Tensor, who: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{who}: input must be a Tensor, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"{who}: expected a floating-point input, got {x.dtype}")


def activation(x: Tensor, op: str, alpha: float = 0.0, beta: float = 0.0) -> Tensor:
    _check(x, op)
    return Activation.apply(x, op=op, alpha=alpha, beta=beta)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate argument must be either none or tanh, got {approximate!r}")
    return activation(input, "gelu" if approximate == "none" else "gelu_tanh")


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    return activation(input, "elu", alpha)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    return activation(input, "silu")


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    if beta == 0:
        raise ValueError("softplus: beta must be non-zero")
    return activation(input, "softplus", beta, threshold)


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    return activation(input, "mish")


def hardtanh(
    input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False
) -> Tensor:
    if max_val < min_val:
        raise ValueError("max_val must be greater than or equal to min_val")
    return activation(input, "hardtanh", min_val, max_val)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    return hardtanh(input, 0.0, 6.0)


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    _check(input, "prelu")
    if not isinstance(weight, Tensor):
        raise TypeError(f"prelu: weight must be a Tensor, got {type(weight).__name__}")
    C = input.shape[1] if input.ndim >= 2 else 1
    if weight.ndim != 1 or weight.shape[0] not in (1, C):
        raise RuntimeError(
            f"Mismatch of parameter numbers and input channel size. Found parameter numbers = "
            f"{weight.numel()} and channel size = {C}."
        )
    return PReLU.apply(input, weight)
