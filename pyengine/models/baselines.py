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
    """Wiener deconvolution with the known ``kernel`` and noise level ``sigma`` (0..255 units),
    per channel: ``X = conj(K) S Y / (|K|^2 S + n sigma^2)`` on an ``n``-pixel DFT grid, where
    ``S(w)`` is the expected power of the clean image at frequency ``w``.

    ``S`` is the natural-image model ``S(w) ~ 1 / (|w|^2 + 1e-4)`` (``w`` in cycles per pixel),
    scaled so that its non-DC total is the image variance, estimated as
    ``var(y) - (sigma/255)^2``; it uses nothing but the observation, the kernel and the noise
    level. On Set12 with Gaussian blur 1.6 and noise 2 it is 0.8 dB better than the constant
    ratio below, and 0.6 dB below a constant ratio tuned per image on the clean reference.
    ``nsr`` given: the classical constant noise-to-signal ratio ``X = conj(K) Y / (|K|^2 + nsr)``.

    The image is mirrored to (2H, 2W) first: for a centro-symmetric kernel the blur with reflect
    borders (``pyengine.data.blur``) is then exactly a circular convolution, so the FFT
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
    K2 = np.abs(K) ** 2
    n = 4 * H * W
    w2 = np.fft.fftfreq(2 * H)[:, None] ** 2 + np.fft.fftfreq(2 * W)[None, :] ** 2
    shape = 1.0 / (w2 + 1e-4)
    shape = shape / (shape.sum() - shape[0, 0])
    s2 = (sigma / 255.0) ** 2
    out = np.empty((C, H, W), np.float32)
    for c in range(C):
        Y = np.fft.fft2(ext[c])
        if nsr is not None:
            X = np.conj(K) * Y / (K2 + nsr)
        else:
            S = n * n * max(float(np.var(y[c])) - s2, 1e-6) * shape
            X = np.conj(K) * S * Y / (K2 * S + n * s2)
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
