"""NumPy twins of csrc/resample.cpp: nearest/bilinear upsampling, 2-D padding, pixel shuffle.

Per-axis source-index tables built from the kernel's rules in float32, then gathers (forward) and
np.add.at scatters (backward) over the same taps, so non-finite values spread exactly as in the
kernels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "pad2d_backward",
    "pad2d_forward",
    "pixel_shuffle_backward",
    "pixel_shuffle_forward",
    "upsample_bilinear2d_backward",
    "upsample_bilinear2d_forward",
    "upsample_nearest2d_backward",
    "upsample_nearest2d_forward",
]

f32 = np.float32


def _scale(scale_factor: float, n_in: int, n_out: int) -> np.float32:
    """PyTorch's compute_scales_value: 1/scale_factor when given, else in/out, in float32."""
    return f32(1.0 / scale_factor) if scale_factor > 0 else f32(n_in) / f32(n_out)


def _nearest_index(n_in: int, n_out: int, scale_factor: float) -> np.ndarray:
    o = np.arange(n_out)
    if n_out == n_in:
        return o
    if n_out == 2 * n_in:
        return o >> 1
    prod = o.astype(f32) * _scale(scale_factor, n_in, n_out)
    return np.minimum(np.floor(prod), n_in - 1).astype(np.int64)


