"""Reading and writing images with Pillow as float32 arrays in [0, 1], shaped (C, H, W).

8-bit images are divided by 255 and 16-bit ones by 65535, so both land in [0, 1]. Grayscale is
one channel; RGB (and palette or alpha images, converted) is three. ``channels`` converts on load:
1 gives the ITU-R 601 luma that Pillow's ``convert("L")`` uses, 3 repeats a gray channel.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pyengine.serialization import mkstemp_umask

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

_LUMA = np.array([0.299, 0.587, 0.114], np.float64)


class ImageError(ValueError):
    """An image file that cannot be read, or a folder without images."""


def list_images(root: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``root`` (not recursive), in sorted filename order."""
    root = Path(root)
    if not root.is_dir():
        raise ImageError(f"'{root}' is not a folder")
    files = sorted(
        p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )
    if not files:
        raise ImageError(
            f"no images in '{root}' (looked for {', '.join(e[1:] for e in IMAGE_EXTENSIONS)})"
        )
    return files


def _to_array(img: Image.Image) -> np.ndarray:
    """Pillow image -> float32 (H, W) or (H, W, 3) in [0, 1]."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img, dtype=np.float64).astype(np.float32) / 65535.0
    if mode == "I":
        # Older Pillow versions open 16-bit PNGs as 32-bit "I": read them as 16-bit.
        return (np.asarray(img, dtype=np.float64) / 65535.0).astype(np.float32)
    if mode == "F":
        return np.asarray(img, dtype=np.float32)
    if mode == "1":
        return np.asarray(img, dtype=np.float32)
    if mode not in ("L", "RGB"):
        img = img.convert("RGB" if mode in ("P", "RGBA", "CMYK", "YCbCr", "LAB", "HSV") else "L")
    return np.asarray(img, dtype=np.float32) / 255.0


def convert_channels(a: np.ndarray, channels: int | None) -> np.ndarray:
    """(C, H, W) with C in {1, 3} -> ``channels`` channels (None keeps C)."""
    c = a.shape[0]
    if channels is None or channels == c:
        return a
    if channels == 1 and c == 3:
        return np.tensordot(_LUMA, a, axes=1).astype(np.float32)[None]
    if channels == 3 and c == 1:
        return np.repeat(a, 3, axis=0)
    raise ValueError(f"cannot convert a {c}-channel image to {channels} channels")


def load_image(path: str | os.PathLike, channels: int | None = None) -> np.ndarray:
    """Read an image file into a float32 (C, H, W) array in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"'{path}' does not exist or is not a file")
    try:
        with Image.open(path) as img:
            img.load()
            a = _to_array(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"cannot read image '{path}': {e}") from None
    a = a[None] if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))
    if a.shape[1] == 0 or a.shape[2] == 0:
        raise ImageError(f"image '{path}' is empty ({a.shape[1]}x{a.shape[2]})")
    return convert_channels(a, channels)


def to_uint8(a: np.ndarray) -> np.ndarray:
    """float [0, 1] (C, H, W) or (H, W) -> uint8 (H, W[, C]), rounded like MATLAB's im2uint8."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    return np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_image(path: str | os.PathLike, a: np.ndarray) -> None:
    """Write a float [0, 1] image as an 8-bit file, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"unknown image file extension '{path.suffix}' for '{path}'")
    fd, tmp = mkstemp_umask(path.parent, path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(to_uint8(a)).save(f, format=fmt)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
