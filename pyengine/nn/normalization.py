"""Normalisation layers (BatchNorm1d/2d, LayerNorm, GroupNorm, InstanceNorm2d), with torch.nn's
parameters, buffers and state-dict layout."""

from __future__ import annotations

import numpy as np

from pyengine.autograd import no_grad
from pyengine.nn import functional as F
from pyengine.nn.module import Module, Parameter
from pyengine.tensor import Tensor


class _BatchNorm(Module):
    """Shared by BatchNorm1d/2d. ``momentum=None`` gives the cumulative moving average
    (1 / num_batches_tracked); ``track_running_stats=False`` always normalises with batch
    statistics and keeps no buffers."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__()
        if int(num_features) <= 0:
            raise ValueError(f"num_features must be positive, got {num_features}")
        self.num_features = int(num_features)
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        C = self.num_features
        if affine:
            self.weight = Parameter(Tensor(np.ones(C, np.float32)))
            self.bias = Parameter(Tensor(np.zeros(C, np.float32)))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(C, np.float32)))
            self.register_buffer("running_var", Tensor(np.ones(C, np.float32)))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            with no_grad():
                self.running_mean.zero_()
                self.running_var.fill_(1.0)
                self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            with no_grad():
                self.weight.fill_(1.0)
                self.bias.zero_()

    def _check_input_dim(self, x: Tensor) -> None:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        factor = 0.0 if self.momentum is None else self.momentum
        tracking = self.training and self.track_running_stats
        if tracking and self.momentum is None:
            # Only the cumulative average needs the count on the host (a sync on a GPU).
            factor = 1.0 / (int(self.num_batches_tracked.item()) + 1)
        # Batch statistics in training, and always when there are no running statistics.
        use_batch = self.training or self.running_mean is None
        update = not self.training or self.track_running_stats
        y = F.batch_norm(
            x,
            self.running_mean if update else None,
            self.running_var if update else None,
            self.weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
        )
        if tracking:
            self.num_batches_tracked += 1
        return y

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Normalises (N, C) or (N, C, L) inputs per channel."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.ndim not in (2, 3):
            raise ValueError(f"expected 2D or 3D input (got {x.ndim}D input)")


class BatchNorm2d(_BatchNorm):
    """Normalises (N, C, H, W) inputs per channel."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(f"expected 4D input (got {x.ndim}D input)")


def _affine_params(m: Module, shape: tuple[int, ...], affine: bool, bias: bool = True) -> None:
    if affine:
        m.weight = Parameter(Tensor(np.ones(shape, np.float32)))
        if bias:
            m.bias = Parameter(Tensor(np.zeros(shape, np.float32)))
        else:
            m.register_parameter("bias", None)
    else:
        m.register_parameter("weight", None)
        m.register_parameter("bias", None)


class LayerNorm(Module):
    """Normalises over the trailing ``normalized_shape`` dims; elementwise affine (weight, bias)
    of that shape."""

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        _affine_params(self, self.normalized_shape, elementwise_affine, bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        )


class GroupNorm(Module):
    def __init__(
        self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True
    ) -> None:
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups:
            raise ValueError("num_channels must be divisible by num_groups")
        self.num_groups, self.num_channels = num_groups, num_channels
        self.eps, self.affine = eps, affine
        _affine_params(self, (num_channels,), affine)

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class InstanceNorm2d(Module):
    """Per-sample, per-channel normalisation of (N, C, H, W) or (C, H, W) inputs; torch's
    defaults (affine=False, track_running_stats=False)."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
    ) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        _affine_params(self, (num_features,), affine)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, np.float32)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, np.float32)))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in (3, 4):
            raise ValueError(f"expected 3D or 4D input (got {x.ndim}D input)")
        if x.shape[-3] != self.num_features and self.affine:
            raise ValueError(
                f"expected input's size at dim={x.ndim - 3} to match num_features "
                f"({self.num_features}), but got: {x.shape[-3]}."
            )
        batched = x if x.ndim == 4 else x.unsqueeze(0)
        use_input_stats = self.training or not self.track_running_stats
        y = F.instance_norm(
            batched,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            use_input_stats,
            self.momentum,
            self.eps,
        )
        # torch's InstanceNorm keeps num_batches_tracked but never advances it.
        return y if x.ndim == 4 else y.squeeze(0)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )
