"""``pyengine dip``: the deep image prior (Ulyanov et al., CVPR 2018) for denoising, inpainting
and super-resolution.

An hourglass U-Net (bilinear upsampling) maps a fixed random code to the image and is fitted to
the single degraded observation through its forward model: ``--task denoise`` fits the noisy
image, ``inpaint`` fits the observed pixels only (loss ``|m * (f(z) - y)|^2`` with the mask ``m``
of ``--mask``: ``--mask-ratio`` random missing pixels, lines of text or boxes, as
``pyengine.data.degrade`` defines them), ``sr`` fits the low-resolution image through the
MATLAB-bicubic downsampler (loss ``|D f(z) - y|^2``). The network reproduces image structure long
before it fits noise or hallucinates, so the output passes through a PSNR peak; with a clean
reference we keep the best iterate, without one the final iterate. A PSNR-vs-iteration curve,
the best image and a baseline / DIP / reference comparison (mean fill for inpainting, bicubic for
SR, the noisy input for denoising) are written to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from pyengine.cli import UserError
from pyengine.cli.common import (
    check_device,
    check_finite,
    check_loss,
    check_out_dir,
    check_sigma,
    clipped_psnr,
    min_image_side,
    positive_int,
    read_images,
    seed_everything,
)


def _observe(args: argparse.Namespace, img: np.ndarray, rng: np.random.Generator):
    """(observation, clean reference or None, mask or None, baseline estimate, its name) of
    ``--task``; the clean reference is None when IMAGE is already degraded (denoise, sigma 0)."""
    from pyengine.data import add_gaussian_noise
    from pyengine.data import degrade as D
    from pyengine.models.baselines import bicubic_upsample, mean_fill

    if args.task == "inpaint":
        if args.missing is not None and args.mask != "random":
            raise UserError(f"--mask-ratio applies to --mask random, not --mask {args.mask}")
        ratio = 0.5 if args.missing is None else args.missing
        if not 0 < ratio < 1:
            raise UserError(f"--mask-ratio must be in (0, 1), got {ratio}")
        try:
            mask = D.inpainting_mask(
                args.mask,
                img.shape[1:],
                rng,
                ratio=ratio,
                boxes=args.boxes,
                box_size=args.box_size,
                text_scale=args.text_scale,
            )
        except ValueError as e:
            raise UserError(f"--mask {args.mask}: {e}") from None
        obs = img * mask
        print(f"{args.mask} mask: {1 - float(mask.mean()):.1%} of the pixels missing")
        return obs, img, mask, mean_fill(obs, mask), "mean fill"
    if args.task == "sr":
        clean = np.ascontiguousarray(D.modcrop(img, args.scale))
        if min(clean.shape[1:]) < 4 * args.scale:
            raise UserError(f"image {clean.shape[1:]} too small for x{args.scale} SR")
        lr = D.bicubic_downsample(clean, args.scale)
        return lr, clean, None, bicubic_upsample(lr, args.scale), "bicubic"
    if args.sigma > 0:
        noisy = add_gaussian_noise(img, args.sigma, rng)
        return noisy, img, None, noisy, "noisy"
    return img, None, None, img, "noisy"


def cmd_dip(args: argparse.Namespace) -> int:
    import sys

    import pyengine as pe
    import pyengine.nn.functional as F
    from pyengine.cli import plots
    from pyengine.cli.progress import progress
    from pyengine.data import save_image
    from pyengine.models import BicubicDownsample, UNet

    check_sigma(args.sigma)
    if args.lr is None:
        args.lr = 0.001 if args.task == "denoise" else 0.01
    check_finite("--lr", args.lr, positive=True)
    check_finite("--input-noise", args.input_noise)
    if args.input_noise < 0:
        raise UserError(f"--input-noise must be >= 0, got {args.input_noise:g}")
    if args.depth < 0:
        raise UserError(f"--depth must be >= 0, got {args.depth}")
    check_device(args.device)
    out = check_out_dir(args.out)
    c = 3 if args.rgb else 1
    if args.image:
        (img,) = read_images([args.image], None)
        if img.shape[0] == 3 and c == 1:
            print(
                f"{args.image}: colour image converted to grey (--rgb processes it in colour)",
                file=sys.stderr,
            )
        (img,) = read_images([args.image], c)
        stem = Path(args.image).stem
    else:
        from pyengine.data.datasets import _bundled_image

        img, stem = _bundled_image("camera", c), "camera"
        args.crop = args.crop or 128
        args.iters = args.iters or 400
    args.iters = args.iters or 3000
    if args.crop:
        h, w = img.shape[1:]
        i, j = max(0, (h - args.crop) // 2), max(0, (w - args.crop) // 2)
        img = np.ascontiguousarray(img[:, i : i + args.crop, j : j + args.crop])
    side = min_image_side("unet", args.depth)
    if min(img.shape[1:]) < side:
        raise UserError(
            f"'{args.image}' is {img.shape[2]}x{img.shape[1]} (after --crop): a U-Net of --depth "
            f"{args.depth} needs at least {side}x{side} pixels (or a smaller --depth)"
        )
    rng = np.random.default_rng(args.seed)
    noisy, clean, mask, baseline, base_name = _observe(args, img, rng)
    seed_everything(args.seed)
    net = UNet(args.code, c, depth=args.depth, base=args.channels, up="upsample").to(args.device)
    h, w = (clean if clean is not None else noisy).shape[1:]
    code = pe.from_numpy((rng.random((1, args.code, h, w)) * 0.1).astype(np.float32))
    target = pe.from_numpy(noisy[None].copy())
    code, target = code.to(args.device), target.to(args.device)
    # The forward model the loss goes through: identity, the mask, or the downsampler.
    if mask is not None:
        m = pe.from_numpy(mask[None].copy()).to(args.device)

        def forward_model(y):
            return y * m
    elif args.task == "sr":
        forward_model = BicubicDownsample(h, w, args.scale).to(args.device)
    else:

        def forward_model(y):
            return y

    score_fn = task_psnr(args)
    opt = pe.optim.Adam(net.parameters(), lr=args.lr)
    iters, curve = [], []
    best, best_psnr, best_img = 0, -np.inf, None
    t0 = time.perf_counter()
    bar = progress(args.iters, "dip", unit="it")
    for it in range(1, args.iters + 1):
        inp = code
        if args.input_noise > 0:  # DIP's regulariser: perturb the code a little at each step
            jitter = rng.standard_normal(code.shape).astype(np.float32) * args.input_noise
            inp = code + pe.from_numpy(jitter).to(args.device)
        y = F.sigmoid(net(inp))
        loss = F.mse_loss(forward_model(y), target)
        check_loss(float(loss.item()), f"iteration {it}")
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % args.log_every == 0 or it == args.iters:
            est = y.detach().cpu().numpy()[0]
            score = score_fn(est, clean) if clean is not None else -float(loss.item())
            iters.append(it)
            curve.append(score if clean is not None else clipped_psnr(est, noisy))
            if clean is None or score > best_psnr:
                best, best_psnr, best_img = it, score, est
            bar.set_postfix(loss=f"{loss.item():.2e}", psnr=f"{curve[-1]:.2f}", refresh=False)
        bar.update(1)
    bar.close()
    save_image(out / f"{stem}_dip.png", best_img)
    save_image(out / f"{stem}_{'noisy' if args.task == 'denoise' else 'observed'}.png", noisy)
    plots.psnr_curve(out / f"{stem}_dip_psnr.png", iters, curve, best)
    msg = f"{out / (stem + '_dip.png')}: {args.task}, iteration {best} of {args.iters}"
    if clean is not None:
        pb = score_fn(baseline, clean)
        msg += f", PSNR {base_name} {pb:.2f} dB -> DIP {best_psnr:.2f} dB ({best_psnr - pb:+.2f})"
        plots.comparison(
            out / f"{stem}_comparison.png",
            baseline,
            best_img,
            clean,
            (f"{base_name} ({pb:.2f} dB)", f"DIP ({best_psnr:.2f} dB)", "reference"),
        )
        history = {"iteration": iters, "psnr": curve, "baseline_psnr": pb, "best": best}
        (out / f"{stem}_dip_psnr.json").write_text(json.dumps(history) + "\n")
    print(f"{msg} ({time.perf_counter() - t0:.0f} s)")
    return 0


def task_psnr(args: argparse.Namespace):
    """PSNR as the literature reports it for the task: SR crops a ``scale``-pixel border."""
    if args.task != "sr":
        return clipped_psnr
    b = args.scale

    def cropped(x: np.ndarray, ref: np.ndarray) -> float:
        return clipped_psnr(x[:, b:-b, b:-b], ref[:, b:-b, b:-b])

    return cropped


def add_dip_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dip",
        help="deep image prior: denoise, inpaint or super-resolve one image without training data",
        description="Deep image prior (Ulyanov et al., CVPR 2018): fit an hourglass U-Net that "
        "maps a fixed random code to one degraded image, through the task's forward model "
        "(identity for denoising, the pixel mask for inpainting, the bicubic downsampler for "
        "super-resolution). Its output passes a PSNR peak before it fits the degradation; with a "
        "clean reference the best iterate is kept, otherwise the last. Writes the result, the "
        "input, a comparison PNG and a PSNR-vs-iteration curve to --out.",
    )
    p.add_argument(
        "image", nargs="?", metavar="IMAGE", help="default: bundled 'camera', 128x128 centre crop"
    )
    p.add_argument("--task", choices=("denoise", "inpaint", "sr"), default="denoise")
    p.add_argument(
        "--mask",
        choices=("random", "text", "box"),
        default="random",
        help="inpaint: random missing pixels, lines of text, or square boxes",
    )
    p.add_argument(
        "--mask-ratio",
        "--missing",
        dest="missing",
        type=float,
        help="inpaint, --mask random: missing-pixel ratio (default: 0.5)",
    )
    p.add_argument(
        "--boxes", type=int, default=4, help="inpaint, --mask box: number of boxes (default: 4)"
    )
    p.add_argument(
        "--box-size",
        type=positive_int,
        help="inpaint, --mask box: box side in pixels (default: 1/8 of the shorter image side)",
    )
    p.add_argument(
        "--text-scale",
        type=positive_int,
        default=2,
        help="inpaint, --mask text: font pixel size in image pixels (default: 2)",
    )
    p.add_argument("--scale", type=int, choices=(2, 3, 4), default=4, help="sr: factor")
    p.add_argument(
        "--sigma",
        type=float,
        default=25.0,
        help="denoise: add noise of this level to IMAGE first (0: IMAGE is already noisy)",
    )
    p.add_argument(
        "--iters",
        type=positive_int,
        help="iterations (default: 3000; 400 for the bundled image, a few minutes)",
    )
    p.add_argument(
        "--lr", type=float, help="Adam learning rate (default: 0.001 denoise, 0.01 inpaint and sr)"
    )
    p.add_argument(
        "--input-noise",
        type=float,
        default=1 / 30,
        help="std of the per-step perturbation of the random code (0: none; default: 1/30)",
    )
    p.add_argument("--depth", type=int, default=4, help="U-Net levels")
    p.add_argument("--channels", type=positive_int, default=16, help="U-Net base width")
    p.add_argument("--code", type=positive_int, default=32, help="channels of the random input")
    p.add_argument("--crop", type=positive_int, help="center-crop IMAGE to this size first")
    p.add_argument("--rgb", action="store_true", help="process as a color image")
    p.add_argument(
        "--log-every", type=positive_int, default=25, help="iterations between PSNR evaluations"
    )
    p.add_argument("--out", default="dip", help="output folder (default: dip/)")
    p.add_argument("--seed", type=int, default=0, help="random seed (code, noise, init)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(func=cmd_dip)
