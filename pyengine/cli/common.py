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


def add_channels_args(p: argparse.ArgumentParser) -> None:
    """``--rgb`` and its spelled-out form ``--channels-in 1|3`` (see ``resolve_channels``)."""
    p.add_argument("--rgb", action="store_true", help="train on 3-channel color images")
    p.add_argument(
        "--channels-in",
        type=int,
        choices=(1, 3),
        help="image channels: 1 (grey, the default) or 3 (colour, the same as --rgb)",
    )


def resolve_channels(args: argparse.Namespace) -> None:
    """``--channels-in`` sets ``args.rgb``; given with ``--rgb`` they must agree."""
    if args.channels_in is None:
        return
    if args.rgb and args.channels_in != 3:
        raise UserError(f"--rgb means 3 image channels, but --channels-in is {args.channels_in}")
    args.rgb = args.channels_in == 3


# ---------------------------------------------------------------------------- models and images
def image_channels(model: Any) -> int:
    cfg = model.config()
    return int(cfg.get("image_channels", cfg.get("in_channels", 1)))


def load_model(path: str, device: str = "cpu") -> tuple[Any, str]:
    """A model from a training checkpoint or a pretrained DnCNN ``.npz``; returns (model, arch)."""
    from pyengine.models import DnCNN, build_model

    p = Path(path)
    if p.is_dir():
        raise UserError(f"--model '{path}' is a folder, not a model file (.npz)")
    if not p.is_file():
        raise UserError(f"model file '{path}' does not exist")
    try:
        with np.load(p, allow_pickle=False) as z:
            files = set(z.files)
    except Exception:  # any unreadable file is a user error here; numpy's text would mislead
        raise UserError(
            f"'{path}' is not a model file: expected a .npz checkpoint from `pyengine train` "
            "or a pretrained DnCNN .npz"
        ) from None
    if "num_conv" in files:
        try:
            model, arch = DnCNN.from_npz(p).to(device), "dncnn"
        except ValueError as e:
            raise UserError(str(e)) from None
    else:
        ckpt = read_checkpoint(p)
        arch = ckpt["arch"]
        try:
            model = build_model(arch, json.loads(ckpt["config"]))
            model.load_state_dict(ckpt["model"])
        except (ValueError, RuntimeError, TypeError, KeyError) as e:
            raise UserError(f"'{path}' does not match its {arch} architecture: {e}") from None
        model = model.to(device).eval()
    for name, t in model.state_dict().items():
        if not np.isfinite(t.cpu().numpy()).all():
            raise UserError(f"'{path}' holds non-finite values (NaN or inf) in {name}")
    return model, arch


def read_checkpoint(path: Path, arch: str | None = None) -> dict[str, Any]:
    import pyengine as pe

    try:
        ckpt = pe.load(path)
    except (ValueError, OSError) as e:
        raise UserError(str(e)) from None
    keys_ok = isinstance(ckpt, dict) and "arch" in ckpt and "model" in ckpt
    if not keys_ok or ckpt.get("format") != CHECKPOINT_FORMAT:
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


# ---------------------------------------------------------------------------- hyperparameters
def check_finite(name: str, value: float, *, positive: bool = False) -> None:
    """A float option must be a finite number (and > 0 with ``positive``): argparse accepts
    'nan' and 'inf', which would otherwise train to NaN and exit 0."""
    if not np.isfinite(value) or (positive and value <= 0):
        need = "a finite number > 0" if positive else "a finite number"
        raise UserError(f"{name} must be {need}, got {value:g}")


def check_train_sigma(sigma: float | None, sigma_range: list[float] | None) -> None:
    """Training noise: finite, >= 0, and not all zero (a denoiser learns nothing from clean
    input, and the noisy PSNR it is compared with would be infinite)."""
    check_sigma(sigma, *(sigma_range or ()))
    if sigma_range is not None and sigma_range[0] > sigma_range[1]:
        raise UserError(f"--sigma-range LO HI needs LO <= HI, got {sigma_range}")
    if (sigma_range is None and sigma == 0) or (sigma_range is not None and sigma_range[1] == 0):
        raise UserError("training needs noise: --sigma (or --sigma-range HI) must be > 0")


def add_algorithm_options(p: argparse.ArgumentParser) -> None:
    """The training commands' conv algorithm switches (read by seed_everything)."""
    p.add_argument(
        "--benchmark",
        action="store_true",
        help="choose conv algorithms by timing: can be faster, but runs are no longer "
        "bit-identical from one process to the next",
    )
    p.add_argument(
        "--no-winograd",
        action="store_true",
        help="run 3x3 convolutions with im2col instead of Winograd F(4x4,3x3): about 2x slower, "
        "~6x smaller float32 rounding error (pyengine.backends.allow_winograd = False)",
    )


