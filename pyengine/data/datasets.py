"""Datasets: image folders, the bundled default images, and noisy-patch sampling for training.

A dataset is anything with ``__len__`` and ``__getitem__``. ``PatchDataset`` draws sample ``i``
of epoch ``e`` from its own generator seeded with ``(seed, e, i)``, so a sample does not depend
on the order in which worker threads ask for it, and a resumed run sees the same patches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pyengine.data.io import ImageError, convert_channels, list_images, load_image
from pyengine.data.transforms import add_gaussian_noise, dihedral, random_crop

# scikit-image's bundled sample images (shipped inside its wheel: no download). The training
# split is natural photographs and textures; the held-out validation split is the classic
# cameraman and coins.
BUNDLED_TRAIN = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "moon",
    "page",
    "text",
    "brick",
    "gravel",
    "grass",
)
BUNDLED_VAL = ("camera", "coins")


class ImageFolder:
    """All images directly inside ``root`` (sorted by name) as float32 (C, H, W) arrays in
    [0, 1]. ``channels`` converts on load (1: luma, 3: RGB); ``cache`` keeps decoded images."""

    def __init__(self, root: str | os.PathLike, channels: int | None = 1, cache: bool = True):
        self.root = Path(root)
        self.files = list_images(self.root)
        self.channels = channels
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        a = load_image(self.files[i], self.channels)
        if self._cache is not None:
            self._cache[i] = a
        return a

    def names(self) -> list[str]:
        return [f.name for f in self.files]

    def load_all(self) -> list[np.ndarray]:
        """Decode every image now, so a corrupt file fails before any work starts."""
        return [self[i] for i in range(len(self))]


class ImageList:
    """In-memory images with names, the same interface as ``ImageFolder``."""

    def __init__(self, images: Sequence[np.ndarray], names: Sequence[str]) -> None:
        self.images = [np.ascontiguousarray(a, dtype=np.float32) for a in images]
        self._names = list(names)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.images[i]

    def names(self) -> list[str]:
        return list(self._names)

    def load_all(self) -> list[np.ndarray]:
        return list(self.images)


def _bundled_image(name: str, channels: int) -> np.ndarray:
    import skimage.data

    a = np.asarray(getattr(skimage.data, name)())
    a = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0)
    a = a[None] if a.ndim == 2 else a[..., :3].transpose(2, 0, 1)
    return convert_channels(np.ascontiguousarray(a), channels)


def bundled_images(split: str = "train", channels: int = 1, size: int | None = None) -> ImageList:
    """scikit-image's sample images (loaded offline). ``split``: "train" or "val". ``size``
    center-crops each image to at most ``size`` x ``size`` (keeps validation fast)."""
    names = {"train": BUNDLED_TRAIN, "val": BUNDLED_VAL}.get(split)
    if names is None:
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    images = []
    for n in names:
        a = _bundled_image(n, channels)
        if size is not None:
            h, w = a.shape[-2:]
            i, j = max(0, (h - size) // 2), max(0, (w - size) // 2)
            a = np.ascontiguousarray(a[:, i : i + size, j : j + size])
        images.append(a)
    return ImageList(images, [f"{n}.png" for n in names])


class PatchDataset:
    """Random ``patch`` x ``patch`` crops of ``images`` with a random dihedral symmetry (DnCNN's
    augmentation) and additive Gaussian noise, as (noisy, clean) float32 (C, P, P) pairs.

    Noise: ``sigma`` fixed (0..255 units) or ``sigma_range=(lo, hi)``, a uniform sigma per patch
    (blind denoising). ``length`` samples per epoch; images are picked uniformly.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray] | ImageFolder | ImageList,
        patch: int = 40,
        length: int = 1000,
        sigma: float | None = 25.0,
        sigma_range: tuple[float, float] | None = None,
        augment: bool = True,
        seed: int = 0,
    ) -> None:
        self.images = images.load_all() if hasattr(images, "load_all") else list(images)
        if not self.images:
            raise ImageError("no training images")
        if patch < 1 or length < 1:
            raise ValueError(f"patch size and length must be positive, got {patch}, {length}")
        small = [a.shape[-2:] for a in self.images if min(a.shape[-2:]) < patch]
        if small:
            h, w = small[0]
            raise ValueError(f"patch size {patch} is larger than an image of {h}x{w}")
        if sigma_range is not None:
            lo, hi = sigma_range
            if lo < 0 or hi < lo:
                raise ValueError(f"sigma range must satisfy 0 <= lo <= hi, got {lo}, {hi}")
        elif sigma is None or sigma < 0:
            raise ValueError(f"noise sigma must be >= 0, got {sigma}")
        self.patch, self.length, self.augment, self.seed = patch, length, augment, seed
        self.sigma, self.sigma_range = sigma, sigma_range
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for {self.length} samples")
        rng = np.random.default_rng((self.seed, self.epoch, i))
        img = self.images[int(rng.integers(len(self.images)))]
        clean = random_crop(img, self.patch, rng)
        if self.augment:
            clean = dihedral(clean, int(rng.integers(8)))
        clean = np.ascontiguousarray(clean, dtype=np.float32)
        if self.sigma_range is not None:
            sigma = float(rng.uniform(*self.sigma_range))
        else:
            sigma = float(self.sigma)
        return add_gaussian_noise(clean, sigma, rng), clean
