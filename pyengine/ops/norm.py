"""Normalisations with PyTorch's semantics: ``batch_norm`` (csrc/norm.cpp), ``group_norm``,
``instance_norm`` and ``layer_norm`` (csrc/norm_group.cpp)."""

from __future__ import annotations

from collections.abc import Sequence

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
    """relu(batch_norm(x)) as one node. Training runs the fused kernel pair
    (batchnorm_relu_forward_train / batchnorm_relu_backward: two passes over the activation each
    way, no masked-gradient buffer); backward reads ReLU's mask from the saved output (y > 0).
    Eval mode (statistics are constants) runs the BatchNorm kernels with the ReLU in place."""

    def forward(self, x, weight, bias, running_mean, running_var, training, momentum, eps):
        if not training:
            y = super().forward(x, weight, bias, running_mean, running_var, False, momentum, eps)
            self.k.unary_forward("relu", y, y)
            self.y = y
            return y
        C = x.shape[1]
        y = self.be.empty(x.shape, x.dtype)
        mean = self.be.empty((C,), x.dtype)
        invstd = self.be.empty((C,), x.dtype)
        self.k.batchnorm_relu_forward_train(
            x, weight, bias, y, mean, invstd, running_mean, running_var, momentum, eps
        )
        self.training = True
        if any(self.needs_input_grad[:3]):
            self.save_for_backward(x, mean, invstd, weight, y)
        return y

    def backward(self, g):
        if not self.training:
            gm = self.be.empty(g.shape, g.dtype)
            self.k.unary_backward("relu", self.y, g, gm)
            self.y = None
            return super().backward(gm)
        x, mean, invstd, weight, y = self.saved
        need_x, need_w, need_b = self.needs_input_grad[:3]
        C = g.shape[1]
        gx = self.be.empty(g.shape, g.dtype) if need_x else None
        gw = self.be.empty((C,), g.dtype) if need_w else None
        gb = self.be.empty((C,), g.dtype) if need_b else None
        self.k.batchnorm_relu_backward(g, y, x, mean, invstd, weight, gx, gw, gb)
        return gx, gw, gb, None, None


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


class GroupNorm(Function):
    """Per-sample, per-group statistics of x (N, C, *); weight/bias (C,) per channel. Saves x,
    the (N, G) mean and invstd, and the weight."""

    def forward(self, x, weight, bias, groups, eps):
        N = x.shape[0]
        y = self.be.empty(x.shape, x.dtype)
        mean = self.be.empty((N, groups), x.dtype)
        invstd = self.be.empty((N, groups), x.dtype)
        self.k.groupnorm_forward(x, weight, bias, y, mean, invstd, groups, eps)
        if any(self.needs_input_grad[:3]):
            self.save_for_backward(x, mean, invstd, weight)
            self.groups = groups
        return y

    def backward(self, g):
        x, mean, invstd, weight = self.saved
        need_x, need_w, need_b = self.needs_input_grad[:3]
        C = x.shape[1]
        gx = self.be.empty(x.shape, g.dtype) if need_x else None
        gw = self.be.empty((C,), g.dtype) if need_w else None
        gb = self.be.empty((C,), g.dtype) if need_b else None
        self.k.groupnorm_backward(g, x, mean, invstd, weight, gx, gw, gb, self.groups)
        return gx, gw, gb


class LayerNorm(Function):
    """Rows of x (M, K) normalised over K; weight/bias (K,) per element."""

    def forward(self, x, weight, bias, eps):
        M = x.shape[0]
        y = self.be.empty(x.shape, x.dtype)
        mean = self.be.empty((M,), x.dtype)
        invstd = self.be.empty((M,), x.dtype)
        self.k.layernorm_forward(x, weight, bias, y, mean, invstd, eps)
        if any(self.needs_input_grad[:3]):
            self.save_for_backward(x, mean, invstd, weight)
        return y

    def backward(self, g):
        x, mean, invstd, weight = self.saved
        need_x, need_w, need_b = self.needs_input_grad[:3]
        K = x.shape[1]
        gx = self.be.empty(x.shape, g.dtype) if need_x else None
        gw = self.be.empty((K,), g.dtype) if need_w else None
        gb = self.be.empty((K,), g.dtype) if need_b else None
        self.k.layernorm_backward(g, x, mean, invstd, weight, gx, gw, gb)
        return gx, gw, gb


