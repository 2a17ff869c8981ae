"""Classical reference restorations, so that each network result has a baseline beside it:
bicubic upsampling (super-resolution), Wiener deconvolution (deblurring) and mean fill
(inpainting). NumPy, float64 inside, float32 (C, H, W) out."""

from __future__ import annotations

import numpy as np

from pyengine.data.degrade import bicubic_upsample

__all__ = ["bicubic_upsample", "mean_fill", "psf2otf", "wiener_deconvolve"]


def psf2otf(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The DFT of ``kernel`` zero-padded to ``shape`` with its centre moved to (0, 0), so that
    ``ifft2(psf2otf(k) * fft2(x))`` is the circular convolution ``k * x`` (MATLAB's psf2otf)."""
    k = np.asarray(kernel, np.float64)
    pad = np.zeros(shape)
    pad[: k.shape[0], : k.shape[1]] = k
    pad = np.roll(pad, (-(k.shape[0] // 2), -(k.shape[1] // 2)), axis=(0, 1))
    return np.fft.fft2(pad)


def wiener_deconvolve(
    y: np.ndarray, kernel: np.ndarray, sigma: float, nsr: float | None = None
) -> np.ndarray:
    """Wiener deconvolution with the known ``kernel`` and noise level ``sigma`` (0..255 units):
    ``X = conj(K) Y / (|K|^2 + nsr)`` per channel.

    ``nsr``, the noise-to-signal power ratio, defaults to ``(sigma/255)^2 / var(x)`` with the
    signal variance estimated as ``var(y) - (sigma/255)^2`` (the classical constant-ratio Wiener
    filter). The image is mirrored to (2H, 2W) first: for a centro-symmetric kernel the blur with
    reflect borders (``pyengine.data.blur``) is then exactly a circular convolution, so the FFT
    introduces no boundary ringing."""
    y = np.asarray(y, np.float64)
    if y.ndim != 3:
        raise ValueError(f"image must be shaped (C, H, W), got {y.shape}")
    if sigma < 0:
        raise ValueError(f"noise sigma must be >= 0, got {sigma}")
    C, H, W = y.shape
    ext = np.concatenate([y, y[:, ::-1]], axis=1)
    ext = np.concatenate([ext, ext[:, :, ::-1]], axis=2)
    K = psf2otf(kernel, (2 * H, 2 * W))
    out = np.empty((C, H, W), np.float32)
    for c in range(C):
        s2 = (sigma / 255.0) ** 2
        ratio = nsr if nsr is not None else s2 / max(float(np.var(y[c])) - s2, 1e-6)
        X = np.conj(K) * np.fft.fft2(ext[c]) / (np.abs(K) ** 2 + ratio)
        out[c] = np.real(np.fft.ifft2(X))[:H, :W]
    return out


def mean_fill(observed: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The inpainting baseline: observed pixels kept, missing ones set to the mean of the
    observed pixels of their channel. ``mask`` (1 or C, H, W): 1 = observed."""
    x = np.asarray(observed, np.float32)
    m = np.broadcast_to(np.asarray(mask, np.float32), x.shape)
    out = x.copy()
    for c in range(x.shape[0]):
        keep = m[c] > 0
        fill = float(x[c][keep].mean()) if keep.any() else 0.5
        out[c][~keep] = fill
    return out