def seed_everything(seed: int, deterministic: bool = True, winograd: bool = True) -> None:
    """Seed pyengine's generator and, unless the user asked for timed algorithm choice, make the
    run bit-reproducible across processes (pyengine.use_deterministic_algorithms)."""
    import pyengine as pe

    pe.manual_seed(seed)
    pe.use_deterministic_algorithms(deterministic)
    pe.backends.allow_winograd = winograd


def check_loss(value: float, where: str, keep: str = "") -> None:
    """Stop a run whose loss is NaN or infinite instead of training on to a NaN model."""
    if not np.isfinite(value):
        raise UserError(
            f"the loss became {value} at {where}: training diverged (try a smaller --lr){keep}"
        )


# ---------------------------------------------------------------------------- output locations
def check_out_dir(path: str | Path, option: str = "--out") -> Path:
    """Fail before any work if the output folder cannot be created or written: a file, a path
    under a file, a read-only or virtual file system. Creates nothing (a command that then fails
    on its input leaves nothing behind)."""
    import tempfile

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"{option} '{path}' is a file, not a folder")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{option} '{path}': '{probe}' is a file, so no folder can be made there")
    try:
        tempfile.TemporaryDirectory(prefix=".tmp-probe-", dir=probe).cleanup()
    except OSError as e:
        reason = e.strerror or str(e)
        raise UserError(f"{option} '{path}' cannot be written ({reason} in '{probe}')") from None
    return out


def clean_stale_tmp(folder: Path) -> None:
    """Remove the ``.tmp-*`` files that a kill during an atomic write leaves in a run folder."""
    if folder.is_dir():
        for p in folder.glob(".tmp-*"):
            if p.is_file():
                p.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- model size
def min_image_side(arch: str, depth: int) -> int:
    """The smallest image (or patch) side a model takes: a U-Net halves it ``depth`` times and
    its BatchNorm needs at least 2x2 pixels per channel at the lowest level."""
    return 2 ** (depth + 1) if arch == "unet" else 1


def model_size(
    arch: str, depth: int, width: int, channels: int, up: str = "transpose"
) -> tuple[int, float]:
    """(parameters, activation floats per pixel of one training image) of the restoration models
    with BatchNorm, computed without building them (a too-large model would exhaust memory while
    being built). tests/test_cli_guards.py checks the counts against the real models."""
    if arch == "dncnn":
        params = 9 * channels * width + width + (depth - 2) * (9 * width * width + 2 * width)
        params += 9 * width * channels + channels
        return params, 3.0 * depth * width
    ch = [width * 2**i for i in range(depth + 1)]

    def block(cin: int, cout: int) -> int:
        return 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout

    params = block(channels, ch[0]) + sum(block(ch[i - 1], ch[i]) for i in range(1, depth + 1))
    for i in range(depth):
        taps = 4 if up == "transpose" else 9  # 2x2 transpose conv, or upsample + 3x3 conv
        params += taps * ch[i + 1] * ch[i] + ch[i] + block(2 * ch[i], ch[i])
    params += ch[0] * channels + channels
    # two conv-BN-ReLU pairs down and up per level, each map 1/4 the pixels of the level above
    return params, sum(6.0 * 2 * c / 4**i for i, c in enumerate(ch))


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_training_memory(
    arch: str,
    depth: int,
    width: int,
    channels: int,
    batch: int,
    side: int,
    force: bool,
    up: str = "transpose",
) -> str:
    """Refuse a model whose training needs more memory than the machine has (unless ``force``);
    returns a one-line summary (parameters and estimated memory) to print before training."""
    if side < min_image_side(arch, depth):
        raise UserError(
            f"--depth {depth} halves a {side}-pixel patch {depth} times: a U-Net of depth "
            f"{depth} needs --patch >= {min_image_side(arch, depth)} "
            f"(at most --depth {max(0, side.bit_length() - 2)} for --patch {side})"
        )
    params, per_pixel = model_size(arch, depth, width, channels, up)
    # weights, gradients and Adam's two moments; activations kept for backward and their grads
    need = 16 * params + 2 * 4 * per_pixel * batch * side * side
    have = available_memory()
    line = f"{params:,} parameters, about {need / 2**30:.2f} GiB to train"
    if have is not None and need > have and not force:
        raise UserError(
            f"{arch} --depth {depth} --channels {width} --batch {batch} --patch {side}: {line}, "
            f"but only {have / 2**30:.1f} GiB is available (use a smaller model, or --force)"
        )
    return line


def min_tile(model: Any) -> int:
    """Tiled inference recomputes ``margin`` pixels around each tile: below twice the margin
    most of the work is thrown away (a 1-pixel tile would take hours)."""
    return max(16, 2 * int(getattr(model, "margin", 16)))


def check_tile(tile: int, model: Any) -> None:
    if tile < 0 or 0 < tile < min_tile(model):
        raise UserError(
            f"--tile must be 0 (whole image) or >= {min_tile(model)} pixels for this model "
            f"(twice its {int(getattr(model, 'margin', 16))}-pixel tile overlap), got {tile}"
        )