def _check_input(input: Tensor, who: str, min_dim: int) -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"{who}: input must be a Tensor, got {type(input).__name__}")
    if input.dtype.kind != "f":
        raise TypeError(f"{who}: expected a floating-point input, got {input.dtype}")
    if input.ndim < min_dim:
        raise ValueError(
            f"{who}: expected an input with at least {min_dim} dims, got shape {input.shape}"
        )


def _check_param(t: Tensor | None, name: str, shape: tuple[int, ...], who: str) -> None:
    if t is None:
        return
    if not isinstance(t, Tensor):
        raise TypeError(f"{who}: {name} must be a Tensor or None, got {type(t).__name__}")
    if t.shape != shape:
        raise RuntimeError(f"{who}: {name} should be of shape {shape}, got {t.shape}")


def group_norm(
    input: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Group normalisation of an (N, C, *) input, as torch.nn.functional.group_norm."""
    _check_input(input, "group_norm", 2)
    C = input.shape[1]
    if int(num_groups) < 1 or C % int(num_groups):
        raise RuntimeError(
            f"Expected number of channels in input to be divisible by num_groups, but got input "
            f"of shape {input.shape} and num_groups={num_groups}"
        )
    _check_param(weight, "weight", (C,), "group_norm")
    _check_param(bias, "bias", (C,), "group_norm")
    if eps < 0:
        raise ValueError(f"group_norm: eps must be non-negative, got {eps}")
    return GroupNorm.apply(input, weight, bias, groups=int(num_groups), eps=float(eps))


def layer_norm(
    input: Tensor,
    normalized_shape: int | Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` dims, as torch.nn.functional.layer_norm."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    shape = tuple(int(s) for s in normalized_shape)
    _check_input(input, "layer_norm", 0)
    if not shape or input.shape[input.ndim - len(shape) :] != shape or len(shape) > input.ndim:
        raise RuntimeError(
            f"Given normalized_shape={list(shape)}, expected input with shape [*, "
            f"{', '.join(str(s) for s in shape)}], but got input of size {list(input.shape)}"
        )
    _check_param(weight, "weight", shape, "layer_norm")
    _check_param(bias, "bias", shape, "layer_norm")
    if eps < 0:
        raise ValueError(f"layer_norm: eps must be non-negative, got {eps}")
    K = 1
    for s in shape:
        K *= s
    M = input.numel() // K if K else 0
    flat = [None if t is None else t.reshape(K) for t in (weight, bias)]
    y = LayerNorm.apply(input.reshape(M, K), *flat, eps=float(eps))
    return y.reshape(input.shape)


def instance_norm(
    input: Tensor,
    running_mean: Tensor | None = None,
    running_var: Tensor | None = None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Per-sample, per-channel normalisation of (N, C, *), as torch.nn.functional.instance_norm.

    Without running statistics this is group norm with one channel per group. With them, as in
    PyTorch, it is batch norm over the input viewed as (1, N * C, *) with the statistics repeated
    N times, and the updated running statistics are averaged back over N.
    """
    _check_input(input, "instance_norm", 3)
    N, C = input.shape[:2]
    for t, name in (
        (running_mean, "running_mean"),
        (running_var, "running_var"),
        (weight, "weight"),
        (bias, "bias"),
    ):
        _check_param(t, name, (C,), "instance_norm")
    if use_input_stats and running_mean is None:
        return group_norm(input, C, weight, bias, eps)
    if running_mean is None or running_var is None:
        raise RuntimeError("instance_norm: expected running_mean and running_var to be defined")
    from pyengine.autograd import no_grad

    def rep(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.reshape(1, C).expand(N, C).reshape(N * C)

    rm = rep(running_mean).detach().clone()
    rv = rep(running_var).detach().clone()
    y = batch_norm(
        input.reshape(1, N * C, *input.shape[2:]),
        rm,
        rv,
        rep(weight),
        rep(bias),
        training=bool(use_input_stats),
        momentum=momentum,
        eps=eps,
    )
    if use_input_stats:
        with no_grad():
            running_mean.copy_(rm.reshape(N, C).mean(0))
            running_var.copy_(rv.reshape(N, C).mean(0))
    return y.reshape(input.shape)
