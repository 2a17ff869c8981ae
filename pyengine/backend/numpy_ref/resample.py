"""NumPy twins of csrc/resample.cpp: nearest/bilinear upsampling, 2-D padding, pixel shuffle.

Each op is separable, so it is written as y = A_h @ x @ A_w^T with per-axis interpolation (or
selection) matrices built from the kernel's index rules in float32; backward is the transpose,
grad_x = A_h^T @ grad_y @ A_w.
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


def _nearest_matrix(n_in: int, n_out: int, scale_factor: float, dtype: np.dtype) -> np.ndarray:
    o = np.arange(n_out)
    if n_out == n_in:
        src = o
    elif n_out == 2 * n_in:
        src = o >> 1
    else:
        prod = o.astype(f32) * _scale(scale_factor, n_in, n_out)
        src = np.minimum(np.floor(prod).astype(np.int64), n_in - 1)
    a = np.zeros((n_out, n_in), dtype=dtype)
    a[o, src] = 1
    return a


def _linear_matrix(
    n_in: int, n_out: int, align_corners: bool, scale_factor: float, dtype: np.dtype
) -> np.ndarray:
    o = np.arange(n_out).astype(f32)
    if align_corners:
        scale = f32(n_in - 1) / f32(n_out - 1) if n_out > 1 else f32(0)
        src = scale * o
    else:
        src = _scale(scale_factor, n_in, n_out) * (o + f32(0.5)) - f32(0.5)
    src = np.maximum(src, f32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    lam = np.clip(src - i0.astype(f32), f32(0), f32(1))
    i1 = i0 + (i0 < n_in - 1)
    a = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(a, (rows, i0), (f32(1) - lam).astype(np.float64))
    np.add.at(a, (rows, i1), lam.astype(np.float64))
    return a.astype(dtype)


def _apply(a_h: np.ndarray, x: np.ndarray, a_w: np.ndarray) -> np.ndarray:
    return np.matmul(np.matmul(a_h, x), a_w.T)


def upsample_nearest2d_forward(
    x: np.ndarray, y: np.ndarray, scale_h: float, scale_w: float
) -> None:
    (H, W), (OH, OW) = x.shape[2:], y.shape[2:]
    a_h = _nearest_matrix(H, OH, scale_h, x.dtype)
    a_w = _nearest_matrix(W, OW, scale_w, x.dtype)
    y[...] = _apply(a_h, x, a_w)


def upsample_nearest2d_backward(
    grad_output: np.ndarray, grad_input: np.ndarray, scale_h: float, scale_w: float
) -> None:
    (H, W), (OH, OW) = grad_input.shape[2:], grad_output.shape[2:]
    a_h = _nearest_matrix(H, OH, scale_h, grad_output.dtype)
    a_w = _nearest_matrix(W, OW, scale_w, grad_output.dtype)
    grad_input[...] = _apply(a_h.T, grad_output, a_w.T)


def upsample_bilinear2d_forward(
    x: np.ndarray, y: np.ndarray, align_corners: bool, scale_h: float, scale_w: float
) -> None:
    (H, W), (OH, OW) = x.shape[2:], y.shape[2:]
    a_h = _linear_matrix(H, OH, align_corners, scale_h, x.dtype)
    a_w = _linear_matrix(W, OW, align_corners, scale_w, x.dtype)
    y[...] = _apply(a_h, x, a_w)


def upsample_bilinear2d_backward(
    grad_output: np.ndarray,
    grad_input: np.ndarray,
    align_corners: bool,
    scale_h: float,
    scale_w: float,
) -> None:
    (H, W), (OH, OW) = grad_input.shape[2:], grad_output.shape[2:]
    a_h = _linear_matrix(H, OH, align_corners, scale_h, grad_output.dtype)
    a_w = _linear_matrix(W, OW, align_corners, scale_w, grad_output.dtype)
    grad_input[...] = _apply(a_h.T, grad_output, a_w.T)


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


def _select_matrix(src: np.ndarray, n_in: int, dtype: np.dtype) -> np.ndarray:
    a = np.zeros((src.size, n_in), dtype=dtype)
    keep = src >= 0
    a[np.flatnonzero(keep), src[keep]] = 1
    return a


def _pad_matrices(
    shape: tuple[int, ...], pad: Sequence[int], mode: str, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    H, W = shape[2:]
    left, right, top, bottom = pad
    return (
        _select_matrix(_pad_source(H, top, bottom, mode), H, dtype),
        _select_matrix(_pad_source(W, left, right, mode), W, dtype),
    )


def pad2d_forward(
    x: np.ndarray, y: np.ndarray, pad: Sequence[int], mode: str, value: float
) -> None:
    a_h, a_w = _pad_matrices(x.shape, pad, mode, x.dtype)
    out = _apply(a_h, x, a_w)
    if mode == "constant" and value != 0:
        inside = np.outer(a_h.sum(1), a_w.sum(1))
        out = out + (1 - inside).astype(x.dtype) * x.dtype.type(value)
    y[...] = out


def pad2d_backward(
    grad_output: np.ndarray, grad_input: np.ndarray, pad: Sequence[int], mode: str
) -> None:
    a_h, a_w = _pad_matrices(grad_input.shape, pad, mode, grad_output.dtype)
    grad_input[...] = _apply(a_h.T, grad_output, a_w.T)


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
