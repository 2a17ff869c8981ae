"""Image-restoration commands: ``pyengine train dncnn|unet``, ``pyengine denoise``,
``pyengine eval`` and ``pyengine dip``.

Every user mistake (unreadable image, empty folder, patch larger than an image, a checkpoint of
another architecture or a truncated one, a negative sigma) raises ``UserError`` before any output
is written, so the command exits with one line and leaves nothing half-made behind.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from pyengine.cli import UserError
from pyengine.cli.common import (
    add_algorithm_options,
    add_channels_args,
    check_channels,
    check_device,
    check_out_dir,
    check_sigma,
    check_tile,
    clipped_psnr,
    clipped_ssim,
    image_channels,
    load_model,
    positive_int,
    read_checkpoint,
    read_folder,
    read_images,
    seed_everything,
)


# ---------------------------------------------------------------------------- denoise
def cmd_denoise(args: argparse.Namespace) -> int:
    import sys

    from pyengine.cli.progress import progress
    from pyengine.data import save_image
    from pyengine.data.io import convert_channels
    from pyengine.data.transforms import add_gaussian_noise

    check_sigma(args.sigma)
    check_device(args.device)
    out = check_out_dir(args.out)
    seed_everything(args.seed)
    if args.clean and len(args.clean) != len(args.images):
        raise UserError(f"got {len(args.images)} images but {len(args.clean)} --clean references")
    model, _ = load_model(args.model, args.device)
    check_tile(args.tile, model)
    c = image_channels(model)
    # Colour images stay colour: a grey model denoises each channel, a colour model a grey
    # image's repeated channel.
    images = [convert_channels(a, max(c, a.shape[0])) for a in read_images(args.images, None)]
    for path, img in zip(args.images, images):
        if img.shape[0] != c:
            print(
                f"{path}: colour image, each of its channels denoised separately", file=sys.stderr
            )
    refs = read_images(args.clean, None) if args.clean else [None] * len(images)
    refs = [r if r is None else convert_channels(r, img.shape[0]) for r, img in zip(refs, images)]
    if args.sigma is not None:
        refs = [r if r is not None else img for r, img in zip(refs, images)]
    for path, img, ref in zip(args.images, images, refs):
        if ref is not None and ref.shape != img.shape:
            raise UserError(
                f"'{path}' is {img.shape[1]}x{img.shape[2]} but its clean reference "
                f"is {ref.shape[1]}x{ref.shape[2]}"
            )
    rng = np.random.default_rng(args.seed)
    with progress(len(images), "denoise", unit="image") as bar:
        for path, img, ref in zip(args.images, images, refs):
            noisy = img if args.sigma is None else add_gaussian_noise(img, args.sigma, rng)
            den = _denoise_channels(model, c, noisy, args.tile, args.device)
            stem = Path(path).stem
            save_image(out / f"{stem}_denoised.png", den)
            line = f"{path}: {out / (stem + '_denoised.png')}"
            if args.sigma is not None:
                save_image(out / f"{stem}_noisy.png", noisy)
            if ref is not None:
                line += (
                    f"  PSNR noisy {clipped_psnr(noisy, ref):.2f} dB -> denoised "
                    f"{clipped_psnr(den, ref):.2f} dB"
                )
            bar.write(line, file=sys.stdout)
            bar.update(1)
    return 0


def _denoise_channels(model: Any, c: int, noisy: np.ndarray, tile: int, device: str) -> np.ndarray:
    from pyengine.models import denoise_array

    if noisy.shape[0] == c:
        return denoise_array(model, noisy, tile=tile, device=device)
    return np.concatenate([denoise_array(model, ch[None], tile, device) for ch in noisy])


# ---------------------------------------------------------------------------- eval
def evaluate_set(
    model: Any, folder: Any, sigma: float, tile: int = 0, device: str = "cpu"
) -> list[tuple[str, float, float, float]]:
    """The reference protocol of shared/data/README.md: ``np.random.seed(0)`` once, images in
    sorted order, float64 noise, unclipped float32 noisy input, PSNR of the clipped output."""
    from pyengine.cli.progress import progress
    from pyengine.data import protocol_noise
    from pyengine.models import denoise_array

    state = np.random.RandomState(0)
    rows = []
    names = folder.names()
    with progress(len(names), "eval", unit="image") as bar:
        for name, clean in zip(names, folder.load_all()):
            noisy = protocol_noise(clean, sigma, state)
            den = denoise_array(model, noisy, tile=tile, device=device)
            psnr_noisy, psnr = clipped_psnr(noisy, clean), clipped_psnr(den, clean)
            rows.append((name, psnr_noisy, psnr, clipped_ssim(den, clean)))
            bar.update(1)
    return rows


def cmd_eval(args: argparse.Namespace) -> int:
    check_sigma(args.sigma)
    check_device(args.device)
    model, arch = load_model(args.model, args.device)
    check_tile(args.tile, model)
    seed_everything(0)  # the protocol's noise has its own generator; this fixes the algorithms

    from pyengine.cli.restore_inverse import INVERSE_ARCHS, cmd_eval_inverse

    if arch in INVERSE_ARCHS:
        task = json.loads(read_checkpoint(Path(args.model))["task"])
        return cmd_eval_inverse(args, model, arch, task)
    folder = read_folder(args.set, None)
    check_channels(folder.load_all(), folder.names(), image_channels(model))
    folder = read_folder(args.set, image_channels(model))
    rows = evaluate_set(model, folder, args.sigma, args.tile, args.device)
    width = max(len(r[0]) for r in rows + [("image",)])
    print(f"{arch} on {args.set} at sigma {args.sigma:g}")
    print(f"{'image':<{width}}  {'noisy':>7}  {'PSNR':>7}  {'SSIM':>6}")
    for name, pn, p, s in rows:
        print(f"{name:<{width}}  {pn:7.3f}  {p:7.3f}  {s:6.4f}")
    mean = np.mean([r[1:] for r in rows], axis=0)
    print(f"{'mean':<{width}}  {mean[0]:7.3f}  {mean[1]:7.3f}  {mean[2]:6.4f}")
    return 0


# ---------------------------------------------------------------------------- parsers
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--tile",
        type=int,
        default=512,
        help="denoise in tiles of this many pixels a side (0: whole image)",
    )


def _train_parser(train_sub: Any, name: str, help_text: str) -> None:
    from pyengine.cli import distributed
    from pyengine.cli.restore_train import DEFAULTS, RUN_KEYS, cmd_train

    d = DEFAULTS[name]
    p = train_sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument("--data", help="folder of training images (default: bundled sample images)")
    p.add_argument("--val", help="folder of validation images (default: held-out bundled images)")
    noise = p.add_mutually_exclusive_group()
    noise.add_argument("--sigma", type=float, default=25.0, help="noise level, 0..255 units")
    noise.add_argument(
        "--sigma-range",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="blind training: a uniform sigma per patch in [LO, HI]",
    )
    p.add_argument("--epochs", type=positive_int, default=d["epochs"], help="training epochs")
    p.add_argument("--steps", type=positive_int, default=d["steps"], help="batches per epoch")
    p.add_argument("--batch", type=positive_int, default=16, help="patches per batch")
    p.add_argument("--patch", type=positive_int, default=d["patch"], help="patch size (pixels)")
    p.add_argument(
        "--depth", type=int, default=d["depth"], help="conv layers (DnCNN) or levels (U-Net)"
    )
    p.add_argument(
        "--channels",
        type=positive_int,
        default=d["channels"],
        help="feature channels (DnCNN width, U-Net base)",
    )
    add_channels_args(p)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument(
        "--lr-step",
        type=positive_int,
        default=d["lr_step"],
        help="multiply the learning rate by --lr-gamma every this many epochs",
    )
    p.add_argument("--lr-gamma", type=float, default=0.1, help="learning-rate decay factor")
    p.add_argument("--out", help=f"run folder (default: a new runs/{name}[-N])")
    p.add_argument("--resume", action="store_true", help="continue from --out's last checkpoint")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed (data, noise, init); the run is bit-reproducible for a seed and thread "
        "count",
    )
    add_algorithm_options(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="train even when the model's estimated memory exceeds the available memory",
    )
    p.add_argument("--workers", type=int, default=2, help="data-loading threads")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    if name == "unet":
        p.add_argument(
            "--up",
            choices=("transpose", "upsample"),
            default="transpose",
            help="upsampling: transpose conv or upsample + conv",
        )
    distributed.add_arguments(p)
    p.set_defaults(func=cmd_train, arch=name, run_defaults={k: p.get_default(k) for k in RUN_KEYS})


def register(sub: Any, train_sub: Any) -> None:
    from pyengine.cli.restore_dip import add_dip_parser

    _train_parser(
        train_sub,
        "dncnn",
        "train a DnCNN denoiser (default: a small one on the bundled images in a few minutes)",
    )
    _train_parser(train_sub, "unet", "train a residual U-Net denoiser")

    p = sub.add_parser(
        "denoise",
        help="denoise images with a trained model",
        description="Denoise IMAGE files with a checkpoint or pretrained .npz.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--model", required=True, help="checkpoint.npz from `train`, or a DnCNN .npz")
    p.add_argument(
        "--sigma",
        type=float,
        help="first add Gaussian noise of this level (the image is then the reference)",
    )
    p.add_argument("--clean", nargs="+", metavar="REF", help="clean references, one per IMAGE")
    p.add_argument("--out", default="denoised", help="output folder (default: denoised/)")
    p.add_argument("--seed", type=int, default=0, help="seed of the added noise")
    _common(p)
    p.set_defaults(func=cmd_denoise)

    p = sub.add_parser(
        "eval",
        help="PSNR/SSIM of a model on a test set",
        description="Per-image and mean PSNR/SSIM with the DnCNN reference noise "
        "protocol (np.random.seed(0) once, sorted files, unclipped noisy input).",
    )
    p.add_argument("--model", required=True, help="checkpoint.npz from `train`, or a DnCNN .npz")
    p.add_argument("--set", required=True, help="folder of clean test images")
    p.add_argument(
        "--sigma", type=float, default=25.0, help="noise level added to each image, 0..255 units"
    )
    _common(p)
    p.set_defaults(func=cmd_eval)
    add_dip_parser(sub)
