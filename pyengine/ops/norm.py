"""Batch normalisation (csrc/norm.cpp): ``batch_norm`` with PyTorch's semantics."""

from __future__ import annotations

from pyengine.autograd import Function
from pyengine.tensor import Tensor


class BatchNorm(Function):
    """y = (x - mean) * invstd * weight + bias over dim 1 of x (N, C, *).

    Training uses the batch statistics (biased variance) and updates the running statistics in
    place; eval uses the running statistics, so its input gradient is a per-channel scale. The
    backward needs x (a reference, not a copy), the per-channel mean and invstd, and the weight.
    """

    def forward(self, x, weight, bias, running_mean, running_var, training, momentum, eps):
        C = x.shape[1]
        y = self.be.empty(x.shape, x.dtype)
        mean = self.be.empty((C,), x.dtype)
        invstd = self.be.empty((C,), x.dtype)
        if training:
            self.k.batchnorm_forward_train(
                x, weight, bias, y, mean, invstd, running_mean, running_var, momentum, eps
            )
        else:
            self.k.batchnorm_forward_eval(
                x, running_mean, running_var, weight, bias, y, mean, invstd, eps
            )
        need_x, need_w, need_b = self.needs_input_grad[:3]
        if need_x or need_w or need_b:
            # x is read only for sum(dy * x_hat): by grad_weight, or by grad_input in training.
            keep_x = need_w or (need_x and training)
            self.save_for_backward(x if keep_x else None, mean, invstd, weight)
            self.training = training
        return y

    def backward(self, g):
        x, mean, invstd, weight = self.saved
        need_x, need_w, need_b = self.needs_input_grad[:3]
        C = g.shape[1]
        gx = self.be.empty(g.shape, g.dtype) if need_x else None
        gw = self.be.empty((C,), g.dtype) if need_w else None
        gb = self.be.empty((C,), g.dtype) if need_b else None
        # When x was not kept the kernel never reads it; g stands in with the same shape.
        self.k.batchnorm_backward(
            g, g if x is None else x, mean, invstd, weight, gx, gw, gb, self.training
        )
        return gx, gw, gb, None, None


class BatchNormReLU(BatchNorm):
    """relu(batch_norm(x)) as one node: the ReLU runs in place on the normalised output (no
    second activation buffer, one graph node fewer) and backward masks the gradient with the
    saved output (y > 0) before the BatchNorm backward. The kernels stay the BatchNorm and ReLU
    ones (two passes over the activation), the saving is the buffer and the node."""

    def forward(self, x, weight, bias, running_mean, running_var, training, momentum, eps):
        y = super().forward(x, weight, bias, running_mean, running_var, training, momentum, eps)
        self.k.unary_forward("relu", y, y)
        self.y = y
        return y

    def backward(self, g):
        gm = self.be.empty(g.shape, g.dtype)
        self.k.unary_backward("relu", self.y, g, gm)
        self.y = None
        return super().backward(gm)


def _check_channels(t: Tensor | None, name: str, C: int) -> None:
    if t is None:
        return
    if not isinstance(t, Tensor):
        raise TypeError(f"batch_norm: {name} must be a Tensor or None, got {type(t).__name__}")
    if t.shape != (C,):
        raise RuntimeError(
            f"batch_norm: {name} should be of shape ({C},) to match the {C} channels of the "
            f"input, got {t.shape}"
        )


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    relu: bool = False,
) -> Tensor:
    """Batch normalisation of an (N, C, *) input over N and the trailing dims, as in PyTorch;
    ``relu=True`` (pyengine's own) returns relu(batch_norm(...)) as one node (BatchNormReLU)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"batch_norm: input must be a Tensor, got {type(input).__name__}")
    if input.ndim < 2:
        raise ValueError(
            f"batch_norm: expected an input of shape (N, C, *) with at least 2 dims, got "
            f"{input.shape}"
        )
    C = input.shape[1]
    for t, name in (
        (running_mean, "running_mean"),
        (running_var, "running_var"),
        (weight, "weight"),
        (bias, "bias"),
    ):
        _check_channels(t, name, C)
    if (running_mean is None) != (running_var is None):
        raise RuntimeError("batch_norm: running_mean and running_var must be given together")
    if not training and running_mean is None:
        raise RuntimeError("batch_norm: running_mean and running_var must be defined in eval mode")
    if eps < 0:
        raise ValueError(f"batch_norm: eps must be non-negative, got {eps}")
    if training and input.numel() // max(C, 1) <= 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {input.shape}"
        )
    momentum = 0.0 if momentum is None else float(momentum)
    return (BatchNormReLU if relu else BatchNorm).apply(
        input,
        weight,
        bias,
        running_mean,
        running_var,
        training=bool(training),
        momentum=momentum,
        eps=float(eps),
    )
