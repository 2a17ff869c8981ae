"""``SyncBatchNorm``: batch normalisation whose training statistics span every rank's batch.

Forward all-reduces per-channel (sum x, sum x^2, count) so that every rank normalises with the
mean and biased variance of the global batch; backward all-reduces (sum dy, sum dy * x_hat) so
that the input gradient is that of the global batch. The weight and bias gradients stay local
sums, which DistributedDataParallel then averages, as in PyTorch. Statistics are accumulated in
float64 (sums over a large global batch). Outside training, or without a process group of more
than one rank, it is an ordinary BatchNorm.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyengine import distributed as dist
from pyengine.autograd import Function
from pyengine.nn.module import Module
from pyengine.nn.normalization import _BatchNorm
from pyengine.tensor import Tensor


def _channel_shape(x: np.ndarray) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _axes(x: np.ndarray) -> tuple[int, ...]:
    return (0, *range(2, x.ndim))


class SyncBatchNormFunction(Function):
    """(N, C, *) -> (N, C, *) normalised with the statistics of all ranks' batches (CPU)."""

    def forward(self, x, weight, bias, running_mean, running_var, momentum, eps):
        C = x.shape[1]
        axes = _axes(x)
        stats = np.empty(2 * C + 1, np.float64)
        stats[:C] = x.sum(axes, dtype=np.float64)
        stats[C : 2 * C] = np.square(x, dtype=np.float64).sum(axes)
        stats[2 * C] = x.size // C
        dist.iallreduce_array(stats, name="SyncBatchNorm statistics").wait()
        n = stats[2 * C]
        mean = stats[:C] / n
        var = np.maximum(stats[C : 2 * C] / n - mean * mean, 0.0)
        invstd = 1.0 / np.sqrt(var + eps)
        if running_mean is not None:
            unbiased = var * (n / max(n - 1, 1))
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean
            running_var[...] = (1 - momentum) * running_var + momentum * unbiased
        w = np.ones(C) if weight is None else weight.astype(np.float64)
        b = np.zeros(C) if bias is None else bias.astype(np.float64)
        scale = (w * invstd).astype(x.dtype)
        shift = (b - mean * w * invstd).astype(x.dtype)
        cs = _channel_shape(x)
        y = x * scale.reshape(cs) + shift.reshape(cs)
        self.save_for_backward(x, mean, invstd, w, n)
        return y

    def backward(self, g):
        x, mean, invstd, w, n = self.saved
        C = x.shape[1]
        axes = _axes(x)
        cs = _channel_shape(x)
        local = np.empty(2 * C, np.float64)
        local[:C] = g.sum(axes, dtype=np.float64)
        sum_gx = np.multiply(g, x, dtype=np.float64).sum(axes)
        local[C:] = (sum_gx - mean * local[:C]) * invstd  # sum dy * x_hat
        total = local.copy()
        dist.iallreduce_array(total, name="SyncBatchNorm gradient sums").wait()
        need_x, need_w, need_b = self.needs_input_grad[:3]
        gx = gw = gb = None
        if need_x:
            k = w * invstd
            a = (k * (-total[:C] / n + mean * invstd * total[C:] / n)).astype(x.dtype)
            c = (-k * invstd * total[C:] / n).astype(x.dtype)
            gx = g * k.astype(x.dtype).reshape(cs) + x * c.reshape(cs) + a.reshape(cs)
        if need_w:
            gw = local[C:].astype(x.dtype)
        if need_b:
            gb = local[:C].astype(x.dtype)
        return gx, gw, gb, None, None


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over (N, C, *) inputs with statistics synchronised across ranks (torch's name
    and arguments; ``process_group`` must be None, the default group)."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: Any = None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        if process_group is not None:
            raise ValueError("only the default process group (process_group=None) is supported")

    def _check_input_dim(self, x: Tensor) -> None:
        if x.ndim < 2:
            raise ValueError(f"expected at least 2D input (got {x.ndim}D input)")

    def forward(self, x: Tensor) -> Tensor:
        synced = self.training and dist.is_initialized() and dist.get_world_size() > 1
        if not synced:
            return super().forward(x)
        self._check_input_dim(x)
        if x.shape[1] != self.num_features:
            raise ValueError(f"expected {self.num_features} channels, got input of shape {x.shape}")
        if x.device.type != "cpu":
            raise RuntimeError(f"SyncBatchNorm over MPI needs CPU tensors, got {x.device}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            if self.momentum is None:
                factor = 1.0 / (int(self.num_batches_tracked.item()) + 1)
            self.num_batches_tracked += 1
        run = self.track_running_stats
        return SyncBatchNormFunction.apply(
            x,
            self.weight,
            self.bias,
            self.running_mean if run else None,
            self.running_var if run else None,
            momentum=factor,
            eps=float(self.eps),
        )

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group: Any = None) -> Module:
        """``module`` with every BatchNorm1d/2d replaced by a SyncBatchNorm sharing its
        parameters and buffers (the module itself when it is one)."""
        out = module
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            out = cls(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
                process_group,
            )
            if module.affine:
                out.weight, out.bias = module.weight, module.bias
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                out._buffers[name] = module._buffers[name]
            out.training = module.training
        for name, child in list(module._modules.items()):
            if child is not None:
                out._modules[name] = cls.convert_sync_batchnorm(child, process_group)
        return out


__all__ = ["SyncBatchNorm", "SyncBatchNormFunction"]
