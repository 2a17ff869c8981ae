"""``pyengine train deblur|sr`` and the evaluation of deblurring / super-resolution models.

A *task* holds one forward model (``pyengine.data.degrade``), the classical baseline that
inverts it (``pyengine.models.baselines``) and the PSNR the literature reports for it:

- deblur: ``y = k * x + n`` (Gaussian, box or motion kernel, reflect borders, noise sigma in
  0..255 units); baseline: Wiener deconvolution with the true kernel; PSNR on the whole image.
- sr: ``y = imresize(x, 1/s)`` (MATLAB bicubic, antialiased) of the image cropped to a multiple
  of ``s``; baseline: ``imresize(y, s)``; PSNR with an ``s``-pixel border cropped.

Training draws patch ``i`` of epoch ``e`` from a generator seeded with ``(seed, e, i)``; the
validation images are degraded once, each with its own seeded generator. A checkpoint (the
``pyengine-restore-1`` format of ``pyengine train dncnn``) is written after every epoch and holds
the task, so ``pyengine deblur``/``sr``/``eval`` reuse the same forward model. It also holds what
``--resume`` needs, with ``train dncnn``'s contract and code (restore_train.py's
``start_or_resume``/``restore_state``/``save_state``/``train_epoch``): a resumed run computes the
same losses as an uninterrupted one, bit for bit.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from pyengine.cli import UserError
from pyengine.cli.common import (
    add_algorithm_options,
    add_channels_args,
    check_device,
    check_finite,
    check_out_dir,
    check_sigma,
    clean_stale_tmp,
    clipped_ssim,
    positive_int,
    read_folder,
    resolve_channels,
    seed_everything,
)

INVERSE_ARCHS = {"msdeblur": "deblur", "vdsr": "sr", "subpixel": "sr"}
DEFAULTS: dict[str, dict[str, Any]] = {
    "deblur": {"epochs": 4, "steps": 60, "patch": 64, "channels": 24, "depth": 2},
    "sr": {"epochs": 3, "steps": 40, "patch": 48, "channels": 32, "depth": 8},
}


# ---------------------------------------------------------------------------- tasks
class Task:
    """One inverse problem: ``degrade`` (clean -> observation), ``model_input`` (observation ->
    what the network reads), ``baseline`` (observation -> estimate) and ``psnr``."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from pyengine.data import degrade as D

        self.spec = dict(spec)
        self.name = spec["task"]
        if self.name == "deblur":
            kind = spec["kernel"]
            if kind == "gaussian":
                self.kernel = D.gaussian_kernel(spec["blur_sigma"])
            elif kind == "box":
                self.kernel = D.box_kernel(spec["box_size"])
            elif kind == "motion":
                self.kernel = D.motion_kernel(spec["motion_length"], spec["motion_angle"])
            else:
                raise UserError(f"unknown blur kernel '{kind}' (gaussian, box or motion)")
            self.margin = self.kernel.shape[0] // 2
            self.scale = 1
        else:
            self.scale = int(spec["scale"])
            if self.scale not in (2, 3, 4):
                raise UserError(f"--scale must be 2, 3 or 4, got {self.scale}")
            self.margin = 0
            self.upsampled_input = spec.get("arch", "vdsr") != "subpixel"

    def describe(self) -> str:
        if self.name == "sr":
            return f"x{self.scale} MATLAB-bicubic super-resolution"
        s = self.spec
        k = {
            "gaussian": f"Gaussian blur sigma {s['blur_sigma']:g}",
            "box": f"{s['box_size']}x{s['box_size']} box blur",
            "motion": f"motion blur {s['motion_length']:g} px at {s['motion_angle']:g} deg",
        }[s["kernel"]]
        return f"{k} + noise sigma {s['sigma']:g}/255"

    def prepare(self, clean: np.ndarray) -> np.ndarray:
        from pyengine.data.degrade import modcrop

        return np.ascontiguousarray(modcrop(clean, self.scale)) if self.name == "sr" else clean

    def degrade(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from pyengine.data import degrade as D

        if self.name == "deblur":
            return D.blur_noise(clean, self.kernel, self.spec["sigma"], rng)
        return D.bicubic_downsample(clean, self.scale)

    def model_input(self, obs: np.ndarray) -> np.ndarray:
        from pyengine.data.degrade import bicubic_upsample

        if self.name == "sr" and self.upsampled_input:
            return bicubic_upsample(obs, self.scale)
        return obs

    def baseline(self, obs: np.ndarray) -> np.ndarray:
        from pyengine.models.baselines import bicubic_upsample, wiener_deconvolve

        if self.name == "deblur":
            return wiener_deconvolve(obs, self.kernel, self.spec["sigma"])
        return bicubic_upsample(obs, self.scale)

    def psnr(self, x: np.ndarray, clean: np.ndarray) -> float:
        from pyengine.metrics import psnr

        b = self.scale if self.name == "sr" else 0
        x = np.clip(x, 0.0, 1.0)
        if b:
            x, clean = x[:, b:-b, b:-b], clean[:, b:-b, b:-b]
        return psnr(x, clean)


def task_from_args(args: argparse.Namespace, name: str) -> Task:
    if name == "deblur":
        check_sigma(args.sigma)
        spec = {
            "task": "deblur",
            "kernel": args.kernel,
            "blur_sigma": args.blur_sigma,
            "box_size": args.box_size,
            "motion_length": args.motion_length,
            "motion_angle": args.motion_angle,
            "sigma": args.sigma,
        }
    else:
        spec = {"task": "sr", "scale": args.scale, "arch": getattr(args, "arch", "vdsr")}
    try:
        return Task(spec)
    except ValueError as e:
        raise UserError(str(e)) from None


class PairDataset:
    """(model input, clean) float32 patch pairs of ``task``: a random crop (``patch`` plus the
    task's margin, so the blur sees real pixels at the patch border), a random dihedral symmetry,
    the forward model, then the margin cropped away again."""

    def __init__(self, images: list[np.ndarray], task: Task, patch: int, length: int, seed: int):
        if patch % task.scale:
            raise UserError(f"--patch {patch} must be a multiple of --scale {task.scale}")
        need = patch + 2 * task.margin
        small = [a.shape for a in images if min(a.shape[-2:]) < need]
        if small:
            raise UserError(f"patch {patch} (+{task.margin} margin) exceeds an image {small[0]}")
        self.images, self.task, self.patch, self.length, self.seed = (
            images,
            task,
            patch,
            length,
            seed,
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        from pyengine.data import dihedral, random_crop

        rng = np.random.default_rng((self.seed, self.epoch, i))
        img = self.images[int(rng.integers(len(self.images)))]
        m = self.task.margin
        big = dihedral(random_crop(img, self.patch + 2 * m, rng), int(rng.integers(8)))
        obs = self.task.degrade(np.ascontiguousarray(big, np.float32), rng)
        if m:
            obs, big = obs[:, m:-m, m:-m], big[:, m:-m, m:-m]
        inp = self.task.model_input(obs)
        return np.ascontiguousarray(inp, np.float32), np.ascontiguousarray(big, np.float32)


# ---------------------------------------------------------------------------- inference
def run_model(model: Any, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    """``model.restore`` of one (C, H, W) array."""
    from pyengine.autograd import no_grad
    from pyengine.creation import from_numpy

    with no_grad():
        t = from_numpy(np.ascontiguousarray(x[None], np.float32)).to(device)
        return model.restore(t).cpu().numpy()[0]


def evaluate(
    model: Any, task: Task, clean_images: list[np.ndarray], device: str = "cpu"
) -> list[tuple[float, float, float, np.ndarray, np.ndarray]]:
    """Per image: (baseline PSNR, model PSNR, model SSIM, baseline image, model image). Image
    ``i`` is degraded with ``np.random.default_rng(i)``, so every run sees the same inputs.
    ``model`` None evaluates the baseline only."""
    rows = []
    for i, clean in enumerate(clean_images):
        obs = task.degrade(clean, np.random.default_rng(i))
        base = task.baseline(obs)
        out = base if model is None else run_model(model, task.model_input(obs), device)
        rows.append(
            (task.psnr(base, clean), task.psnr(out, clean), clipped_ssim(out, clean), base, out)
        )
    return rows


def cmd_eval_inverse(args: argparse.Namespace, model: Any, arch: str, ckpt_task: dict) -> int:
    """``pyengine eval`` for a deblurring or super-resolution checkpoint: method and baseline
    side by side."""
    from pyengine.cli.common import check_channels

    task = Task(ckpt_task)
    c = int(model.config().get("image_channels", 1))
    folder = read_folder(args.set, None)
    check_channels(folder.load_all(), folder.names(), c)
    folder = read_folder(args.set, c)
    images = [task.prepare(c) for c in folder.load_all()]
    rows = evaluate(model, task, images, args.device)
    base_name = "Wiener" if task.name == "deblur" else "bicubic"
    width = max(len(n) for n in folder.names() + ["image"])
    print(f"{arch} on {args.set}: {task.describe()}")
    print(f"{'image':<{width}}  {base_name:>8}  {arch:>8}  {'gain':>6}  {'SSIM':>6}")
    for name, (pb, pm, s, _, _) in zip(folder.names(), rows):
        print(f"{name:<{width}}  {pb:8.3f}  {pm:8.3f}  {pm - pb:+6.2f}  {s:6.4f}")
    mean = np.mean([r[:3] for r in rows], axis=0)
    gain = mean[1] - mean[0]
    print(f"{'mean':<{width}}  {mean[0]:8.3f}  {mean[1]:8.3f}  {gain:+6.2f}  {mean[2]:6.4f}")
    return 0


# ---------------------------------------------------------------------------- training
def _build(args: argparse.Namespace, name: str) -> Any:
    from pyengine.models import VDSR, MultiScaleDeblur, SubPixelSR

    c = 3 if args.rgb else 1
    if name == "deblur":
        return MultiScaleDeblur(c, args.channels, args.depth, args.scales)
    if args.arch == "subpixel":
        return SubPixelSR(args.scale, c, args.depth, args.channels)
    return VDSR(c, args.depth, args.channels)


def _loss(model: Any, inp: Any, clean: Any) -> Any:
    import pyengine.nn.functional as F
    from pyengine.models.deblur import multiscale_targets

    out = model(inp)
    if isinstance(out, list):  # Nah et al.'s multi-scale loss: mean of the per-scale MSEs
        targets = multiscale_targets(clean, len(out))
        total = F.mse_loss(out[0], targets[0])
        for o, t in zip(out[1:], targets[1:]):
            total = total + F.mse_loss(o, t)
        return total * (1.0 / len(out))
    return F.mse_loss(out, clean)


def _run_keys(name: str) -> tuple[str, ...]:
    """The settings that define a run of ``train NAME``; ``--resume`` takes them from the
    checkpoint (``--epochs`` may grow)."""
    task = ("kernel", "blur_sigma", "box_size", "motion_length", "motion_angle", "sigma", "scales")
    if name == "sr":
        task = ("scale", "arch")
    common = ("data", "val", "steps", "batch", "patch", "depth", "channels", "rgb", "lr")
    return common + task + ("lr_step", "seed")


def cmd_train_inverse(args: argparse.Namespace) -> int:
    import pyengine as pe
    from pyengine.cli import plots
    from pyengine.cli.distributed import Launch
    from pyengine.cli.restore_train import (
        restore_state,
        save_state,
        start_or_resume,
        train_epoch,
    )
    from pyengine.data import DataLoader, bundled_images
    from pyengine.models import build_model

    name = args.task
    check_device(args.device)
    resolve_channels(args)
    out = check_out_dir(args.out or f"runs/{name}")
    archs = ("msdeblur",) if name == "deblur" else ("vdsr", "subpixel")
    ckpt = start_or_resume(args, out, archs)
    args.arch_name = "msdeblur" if name == "deblur" else args.arch
    check_finite("--lr", args.lr, positive=True)
    if args.lr_step is None:  # the last epoch at a tenth of the learning rate
        args.lr_step = max(1, args.epochs - 1)
    task = task_from_args(args, name)
    clean_stale_tmp(out)
    c = 3 if args.rgb else 1
    train = read_folder(args.data, c) if args.data else bundled_images("train", c)
    val = read_folder(args.val, c) if args.val else bundled_images("val", c, size=256)
    val_clean = [task.prepare(v) for v in val.load_all()]
    dataset = PairDataset(train.load_all(), task, args.patch, args.steps * args.batch, args.seed)
    seed_everything(args.seed, deterministic=not args.benchmark, winograd=not args.no_winograd)
    try:
        model = (
            _build(args, name)
            if ckpt is None
            else build_model(args.arch_name, json.loads(ckpt["config"]))
        )
    except ValueError as e:
        raise UserError(str(e)) from None
    model.to(args.device)
    opt = pe.optim.Adam(model.parameters(), lr=args.lr)
    sched = pe.optim.lr_scheduler.StepLR(opt, args.lr_step, 0.1)
    loader = DataLoader(
        dataset, args.batch, seed=args.seed, num_workers=args.workers, drop_last=True
    )
    base_rows = [r[0] for r in evaluate(None, task, val_clean)]
    base_psnr = float(np.mean(base_rows))
    base_name = "Wiener" if name == "deblur" else "bicubic"
    history: dict[str, Any] = {"loss": [], "val_psnr": [], "baseline_psnr": base_psnr}
    resumed = restore_state(ckpt, out, model, opt, sched, history, args.epochs)
    if resumed is None:
        return 0
    history, start = resumed
    print(
        f"training {args.arch_name} ({model.num_parameters():,} parameters) for {task.describe()} "
        f"on {args.data or 'bundled images'} -> {out}; validation {base_name} PSNR "
        f"{base_psnr:.2f} dB",
        flush=True,
    )
    args.launch = Launch()
    run_args = {k: getattr(args, k) for k in _run_keys(name)}
    t_start = time.perf_counter()
    for epoch in range(start, args.epochs):
        t0 = time.perf_counter()
        kept = f"; {out / 'checkpoint.npz'} keeps epoch {epoch}" if epoch else ""
        history["loss"].extend(train_epoch(model, opt, loader, epoch, args, kept, _loss))
        sched.step()
        model.eval()
        rows = evaluate(model, task, val_clean, args.device)
        psnr = float(np.mean([r[1] for r in rows]))
        history["val_psnr"].append(psnr)
        save_state(
            out,
            args.arch_name,
            model,
            opt,
            sched,
            epoch + 1,
            history,
            run_args,
            task=json.dumps(task.spec),
        )
        plots.training_curves(
            out / "curves.png",
            history["loss"],
            args.steps,
            history["val_psnr"],
            base_psnr,
            baseline_label=base_name,
        )
        pb, pm, _, base_img, img = rows[0]
        plots.comparison(
            out / "comparison.png",
            base_img,
            img,
            val_clean[0],
            (f"{base_name} ({pb:.2f} dB)", f"{args.arch_name} ({pm:.2f} dB)", "clean"),
        )
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {np.mean(history['loss'][-args.steps :]):.3e}  "
            f"val PSNR {psnr:.2f} dB ({psnr - base_psnr:+.2f} vs {base_name})  "
            f"lr {sched.get_last_lr()[0]:.1e}  {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    print(f"done in {time.perf_counter() - t_start:.0f} s: {out / 'checkpoint.npz'}")
    return 0


# ---------------------------------------------------------------------------- parsers
def add_degradation_args(p: argparse.ArgumentParser, name: str) -> None:
    if name == "deblur":
        p.add_argument("--kernel", choices=("gaussian", "box", "motion"), default="gaussian")
        p.add_argument("--blur-sigma", type=float, default=1.6, help="Gaussian kernel sigma")
        p.add_argument("--box-size", type=positive_int, default=5, help="box kernel side (odd)")
        p.add_argument("--motion-length", type=float, default=9.0, help="motion length (px)")
        p.add_argument("--motion-angle", type=float, default=0.0, help="motion angle (deg)")
        p.add_argument("--sigma", type=float, default=2.0, help="noise level, 0..255 units")
    else:
        p.add_argument("--scale", type=int, choices=(2, 3, 4), default=2)


def _train_parser(train_sub: Any, name: str, text: str) -> None:
    d = DEFAULTS[name]
    p = train_sub.add_parser(name, help=text, description=text)
    p.add_argument("--data", help="folder of training images (default: bundled sample images)")
    p.add_argument("--val", help="folder of validation images (default: held-out bundled images)")
    add_degradation_args(p, name)
    if name == "sr":
        p.add_argument(
            "--arch",
            choices=("vdsr", "subpixel"),
            default="vdsr",
            help="vdsr: residual net on the bicubic upsampling; subpixel: PixelShuffle net",
        )
    else:
        p.add_argument("--scales", type=positive_int, default=3, help="pyramid levels")
    p.add_argument("--epochs", type=positive_int, default=d["epochs"])
    p.add_argument("--steps", type=positive_int, default=d["steps"], help="batches per epoch")
    p.add_argument("--batch", type=positive_int, default=16, help="patches per batch")
    p.add_argument("--patch", type=positive_int, default=d["patch"], help="clean patch side")
    p.add_argument(
        "--depth",
        type=positive_int,
        default=d["depth"],
        help="residual blocks per scale (deblur) or conv layers (sr)",
    )
    p.add_argument("--channels", type=positive_int, default=d["channels"], help="feature width")
    add_channels_args(p)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument(
        "--lr-step",
        type=positive_int,
        help="multiply the learning rate by 0.1 every this many epochs (default: --epochs - 1, "
        "so the last epoch runs at a tenth)",
    )
    p.add_argument("--out", help=f"run folder (default: runs/{name})")
    p.add_argument("--resume", action="store_true", help="continue from --out's last checkpoint")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed (data, degradation, init); the run is bit-reproducible for a seed and "
        "thread count",
    )
    add_algorithm_options(p)
    p.add_argument("--workers", type=int, default=2, help="data-loading threads")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(
        func=cmd_train_inverse,
        task=name,
        run_defaults={k: p.get_default(k) for k in _run_keys(name)},
    )


def register(sub: Any, train_sub: Any) -> None:
    from pyengine.cli.restore_apply import add_apply_parsers

    _train_parser(
        train_sub,
        "deblur",
        "train a multi-scale deblurring network (default: Gaussian blur 1.6 + noise 2, bundled "
        "images, a few minutes); reports PSNR against Wiener deconvolution",
    )
    _train_parser(
        train_sub,
        "sr",
        "train a super-resolution network (default: VDSR x2 on the bundled images, a few "
        "minutes); reports PSNR against bicubic upsampling",
    )
    add_apply_parsers(sub)
