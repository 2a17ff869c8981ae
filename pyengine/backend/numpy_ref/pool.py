"""NumPy twins of csrc/pool.cpp: max, average and adaptive average pooling over NCHW planes.

Each loops over the kernel taps (or the adaptive windows) and vectorises over everything else;
the tap order and comparison rule are the kernel's, so argmax indices match exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "adaptive_avgpool2d_backward",
    "adaptive_avgpool2d_forward",
    "avgpool2d_backward",
    "avgpool2d_forward",
    "maxpool2d_backward",
    "maxpool2d_forward",
]


def _taps(o: int, k: int, s: int, p: int, d: int, n: int, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Input index of tap i for every output position along one axis, clipped, and its validity."""
    idx = np.arange(o) * s - p + i * d
    valid = (idx >= 0) & (idx < n)
    return np.clip(idx, 0, n - 1), valid


def _live_taps(o: int, k: int, s: int, p: int, d: int, n: int) -> range:
    """Taps i that land inside [0, n) for some output: i*d in [p - (o-1)*s, n - 1 + p]. Looping
    over these alone keeps a huge kernel (2**40 taps, all but a few in the padding) fast."""
    lo = max(0, -((-(p - (o - 1) * s)) // d))
    return range(lo, min(k - 1, (n - 1 + p) // d) + 1)


def maxpool2d_forward(
    x: np.ndarray,
    y: np.ndarray,
    indices: np.ndarray,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
) -> None:
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    H, W = x.shape[2:]
    OH, OW = y.shape[2:]

    def first(o: int, s: int, p: int, k: int, d: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        lo = np.arange(o) * s - p
        hi = np.minimum(lo + (k - 1) * d + 1, n)
        lo = np.where(lo < 0, lo + (-lo + d - 1) // d * d, lo)
        return lo, lo < hi

    h0, hok = first(OH, sh, ph, kh, dh, H)
    w0, wok = first(OW, sw, pw, kw, dw, W)
    # An all-padding window keeps -inf and index -1, as in the kernel.
    best_i = np.where(hok[:, None] & wok[None, :], h0[:, None] * W + w0[None, :], -1)
    best_i = np.broadcast_to(best_i, y.shape).copy()
    best = np.full(y.shape, -np.inf, dtype=x.dtype)
    for i in _live_taps(OH, kh, sh, ph, dh, H):
        ih, vh = _taps(OH, kh, sh, ph, dh, H, i)
        for j in _live_taps(OW, kw, sw, pw, dw, W):
            iw, vw = _taps(OW, kw, sw, pw, dw, W, j)
            v = x[:, :, ih[:, None], iw[None, :]]
            # First maximum wins ties; a NaN replaces anything (PyTorch's CPU rule).
            upd = (vh[:, None] & vw[None, :]) & ((v > best) | np.isnan(v))
            best = np.where(upd, v, best)
            best_i = np.where(upd, ih[:, None] * W + iw[None, :], best_i)
    y[...] = best
    indices[...] = best_i


def maxpool2d_backward(
    grad_output: np.ndarray, indices: np.ndarray, grad_input: np.ndarray
) -> None:
    planes = grad_input.shape[0] * grad_input.shape[1]
    hw = grad_input.shape[2] * grad_input.shape[3]
    idx = indices.reshape(planes, -1)
    g = grad_output.reshape(planes, -1)
    keep = idx >= 0
    flat = (np.arange(planes)[:, None] * hw + idx)[keep]
    acc = np.bincount(flat, weights=g[keep].astype(np.float64), minlength=planes * hw)
    grad_input[...] = acc.reshape(grad_input.shape).astype(grad_input.dtype)


def _avg_divisor(o: int, k: int, s: int, p: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output position along one axis: padded window length and in-input window length."""
    lo = np.arange(o) * s - p
    hi = np.minimum(lo + k, n + p)
    return hi - lo, np.minimum(hi, n) - np.maximum(lo, 0)


def _avg_div(
    shape: tuple[int, ...],
    out: tuple[int, int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    count_include_pad: bool,
    divisor_override: int,
) -> np.ndarray:
    H, W = shape[2:]
    ph_len, vh_len = _avg_divisor(out[0], kernel_size[0], stride[0], padding[0], H)
    pw_len, vw_len = _avg_divisor(out[1], kernel_size[1], stride[1], padding[1], W)
    valid = np.outer(vh_len, vw_len)
    if divisor_override:
        div = np.full(valid.shape, float(divisor_override))
    elif count_include_pad:
        # in float64: the padded window area of a huge kernel exceeds int64
        div = np.outer(ph_len.astype(np.float64), pw_len.astype(np.float64))
    else:
        div = valid.astype(np.float64)
    # Windows with no input element output 0; any divisor will do for them.
    empty = (vh_len[:, None] <= 0) | (vw_len[None, :] <= 0)
    return np.where(empty, 1.0, div)


def avgpool2d_forward(
    x: np.ndarray,
    y: np.ndarray,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: int,
) -> None:
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    H, W = x.shape[2:]
    OH, OW = y.shape[2:]
    acc = np.zeros(y.shape, dtype=x.dtype)
    for i in _live_taps(OH, kh, sh, ph, 1, H):
        ih, vh = _taps(OH, kh, sh, ph, 1, H, i)
        for j in _live_taps(OW, kw, sw, pw, 1, W):
            iw, vw = _taps(OW, kw, sw, pw, 1, W, j)
            acc += np.where(vh[:, None] & vw[None, :], x[:, :, ih[:, None], iw[None, :]], 0)
    div = _avg_div(
        x.shape, (OH, OW), kernel_size, stride, padding, count_include_pad, divisor_override
    )
    y[...] = acc / div.astype(x.dtype)


def avgpool2d_backward(
    grad_output: np.ndarray,
    grad_input: np.ndarray,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: int,
) -> None:
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    H, W = grad_input.shape[2:]
    OH, OW = grad_output.shape[2:]
    div = _avg_div(
        grad_input.shape,
        (OH, OW),
        kernel_size,
        stride,
        padding,
        count_include_pad,
        divisor_override,
    )
    g = grad_output / div.astype(grad_output.dtype)
    gx = np.zeros(grad_input.shape, dtype=grad_input.dtype)
    for i in _live_taps(OH, kh, sh, ph, 1, H):
        ih, vh = _taps(OH, kh, sh, ph, 1, H, i)
        for j in _live_taps(OW, kw, sw, pw, 1, W):
            iw, vw = _taps(OW, kw, sw, pw, 1, W, j)
            # For one tap, output -> input is injective, so fancy-index += does not lose adds.
            gx[:, :, ih[vh][:, None], iw[vw][None, :]] += g[:, :, vh][:, :, :, vw]
    grad_input[...] = gx


def _adaptive(o: int, n: int, out: int) -> tuple[int, int]:
    return (o * n) // out, -((-(o + 1) * n) // out)


def adaptive_avgpool2d_forward(x: np.ndarray, y: np.ndarray) -> None:
    H, W = x.shape[2:]
    OH, OW = y.shape[2:]
    for oh in range(OH):
        h0, h1 = _adaptive(oh, H, OH)
        for ow in range(OW):
            w0, w1 = _adaptive(ow, W, OW)
            y[:, :, oh, ow] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))


def adaptive_avgpool2d_backward(grad_output: np.ndarray, grad_input: np.ndarray) -> None:
    H, W = grad_input.shape[2:]
    OH, OW = grad_output.shape[2:]
    gx = np.zeros(grad_input.shape, dtype=grad_input.dtype)
    for oh in range(OH):
        h0, h1 = _adaptive(oh, H, OH)
        for ow in range(OW):
            w0, w1 = _adaptive(ow, W, OW)
            area = (h1 - h0) * (w1 - w0)
            gx[:, :, h0:h1, w0:w1] += (grad_output[:, :, oh, ow] / area)[:, :, None, None]
    grad_input[...] = gx
