"""Batch normalisation layers, with torch.nn's parameters, buffers and state-dict layout."""

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
