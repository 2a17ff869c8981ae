"""Helpers shared by every ``pyengine`` command: argument checks, model and image loading,
metrics. Each rule (a noise level, a device, an output location, a finite hyperparameter) is written
once here and raises ``UserError``, so a command exits with one clear line before doing any work.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from pyengine.cli import UserError

CHECKPOINT_FORMAT = "pyengine-restore-1"


# ---------------------------------------------------------------------------- argument types
def check_sigma(*values: float | None) -> None:
    """Noise levels are validated here, not by argparse, so that a bad one is a one-line error."""
    for v in values:
        if v is not None and not (np.isfinite(v) and v >= 0):
            raise UserError(f"noise sigma must be >= 0 (in 0..255 units), got {v:g}")


def check_device(name: str) -> None:
    import pyengine as pe

    try:
        dev = pe.device(name)
    except (ValueError, TypeError) as e:
        raise UserError(str(e)) from None
    if dev.type == "cuda" and not pe.cuda.is_available():
        raise UserError(
            f"--device {name}: no CUDA device available (or pyengine built without CUDA)"
        )


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return v


# ---------------------------------------------------------------------------- models and images
def image_channels(model: Any) -> int:
    cfg = model.config()
    return int(cfg.get("image_channels", cfg.get("in_channels", 1)))


def load_model(path: str, device: str = "cpu") -> tuple[Any, str]:
    """A model from a training checkpoint or a pretrained DnCNN ``.npz``; returns (model, arch)."""
    from pyengine.models import DnCNN, build_model

    p = Path(path)
    if not p.is_file():
        raise UserError(f"model file '{path}' does not exist")
    try:
        with np.load(p, allow_pickle=False) as z:
            files = set(z.files)
    except Exception as e:  # any unreadable file is a user error here
        raise UserError(f"'{path}' is not a readable model file (.npz): {e}") from None
    if "num_conv" in files:
        try:
            return DnCNN.from_npz(p).to(device), "dncnn"
        except ValueError as e:
            raise UserError(str(e)) from None
    ckpt = read_checkpoint(p)
    try:
        model = build_model(ckpt["arch"], json.loads(ckpt["config"]))
        model.load_state_dict(ckpt["model"])
    except (ValueError, RuntimeError, TypeError, KeyError) as e:
        raise UserError(f"'{path}' does not match its {ckpt['arch']} architecture: {e}") from None
    return model.to(device).eval(), ckpt["arch"]


def read_checkpoint(path: Path, arch: str | None = None) -> dict[str, Any]:
    import pyengine as pe

    try:
        ckpt = pe.load(path)
    except (ValueError, OSError) as e:
        raise UserError(str(e)) from None
    if ckpt.get("format") != CHECKPOINT_FORMAT or "arch" not in ckpt or "model" not in ckpt:
        raise UserError(f"'{path}' is not a pyengine restoration checkpoint")
    if arch is not None and ckpt["arch"] != arch:
        raise UserError(f"'{path}' holds a {ckpt['arch']} model, not a {arch}")
    return ckpt


def read_images(paths: list[str], channels: int) -> list[np.ndarray]:
    from pyengine.data import ImageError, load_image

    try:
        return [load_image(p, channels) for p in paths]
    except ImageError as e:
        raise UserError(str(e)) from None


def check_channels(images: list[np.ndarray], names: list[str], channels: int) -> None:
    """A grey model given a colour image (or the reverse) is a user error, not a silent
    conversion: the model was trained for one kind of image. A grey picture stored as RGB (three
    equal channels) counts as grey."""
    kind = {1: "grey", 3: "colour"}
    for img, name in zip(images, names):
        grey_rgb = (
            img.shape[0] == 3 and np.array_equal(img[0], img[1]) and np.array_equal(img[0], img[2])
        )
        if img.shape[0] != channels and not (grey_rgb and channels == 1):
            raise UserError(
                f"'{name}' is a {kind.get(img.shape[0], '?')} image ({img.shape[0]} channels) but "
                f"the model is a {kind.get(channels, '?')} model ({channels} channel(s)); use a "
                f"{kind.get(img.shape[0], '?')} model (`pyengine train dncnn"
                f"{' --rgb' if img.shape[0] == 3 else ''}`)"
            )


def read_folder(path: str, channels: int) -> Any:
    from pyengine.data import ImageError, ImageFolder

    try:
        folder = ImageFolder(path, channels)
        folder.load_all()
    except ImageError as e:
        raise UserError(str(e)) from None
    return folder


def clipped_psnr(x: np.ndarray, clean: np.ndarray) -> float:
    from pyengine.metrics import psnr

    return psnr(np.clip(x, 0.0, 1.0), clean)


def clipped_ssim(x: np.ndarray, clean: np.ndarray) -> float:
    from pyengine.metrics import ssim

    return ssim(np.clip(x, 0.0, 1.0), clean, channel_axis=0)
