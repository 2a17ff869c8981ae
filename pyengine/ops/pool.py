"""Pooling ops (csrc/pool.cpp): max_pool2d, avg_pool2d and adaptive_avg_pool2d.

Arguments are validated here with PyTorch's rules and messages (the kernels check them again).
Inputs are (N, C, H, W) or unbatched (C, H, W), as in PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pyengine import backends
from pyengine.autograd import Function
from pyengine.tensor import Tensor

IntPair = int | Sequence[int]


def _pair(v: Any, name: str, op: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v), int(v)
    if isinstance(v, (tuple, list)) and all(
        isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in v
    ):
        if len(v) == 1:
            return int(v[0]), int(v[0])
        if len(v) == 2:
            return int(v[0]), int(v[1])
    raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")


def _batched(x: Tensor, op: str) -> tuple[Tensor, bool]:
    """(C,H,W) -> (1,C,H,W); returns the 4-D tensor and whether a batch dim was added."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(x).__name__}")
    if x.ndim not in (3, 4) or any(s == 0 for s in x.shape[-3:]):
        raise ValueError(
            f"{op}: expected a non-empty 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape "
            f"{tuple(x.shape)}"
        )
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating-point input, got {x.dtype}")
    return (x.unsqueeze(0), True) if x.ndim == 3 else (x, False)


def pool_output_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling_output_shape: in ceil_mode the last window must start inside the input
    or the left padding."""
    out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def _pool_shape(
    x: Tensor,
    k: tuple[int, int],
    s: tuple[int, int],
    p: tuple[int, int],
    d: tuple[int, int],
    ceil_mode: bool,
    op: str,
) -> tuple[int, int, int, int]:
    if min(k) <= 0:
        raise ValueError(f"{op}: kernel_size must be greater than zero, but got {k}")
    if min(s) <= 0:
        raise ValueError(f"{op}: stride must be greater than zero, but got {s}")
    if min(d) <= 0:
        raise ValueError(f"{op}: dilation must be greater than zero, but got {d}")
    if min(p) < 0 or p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(
            f"{op}: pad should be at most half of effective kernel size, but got pad={p}, "
            f"kernel_size={k} and dilation={d}"
        )
    N, C, H, W = x.shape
    if max(*k, *s, *p, *d) >= 2**31:
        # PyTorch's pooling parameters are C ints (the kernels here would cope, in int64).
        raise RuntimeError(f"{op}: value cannot be converted to type int without overflow")
    OH = pool_output_size(H, k[0], s[0], p[0], d[0], ceil_mode)
    OW = pool_output_size(W, k[1], s[1], p[1], d[1], ceil_mode)
    if OH < 1 or OW < 1:
        raise RuntimeError(
            f"{op}: Given input size: ({C}x{H}x{W}). Calculated output size: ({C}x{OH}x{OW}). "
            "Output size is too small"
        )
    return N, C, OH, OW


class MaxPool2d(Function):
    """Saves only the int64 argmax indices (flat within each H*W plane, as PyTorch)."""

    def forward(self, x, kernel_size, stride, padding, dilation, ceil_mode, out_shape):
        y = self.be.empty(out_shape, x.dtype)
        idx = self.be.empty(out_shape, np.dtype(np.int64))
        self.k.maxpool2d_forward(x, y, idx, kernel_size, stride, padding, dilation, ceil_mode)
        self.xshape = tuple(x.shape)
        if self.needs_input_grad[0]:
            self.save_for_backward(idx)
        return y, idx

    def backward(self, g):
        (idx,) = self.saved
        gx = self.be.empty(self.xshape, g.dtype)
        backends.alert_not_deterministic("max_pool2d backward", self.device)
        self.k.maxpool2d_backward(g, idx, gx)
        return (gx,)


def max_pool2d(
    input: Tensor,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    op = "max_pool2d"
    x, added = _batched(input, op)
    k = _pair(kernel_size, "kernel_size", op)
    s = (
        k
        if stride is None or (isinstance(stride, (tuple, list)) and not stride)
        else _pair(stride, "stride", op)
    )
    p, d = _pair(padding, "padding", op), _pair(dilation, "dilation", op)
    shape = _pool_shape(x, k, s, p, d, bool(ceil_mode), op)
    y, idx = MaxPool2d.apply(x, k, s, p, d, bool(ceil_mode), shape)
    if added:
        y, idx = y.squeeze(0), idx.squeeze(0)
    return (y, idx) if return_indices else y


class AvgPool2d(Function):
    def forward(
        self, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor, out_shape
    ):
        self.params = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor)
        self.xshape = tuple(x.shape)
        y = self.be.empty(out_shape, x.dtype)
        self.k.avgpool2d_forward(x, y, *self.params)
        return y

    def backward(self, g):
        gx = self.be.empty(self.xshape, g.dtype)
        backends.alert_not_deterministic("avg_pool2d backward", self.device)
        self.k.avgpool2d_backward(g, gx, *self.params)
        return (gx,)


def avg_pool2d(
    input: Tensor,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    op = "avg_pool2d"
    x, added = _batched(input, op)
    k = _pair(kernel_size, "kernel_size", op)
    s = (
        k
        if stride is None or (isinstance(stride, (tuple, list)) and not stride)
        else _pair(stride, "stride", op)
    )
    p = _pair(padding, "padding", op)
    if divisor_override is not None and (
        not isinstance(divisor_override, (int, np.integer)) or isinstance(divisor_override, bool)
    ):
        raise TypeError(f"{op}: divisor_override must be an int, got {divisor_override!r}")
    if divisor_override is not None and divisor_override <= 0:
        raise ValueError(f"{op}: divisor_override must be a positive int, got {divisor_override!r}")
    shape = _pool_shape(x, k, s, p, (1, 1), bool(ceil_mode), op)
    y = AvgPool2d.apply(
        x, k, s, p, bool(ceil_mode), bool(count_include_pad), int(divisor_override or 0), shape
    )
    return y.squeeze(0) if added else y


class AdaptiveAvgPool2d(Function):
    def forward(self, x, out_shape):
        self.xshape = tuple(x.shape)
        y = self.be.empty(out_shape, x.dtype)
        self.k.adaptive_avgpool2d_forward(x, y)
        return y

    def backward(self, g):
        gx = self.be.empty(self.xshape, g.dtype)
        backends.alert_not_deterministic("adaptive_avg_pool2d backward", self.device)
        self.k.adaptive_avgpool2d_backward(g, gx)
        return (gx,)


def adaptive_avg_pool2d(input: Tensor, output_size: int | None | Sequence[int | None]) -> Tensor:
    """``output_size``: an int, or a pair whose None entries keep the input's size."""
    op = "adaptive_avg_pool2d"
    x, added = _batched(input, op)
    sizes = list(output_size) if isinstance(output_size, (tuple, list)) else [output_size] * 2
    if len(sizes) != 2:
        raise TypeError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    out = [x.shape[2 + i] if v is None else v for i, v in enumerate(sizes)]
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in out):
        raise TypeError(f"{op}: output_size must hold ints or None, got {output_size!r}")
    if min(out) <= 0:
        raise ValueError(f"{op}: output_size must be positive, got {output_size!r}")
    y = AdaptiveAvgPool2d.apply(x, (x.shape[0], x.shape[1], int(out[0]), int(out[1])))
    return y.squeeze(0) if added else y
