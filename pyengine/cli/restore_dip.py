"""``pyengine dip``: deep image prior denoising (Ulyanov et al., CVPR 2018).

An hourglass U-Net (bilinear upsampling) maps a fixed random code to the image and is fitted to
the single noisy image. The network reproduces image structure long before it fits the noise, so
the output passes through a PSNR peak; with a clean reference we keep the best iterate, without one
the final iterate. A PSNR-vs-iteration curve and the best image are written to ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from pyengine.cli import UserError
from pyengine.cli.common import check_device, check_sigma, clipped_psnr, positive_int, read_images


def cmd_dip(args: argparse.Namespace) -> int:
    import pyengine as pe
    import pyengine.nn.functional as F
    from pyengine.cli import plots
    from pyengine.cli.progress import progress
    from pyengine.data import add_gaussian_noise, save_image
    from pyengine.models import UNet

    check_sigma(args.sigma)
    check_device(args.device)
    c = 3 if args.rgb else 1
    (img,) = read_images([args.image], c)
    if args.crop:
        h, w = img.shape[1:]
        i, j = max(0, (h - args.crop) // 2), max(0, (w - args.crop) // 2)
        img = np.ascontiguousarray(img[:, i : i + args.crop, j : j + args.crop])
    if args.lr <= 0:
        raise UserError(f"--lr must be positive, got {args.lr}")
    rng = np.random.default_rng(args.seed)
    if args.sigma > 0:
        noisy, clean = add_gaussian_noise(img, args.sigma, rng), img
    else:
        noisy, clean = img, None
    pe.manual_seed(args.seed)
    net = UNet(args.code, c, depth=args.depth, base=args.channels, up="upsample").to(args.device)
    h, w = noisy.shape[1:]
    code = pe.from_numpy((rng.random((1, args.code, h, w)) * 0.1).astype(np.float32))
    target = pe.from_numpy(noisy[None].copy())
    code, target = code.to(args.device), target.to(args.device)
    opt = pe.optim.Adam(net.parameters(), lr=args.lr)
    out = Path(args.out)
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
        loss = F.mse_loss(y, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % args.log_every == 0 or it == args.iters:
            est = y.detach().cpu().numpy()[0]
            score = clipped_psnr(est, clean) if clean is not None else -float(loss.item())
            iters.append(it)
            curve.append(score if clean is not None else clipped_psnr(est, noisy))
            if clean is None or score > best_psnr:
                best, best_psnr, best_img = it, score, est
            bar.set_postfix(loss=f"{loss.item():.2e}", psnr=f"{curve[-1]:.2f}", refresh=False)
        bar.update(1)
    bar.close()
    stem = Path(args.image).stem
    save_image(out / f"{stem}_dip.png", best_img)
    save_image(out / f"{stem}_noisy.png", noisy)
    plots.psnr_curve(out / f"{stem}_dip_psnr.png", iters, curve, best)
    msg = f"{out / (stem + '_dip.png')}: iteration {best} of {args.iters}"
    if clean is not None:
        msg += f", PSNR noisy {clipped_psnr(noisy, clean):.2f} dB -> {best_psnr:.2f} dB"
    print(f"{msg} ({time.perf_counter() - t0:.0f} s)")
    return 0


def add_dip_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dip",
        help="deep image prior: denoise one image without training data",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument(
        "--sigma",
        type=float,
        default=25.0,
        help="add noise of this level to IMAGE first (0: IMAGE is already noisy)",
    )
    p.add_argument("--iters", type=positive_int, default=3000)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument(
        "--input-noise",
        type=float,
        default=1 / 30,
        help="std of the per-step perturbation of the random code (0: none)",
    )
    p.add_argument("--depth", type=int, default=4, help="U-Net levels")
    p.add_argument("--channels", type=positive_int, default=16, help="U-Net base width")
    p.add_argument("--code", type=positive_int, default=32, help="channels of the random input")
    p.add_argument("--crop", type=positive_int, help="center-crop IMAGE to this size first")
    p.add_argument("--rgb", action="store_true", help="process as a color image")
    p.add_argument("--log-every", type=positive_int, default=25)
    p.add_argument("--out", default="dip", help="output folder (default: dip/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_dip)