def _linear_taps(
    n_in: int, n_out: int, align_corners: bool, scale_factor: float, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Left/right source index and weight of each output position (the kernel's table)."""
    o = np.arange(n_out).astype(f32)
    if align_corners:
        scale = f32(n_in - 1) / f32(n_out - 1) if n_out > 1 else f32(0)
        src = scale * o
    else:
        src = _scale(scale_factor, n_in, n_out) * (o + f32(0.5)) - f32(0.5)
    src = np.maximum(src, f32(0))
    i0 = np.minimum(np.floor(src), n_in - 1).astype(np.int64)
    lam = np.clip(src - i0.astype(f32), f32(0), f32(1))
    i1 = i0 + (i0 < n_in - 1)
    return i0, i1, (f32(1) - lam).astype(dtype), lam.astype(dtype)


# Gathers and scatters of exactly the taps the kernel reads, in its order: a matrix product would
# also multiply the zero weights of every other pixel, turning one inf into a row of NaNs.


def upsample_nearest2d_forward(
    x: np.ndarray, y: np.ndarray, scale_h: float, scale_w: float
) -> None:
    (H, W), (OH, OW) = x.shape[2:], y.shape[2:]
    th, tw = _nearest_index(H, OH, scale_h), _nearest_index(W, OW, scale_w)
    y[...] = x[:, :, th[:, None], tw[None, :]]


def upsample_nearest2d_backward(
    grad_output: np.ndarray, grad_input: np.ndarray, scale_h: float, scale_w: float
) -> None:
    (H, W), (OH, OW) = grad_input.shape[2:], grad_output.shape[2:]
    th, tw = _nearest_index(H, OH, scale_h), _nearest_index(W, OW, scale_w)
    gx = np.zeros(grad_input.shape, dtype=grad_input.dtype)
    np.add.at(gx, (slice(None), slice(None), th[:, None], tw[None, :]), grad_output)
    grad_input[...] = gx


def upsample_bilinear2d_forward(
    x: np.ndarray, y: np.ndarray, align_corners: bool, scale_h: float, scale_w: float
) -> None:
    (H, W), (OH, OW) = x.shape[2:], y.shape[2:]
    h0, h1, b0, b1 = _linear_taps(H, OH, align_corners, scale_h, x.dtype)
    w0, w1, a0, a1 = _linear_taps(W, OW, align_corners, scale_w, x.dtype)
    with np.errstate(invalid="ignore"):  # 0 * inf is NaN here, as in the kernel
        t = a0 * x[:, :, :, w0] + a1 * x[:, :, :, w1]
        y[...] = b0[:, None] * t[:, :, h0, :] + b1[:, None] * t[:, :, h1, :]


def upsample_bilinear2d_backward(
    grad_output: np.ndarray,
    grad_input: np.ndarray,
    align_corners: bool,
    scale_h: float,
    scale_w: float,
) -> None:
    (H, W), (OH, OW) = grad_input.shape[2:], grad_output.shape[2:]
    dt = grad_output.dtype
    h0, h1, b0, b1 = _linear_taps(H, OH, align_corners, scale_h, dt)
    w0, w1, a0, a1 = _linear_taps(W, OW, align_corners, scale_w, dt)
    t = np.zeros(grad_output.shape[:2] + (H, OW), dtype=dt)
    np.add.at(t, (slice(None), slice(None), h0), b0[:, None] * grad_output)
    np.add.at(t, (slice(None), slice(None), h1), b1[:, None] * grad_output)
    gx = np.zeros(grad_input.shape, dtype=dt)
    np.add.at(gx, (slice(None), slice(None), slice(None), w0), a0 * t)
    np.add.at(gx, (slice(None), slice(None), slice(None), w1), a1 * t)
    grad_input[...] = gx


def _pad_source(n_in: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """Source index of each padded position along one axis; -1 marks a constant fill."""
    if mode not in ("constant", "reflect", "replicate"):
        raise ValueError(f"unknown padding mode '{mode}' (expected constant, reflect or replicate)")
    if mode == "reflect" and not (lo < n_in and hi < n_in):
        raise ValueError(f"reflect padding ({lo}, {hi}) must be smaller than the size {n_in}")
    s = np.arange(max(n_in + lo + hi, 0)) - lo
    if mode == "constant":
        return np.where((s >= 0) & (s < n_in), s, -1)
    if mode == "reflect":
        s = np.abs(s)
        return np.where(s >= n_in, 2 * (n_in - 1) - s, s)
    return np.clip(s, 0, n_in - 1)


def _pad_sources(
    shape: tuple[int, ...], pad: Sequence[int], mode: str
) -> tuple[np.ndarray, np.ndarray]:
    H, W = shape[2:]
    left, right, top, bottom = pad
    return _pad_source(H, top, bottom, mode), _pad_source(W, left, right, mode)


def pad2d_forward(
    x: np.ndarray, y: np.ndarray, pad: Sequence[int], mode: str, value: float
) -> None:
    th, tw = _pad_sources(x.shape, pad, mode)
    out = np.full(y.shape, value, dtype=y.dtype)
    rows, cols = np.flatnonzero(th >= 0), np.flatnonzero(tw >= 0)
    out[:, :, rows[:, None], cols[None, :]] = x[:, :, th[rows][:, None], tw[cols][None, :]]
    y[...] = out


def pad2d_backward(
    grad_output: np.ndarray, grad_input: np.ndarray, pad: Sequence[int], mode: str
) -> None:
    th, tw = _pad_sources(grad_input.shape, pad, mode)
    rows, cols = np.flatnonzero(th >= 0), np.flatnonzero(tw >= 0)
    gx = np.zeros(grad_input.shape, dtype=grad_input.dtype)
    idx = (slice(None), slice(None), th[rows][:, None], tw[cols][None, :])
    np.add.at(gx, idx, grad_output[:, :, rows[:, None], cols[None, :]])
    grad_input[...] = gx


def pixel_shuffle_forward(x: np.ndarray, y: np.ndarray, upscale_factor: int) -> None:
    """(N, C*r*r, H, W) -> (N, C, H*r, W*r) as a reshape + transpose, as PyTorch defines it."""
    r = upscale_factor
    N, Crr, H, W = x.shape
    t = x.reshape(N, Crr // (r * r), r, r, H, W).transpose(0, 1, 4, 2, 5, 3)
    y[...] = t.reshape(y.shape)


def pixel_shuffle_backward(
    grad_output: np.ndarray, grad_input: np.ndarray, upscale_factor: int
) -> None:
    """The inverse permutation (pixel unshuffle): (N, C, H*r, W*r) -> (N, C*r*r, H, W)."""
    r = upscale_factor
    N, C, Hr, Wr = grad_output.shape
    t = grad_output.reshape(N, C, Hr // r, r, Wr // r, r).transpose(0, 1, 3, 5, 2, 4)
    grad_input[...] = t.reshape(grad_input.shape)
