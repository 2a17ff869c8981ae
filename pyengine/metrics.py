"""Image quality metrics with scikit-image's definitions, in NumPy float64.

``psnr`` is ``skimage.metrics.peak_signal_noise_ratio`` and ``ssim`` is
``skimage.metrics.structural_similarity`` (Wang et al. 2004 with scikit-image's defaults: a 7x7
uniform window or an 11-tap sigma-1.5 Gaussian, K1 = 0.01, K2 = 0.03, sample covariance, and
"reflect" borders whose border band is cropped before averaging). Inputs may be arrays or tensors.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _pair(x: Any, ref: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = _array(x), _array(ref)
    if a.shape != b.shape:
        raise ValueError(f"{name}: image shape {a.shape} differs from reference shape {b.shape}")
    return a, b


def mse(x: Any, ref: Any) -> float:
    a, b = _pair(x, ref, "mse")
    return float(np.mean((a - b) ** 2))


def psnr(x: Any, ref: Any, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB (inf when equal)."""
    if data_range <= 0:
        raise ValueError(f"psnr: data_range must be positive, got {data_range}")
    err = mse(x, ref)
    if err == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / err))


def _filter_axis(a: np.ndarray, axis: int, weights: np.ndarray) -> np.ndarray:
    """Correlate along ``axis`` with odd-length ``weights``; borders mirror the edge sample as
    scipy.ndimage's mode "reflect" (NumPy's "symmetric")."""
    r = len(weights) // 2
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r, r)
    p = np.pad(a, pad, mode="symmetric")
    n = a.shape[axis]
    out = np.zeros_like(a)
    for k, w in enumerate(weights):
        out += w * np.take(p, np.arange(k, k + n), axis=axis)
    return out


def _window(win_size: int, gaussian: bool, sigma: float) -> np.ndarray:
    if not gaussian:
        return np.full(win_size, 1.0 / win_size)
    r = win_size // 2
    w = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return w / w.sum()


def _ssim_single(
    a: np.ndarray,
    b: np.ndarray,
    data_range: float,
    win_size: int,
    gaussian: bool,
    sigma: float,
    k1: float,
    k2: float,
) -> float:
    if min(a.shape) < win_size:
        raise ValueError(f"ssim: win_size {win_size} exceeds the image extent {a.shape}")
    w = _window(win_size, gaussian, sigma)

    def filt(x: np.ndarray) -> np.ndarray:
        for ax in range(x.ndim):
            x = _filter_axis(x, ax, w)
        return x

    n = win_size**a.ndim
    cov_norm = n / (n - 1)
    ux, uy = filt(a), filt(b)
    vx = cov_norm * (filt(a * a) - ux * ux)
    vy = cov_norm * (filt(b * b) - uy * uy)
    vxy = cov_norm * (filt(a * b) - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = (win_size - 1) // 2
    return float(s[tuple(slice(pad, d - pad) for d in s.shape)].mean())


def ssim(
    x: Any,
    ref: Any,
    data_range: float = 1.0,
    channel_axis: int | None = None,
    win_size: int | None = None,
    gaussian_weights: bool = False,
    sigma: float = 1.5,
    K1: float = 0.01,
    K2: float = 0.03,
) -> float:
    """Mean structural similarity; ``channel_axis`` averages per-channel SSIMs, as in skimage."""
    a, b = _pair(x, ref, "ssim")
    if data_range <= 0:
        raise ValueError(f"ssim: data_range must be positive, got {data_range}")
    if win_size is None:
        win_size = 2 * int(3.5 * sigma + 0.5) + 1 if gaussian_weights else 7
    if win_size % 2 != 1:
        raise ValueError(f"ssim: win_size must be odd, got {win_size}")
    if channel_axis is not None:
        a, b = np.moveaxis(a, channel_axis, 0), np.moveaxis(b, channel_axis, 0)
        return float(
            np.mean(
                [
                    _ssim_single(ac, bc, data_range, win_size, gaussian_weights, sigma, K1, K2)
                    for ac, bc in zip(a, b)
                ]
            )
        )
    return _ssim_single(a, b, data_range, win_size, gaussian_weights, sigma, K1, K2)
