"""Patch sampling, DnCNN's eight-fold augmentation and additive Gaussian noise, on NumPy arrays
shaped (C, H, W). Every random choice takes an explicit ``np.random.Generator``, so a sample is a
pure function of its seed."""

from __future__ import annotations

import numpy as np


def dihedral(x: np.ndarray, mode: int) -> np.ndarray:
    """One of the 8 symmetries of the square on the last two axes, numbered as DnCNN's
    ``data_augmentation(image, mode)``: 0 identity, 1 flip up-down, 2 rot90, 3 rot90 + flipud,
    4 rot180, 5 rot180 + flipud, 6 rot270, 7 rot270 + flipud."""
    if not 0 <= mode <= 7:
        raise ValueError(f"dihedral mode must be in 0..7, got {mode}")
    y = np.rot90(x, mode // 2, axes=(-2, -1))
    if mode % 2:
        y = np.flip(y, axis=-2)
    return np.ascontiguousarray(y)


def inverse_dihedral(x: np.ndarray, mode: int) -> np.ndarray:
    """The inverse of ``dihedral(., mode)``."""
    if not 0 <= mode <= 7:
        raise ValueError(f"dihedral mode must be in 0..7, got {mode}")
    y = np.flip(x, axis=-2) if mode % 2 else x
    return np.ascontiguousarray(np.rot90(y, -(mode // 2), axes=(-2, -1)))


def random_crop(x: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly placed ``size`` x ``size`` window of a (C, H, W) image."""
    h, w = x.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"patch size {size} is larger than an image of {h}x{w}")
    i = int(rng.integers(0, h - size + 1))
    j = int(rng.integers(0, w - size + 1))
    return x[..., i : i + size, j : j + size]


def add_gaussian_noise(
    x: np.ndarray, sigma: float, rng: np.random.Generator, clip: bool = False
) -> np.ndarray:
    """``x + N(0, (sigma/255)^2)`` in float32; ``sigma`` is in 0..255 units as in the paper."""
    if sigma < 0:
        raise ValueError(f"noise sigma must be >= 0, got {sigma}")
    noisy = x + rng.standard_normal(x.shape) * (sigma / 255.0)
    if clip:
        noisy = np.clip(noisy, 0.0, 1.0)
    return noisy.astype(np.float32)


def protocol_noise(clean: np.ndarray, sigma: float, state: np.random.RandomState) -> np.ndarray:
    """The evaluation protocol of the DnCNN reference script: float64 noise from the legacy
    global-state generator (``np.random.seed(0)`` once per test set), unclipped float32 result."""
    noise = state.normal(0, sigma / 255.0, clean.shape)
    return (clean + noise).astype(np.float32)
