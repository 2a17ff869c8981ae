"""Resampling ops (csrc/resample.cpp): interpolate (nearest, bilinear), pad (constant, reflect,
replicate; circular composed from slices and cat) and pixel (un)shuffle, with PyTorch's coordinate
conventions and argument errors."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from pyengine import backends
from pyengine.autograd import Function
from pyengine.tensor import Tensor

_MODES = ("nearest", "bilinear")
_PAD_MODES = ("constant", "reflect", "replicate", "circular")


class Upsample(Function):
    """``scales``: the user's scale factors, or 0 where the output size was given; PyTorch uses
    1/scale_factor (not in/out) for the source coordinates when one was given."""

    def forward(self, x, mode, out_shape, align_corners, scale_h, scale_w):
        self.mode, self.xshape = mode, tuple(x.shape)
        self.params = (
            (align_corners, scale_h, scale_w) if mode == "bilinear" else (scale_h, scale_w)
        )
        y = self.be.empty(out_shape, x.dtype)
        getattr(self.k, f"upsample_{mode}2d_forward")(x, y, *self.params)
        return y

    def backward(self, g):
        gx = self.be.empty(self.xshape, g.dtype)
        backends.alert_not_deterministic(f"upsample_{self.mode}2d backward", self.device)
        getattr(self.k, f"upsample_{self.mode}2d_backward")(g, gx, *self.params)
        return (gx,)


def _two(v: Any, name: str) -> list[Any]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(
                f"interpolate: {name} shape must match input shape; input is 2D, {name} is "
                f"{len(v)}D"
            )
        return list(v)
    return [v, v]


def interpolate(
    input: Tensor,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
) -> Tensor:
    if not isinstance(input, Tensor):
        raise TypeError(f"interpolate: input must be a Tensor, got {type(input).__name__}")
    if mode not in _MODES:
        raise NotImplementedError(
            f"interpolate: mode '{mode}' is not supported (available: {', '.join(_MODES)})"
        )
    if input.ndim != 4:
        raise ValueError(
            f"interpolate: expected a 4-D (N, C, H, W) input for mode '{mode}', got shape "
            f"{tuple(input.shape)}"
        )
    if input.dtype.kind != "f":
        raise TypeError(f"interpolate: expected a floating-point input, got {input.dtype}")
    if align_corners is not None and not isinstance(align_corners, (bool, np.bool_)):
        raise TypeError(f"interpolate: align_corners must be a bool, got {align_corners!r}")
    if align_corners is not None and mode == "nearest":
        raise ValueError(
            "align_corners option can only be set with the interpolating modes: "
            "linear | bilinear | bicubic | trilinear"
        )
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is None and scale_factor is None:
        raise ValueError("either size or scale_factor should be defined")
    H, W = input.shape[2:]
    if size is not None:
        out = _two(size, "size")
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in out):
            raise TypeError(f"interpolate: size must be an int or a pair of ints, got {size!r}")
        scales = [0.0, 0.0]
    else:
        factors = _two(scale_factor, "scale_factor")
        if not all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            for v in factors
        ):
            raise TypeError(
                f"interpolate: scale_factor must be a float or a pair of floats, got "
                f"{scale_factor!r}"
            )
        scales = [float(v) for v in factors]
        if not all(math.isfinite(v) and v > 0 for v in scales):
            raise ValueError(f"interpolate: scale_factor must be positive, got {scale_factor!r}")
        out = [math.floor(float(n) * f) for n, f in zip((H, W), scales)]
    if min(H, W, *out) <= 0:
        raise RuntimeError(
            f"interpolate: input and output sizes should be greater than 0, but got input "
            f"(H: {H}, W: {W}) output (H: {out[0]}, W: {out[1]})"
        )
    shape = (input.shape[0], input.shape[1], int(out[0]), int(out[1]))
    return Upsample.apply(input, mode, shape, bool(align_corners), scales[0], scales[1])


class Pad2d(Function):
    def forward(self, x, pad, mode, value, out_shape):
        self.pad, self.mode, self.xshape = pad, mode, tuple(x.shape)
        y = self.be.empty(out_shape, x.dtype)
        self.k.pad2d_forward(x, y, pad, mode, value)
        return y

    def backward(self, g):
        gx = self.be.empty(self.xshape, g.dtype)
        self.k.pad2d_backward(g, gx, self.pad, self.mode)
        return (gx,)


def pad(
    input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None
) -> Tensor:
    """Pad the last two dims of a 3-D or 4-D input by ``pad`` = (left, right[, top, bottom]).
    Negative pads crop."""
    if not isinstance(input, Tensor):
        raise TypeError(f"pad: input must be a Tensor, got {type(input).__name__}")
    if mode not in _PAD_MODES:
        raise NotImplementedError(
            f"pad: mode '{mode}' is not supported (available: {', '.join(_PAD_MODES)})"
        )
    if value is not None and mode != "constant":
        raise ValueError(f'Padding mode "{mode}" doesn\'t take in value argument')
    if not isinstance(pad, (tuple, list)) or not all(
        isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in pad
    ):
        raise TypeError(f"pad: pad must be a tuple of ints, got {pad!r}")
    if len(pad) % 2:
        raise ValueError("Padding length must be divisible by 2")
    if len(pad) not in (2, 4):
        raise ValueError(
            f"pad: expected 2 or 4 pad values (left, right[, top, bottom]), got {pad!r}"
        )
    if input.ndim not in (3, 4):
        raise ValueError(f"pad: expected a 3-D or 4-D input, got shape {tuple(input.shape)}")
    p = tuple(int(v) for v in pad) + (0,) * (4 - len(pad))
    x = input.unsqueeze(0) if input.ndim == 3 else input
    N, C, H, W = x.shape
    if mode == "reflect":
        for (lo, hi), n, dim in (
            ((p[0], p[1]), W, input.ndim - 1),
            ((p[2], p[3]), H, input.ndim - 2),
        ):
            if lo >= n or hi >= n:
                raise ValueError(
                    f"pad: padding size should be less than the corresponding input dimension, "
                    f"but got padding ({lo}, {hi}) at dimension {dim} of input {list(input.shape)}"
                )
    OH, OW = H + p[2] + p[3], W + p[0] + p[1]
    if OH < 0 or OW < 0:
        raise RuntimeError(
            f"pad: the input size ({H}, {W}) plus padding {tuple(pad)} gives a negative output "
            f"size ({OH}, {OW})"
        )
    if mode == "replicate" and (H == 0 or W == 0):
        raise ValueError(
            f"pad: replicate padding needs a non-empty input, got {tuple(input.shape)}"
        )
    if mode == "circular":
        y = _circular(x, p)
    else:
        y = Pad2d.apply(x, p, mode, 0.0 if value is None else float(value), (N, C, OH, OW))
    return y.squeeze(0) if input.ndim == 3 else y


def _circular(x: Tensor, p: tuple[int, ...]) -> Tensor:
    """Wrap-around padding as slices and a cat per dim (a copy of the border strips; its backward
    is the slices' scatter-add), so it needs no kernel of its own."""
    from pyengine.ops.shape import cat

    for (lo, hi), dim in (((p[0], p[1]), 3), ((p[2], p[3]), 2)):
        n = x.shape[dim]
        if lo < 0 or hi < 0 or lo > n or hi > n:
            raise ValueError(
                f"pad: circular padding ({lo}, {hi}) must be non-negative and at most the input "
                f"size {n} (padding value causes wrapping around more than once otherwise)"
            )
        if lo == hi == 0:
            continue
        sl = [slice(None)] * 4
        parts = []
        if lo:
            sl[dim] = slice(n - lo, n)
            parts.append(x[tuple(sl)])
        parts.append(x)
        if hi:
            sl[dim] = slice(0, hi)
            parts.append(x[tuple(sl)])
        x = cat(parts, dim)
    return x


class PixelShuffle(Function):
    """``to_space``: pixel_shuffle (depth to space); else pixel_unshuffle. Each direction's
    backward is the other direction's kernel, since the map is a permutation."""

    def forward(self, x, r, to_space, out_shape):
        self.r, self.to_space, self.xshape = r, to_space, tuple(x.shape)
        y = self.be.empty(out_shape, x.dtype)
        kernel = self.k.pixel_shuffle_forward if to_space else self.k.pixel_shuffle_backward
        kernel(x, y, r)
        return y

    def backward(self, g):
        gx = self.be.empty(self.xshape, g.dtype)
        kernel = self.k.pixel_shuffle_backward if self.to_space else self.k.pixel_shuffle_forward
        kernel(g, gx, self.r)
        return (gx,)


def _shuffle_args(input: Tensor, factor: int, name: str, arg: str) -> tuple[int, ...]:
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
    if not isinstance(factor, (int, np.integer)) or isinstance(factor, bool):
        raise TypeError(f"{name}: {arg} must be an int, got {factor!r}")
    if factor <= 0:
        raise RuntimeError(f"{name}: {arg} must be greater than 0, but got {factor}")
    if input.ndim < 3:
        raise RuntimeError(
            f"{name} expects input to have at least 3 dimensions, but got input with "
            f"{input.ndim} dimension(s)"
        )
    if input.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point input, got {input.dtype}")
    return tuple(input.shape)


def _as_4d(input: Tensor) -> Tensor:
    lead = input.shape[:-3]
    return input.reshape((int(np.prod(lead, dtype=np.int64)),) + tuple(input.shape[-3:]))


def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    """(*, C*r*r, H, W) -> (*, C, H*r, W*r) with ``r = upscale_factor`` (Shi et al. 2016)."""
    shape = _shuffle_args(input, upscale_factor, "pixel_shuffle", "upscale_factor")
    r = int(upscale_factor)
    c, h, w = shape[-3:]
    if c % (r * r):
        raise RuntimeError(
            f"pixel_shuffle expects its input's 'channel' dimension to be divisible by the "
            f"square of upscale_factor, but input.size(-3)={c} is not divisible by {r * r}"
        )
    out = shape[:-3] + (c // (r * r), h * r, w * r)
    x = _as_4d(input)
    y = PixelShuffle.apply(x, r, True, (x.shape[0],) + out[-3:])
    return y.reshape(out)


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
    """(*, C, H*r, W*r) -> (*, C*r*r, H, W) with ``r = downscale_factor``; the inverse of
    ``pixel_shuffle``."""
    shape = _shuffle_args(input, downscale_factor, "pixel_unshuffle", "downscale_factor")
    r = int(downscale_factor)
    c, h, w = shape[-3:]
    for size, dim in ((h, "height"), (w, "width")):
        if size % r:
            raise RuntimeError(
                f"pixel_unshuffle expects {dim} to be divisible by downscale_factor, but "
                f"input.size({-2 if dim == 'height' else -1})={size} is not divisible by {r}"
            )
    out = shape[:-3] + (c * r * r, h // r, w // r)
    x = _as_4d(input)
    y = PixelShuffle.apply(x, r, False, (x.shape[0],) + out[-3:])
    return y.reshape(out)
