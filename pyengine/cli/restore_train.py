"""``pyengine train dncnn|unet``: patch-based denoiser training with validation, atomic
per-epoch checkpoints and exact resumption.

Reproducibility: the model is initialised from ``--seed``; patch ``i`` of epoch ``e`` is drawn from
its own generator seeded with ``(seed, e, i)``; the checkpoint holds the model (with BatchNorm
statistics), Adam's moments, the schedule, the epoch and the global generator's state. A run
resumed from the checkpoint of epoch ``e`` therefore computes the same losses from epoch ``e + 1``
on as an uninterrupted run. ``start_or_resume``, ``restore_state``, ``save_state`` and
``train_epoch`` are that contract; ``pyengine train deblur|sr`` (restore_inverse.py) uses them too.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from pyengine.cli import UserError, distributed
from pyengine.cli.common import (
    CHECKPOINT_FORMAT,
    check_device,
    check_finite,
    check_loss,
    check_out_dir,
    check_train_sigma,
    check_training_memory,
    clean_stale_tmp,
    clipped_psnr,
    clipped_ssim,
    read_checkpoint,
    read_folder,
    resolve_channels,
    seed_everything,
)
from pyengine.serialization import mkstemp_umask

# The no-argument run is the README's main job: a small DnCNN that clearly beats the noisy input
# on the bundled images in a few minutes on 2 CPU cores.
DEFAULTS: dict[str, dict[str, int]] = {
    "dncnn": {"epochs": 4, "steps": 40, "patch": 40, "depth": 8, "channels": 32, "lr_step": 3},
    "unet": {"epochs": 4, "steps": 40, "patch": 48, "depth": 2, "channels": 16, "lr_step": 3},
}
# Settings that define a run; --resume takes them from the checkpoint.
RUN_KEYS = (
    "data",
    "val",
    "sigma",
    "sigma_range",
    "steps",
    "batch",
    "patch",
    "depth",
    "channels",
    "rgb",
    "lr",
    "lr_step",
    "lr_gamma",
    "seed",
    "up",
    "no_winograd",
)
CHECKPOINT = "checkpoint.npz"


def _out_dir(args: argparse.Namespace) -> Path:
    if args.out:
        return Path(args.out)
    base = Path("runs") / args.arch
    existing = [base] + sorted(
        base.parent.glob(f"{args.arch}-*"),
        key=lambda p: int(p.name.rsplit("-", 1)[1]) if p.name.rsplit("-", 1)[1].isdigit() else -1,
    )
    existing = [p for p in existing if p.exists()]
    if args.resume:
        if not existing:
            raise UserError(f"--resume: no run of {args.arch} under runs/ (pass --out)")
        return existing[-1]
    n = 1
    while (Path("runs") / (args.arch if n == 1 else f"{args.arch}-{n}")).exists():
        n += 1
    return Path("runs") / (args.arch if n == 1 else f"{args.arch}-{n}")


def _build(args: argparse.Namespace):
    from pyengine.models import DnCNN, UNet

    c = 3 if args.rgb else 1
    try:
        if args.arch == "dncnn":
            return DnCNN(depth=args.depth, channels=args.channels, image_channels=c)
        return UNet(c, c, depth=args.depth, base=args.channels, up=args.up, residual=True)
    except ValueError as e:
        raise UserError(str(e)) from None


def _atomic_text(path: Path, text: str) -> None:
    fd, tmp = mkstemp_umask(path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _validate(model: Any, clean: list[np.ndarray], noisy: list[np.ndarray], device: str):
    from pyengine.models import denoise_array

    model.eval()
    den = [denoise_array(model, n, tile=512, device=device) for n in noisy]
    psnr = float(np.mean([clipped_psnr(d, c) for d, c in zip(den, clean)]))
    ssim = float(np.mean([clipped_ssim(d, c) for d, c in zip(den, clean)]))
    return psnr, ssim, den[0]


@distributed.command
def cmd_train(args: argparse.Namespace) -> int:
    import pyengine as pe
    from pyengine.data import DataLoader, PatchDataset, bundled_images, protocol_noise
    from pyengine.models import build_model

    check_device(args.device)
    resolve_channels(args)
    launch = args.launch
    out = launch.bcast(check_out_dir(_out_dir(args)))  # rank 0's choice of run folder
    ckpt = start_or_resume(args, out, (args.arch,))
    check_train_sigma(args.sigma, args.sigma_range)
    check_finite("--lr", args.lr, positive=True)
    check_finite("--lr-gamma", args.lr_gamma, positive=True)
    if args.workers < 0:
        raise UserError(f"--workers must be >= 0, got {args.workers}")
    size = check_training_memory(
        args.arch,
        args.depth,
        args.channels,
        3 if args.rgb else 1,
        args.batch,
        args.patch,
        args.force,
        getattr(args, "up", "transpose"),
    )
    clean_stale_tmp(out)

    c = 3 if args.rgb else 1
    train = read_folder(args.data, c) if args.data else bundled_images("train", c)
    val = read_folder(args.val, c) if args.val else bundled_images("val", c, size=256)
    try:
        dataset = PatchDataset(
            train,
            patch=args.patch,
            length=args.steps * args.batch,
            sigma=args.sigma,
            sigma_range=args.sigma_range,
            seed=args.seed,
        )
    except ValueError as e:
        raise UserError(f"training data: {e}") from None
    val_sigma = args.sigma if args.sigma_range is None else float(np.mean(args.sigma_range))
    val_clean = val.load_all()
    state = np.random.RandomState(args.seed)
    val_noisy = [protocol_noise(v, val_sigma, state) for v in val_clean]
    noisy_psnr = float(np.mean([clipped_psnr(n, v) for n, v in zip(val_noisy, val_clean)]))

    seed_everything(args.seed, deterministic=not args.benchmark, winograd=not args.no_winograd)
    model = _build(args) if ckpt is None else build_model(args.arch, json.loads(ckpt["config"]))
    model.to(args.device)
    opt = pe.optim.Adam(model.parameters(), lr=args.lr)
    sched = pe.optim.lr_scheduler.StepLR(opt, args.lr_step, args.lr_gamma)
    history: dict[str, Any] = {"loss": [], "val_psnr": [], "val_ssim": [], "noisy_psnr": noisy_psnr}
    resumed = restore_state(ckpt, out, model, opt, sched, history, args.epochs)
    if resumed is None:
        return 0
    history, start = resumed
    loader = DataLoader(
        dataset,
        launch.per_rank(args.batch),
        seed=args.seed,
        num_workers=args.workers,
        drop_last=True,
        sampler=launch.sampler(dataset),
    )
    net = launch.wrap(model, args.sync_bn)
    run_args = {k: getattr(args, k, None) for k in RUN_KEYS}
    print(
        f"training {args.arch} ({size}) on {args.data or 'bundled images'} -> {out}; "
        f"validation noisy PSNR {noisy_psnr:.2f} dB"
    )
    for epoch in range(start, args.epochs):
        t0 = time.perf_counter()
        kept = f"; {out / CHECKPOINT} keeps epoch {epoch}" if epoch else ""
        loss = train_epoch(net, opt, loader, epoch, args, kept, _residual_loss)
        history["loss"].extend(loss)
        sched.step()
        if not launch.is_main:  # rank 0 alone validates, checkpoints and reports
            continue
        psnr, ssim, den = _validate(model, val_clean, val_noisy, args.device)
        history["val_psnr"].append(psnr)
        history["val_ssim"].append(ssim)
        save_state(out, args.arch, model, opt, sched, epoch + 1, history, run_args)
        _figures(out, history, args.steps, val_noisy[0], den, val_clean[0], noisy_psnr)
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {np.mean(loss):.3e}  val PSNR {psnr:.2f} dB "
            f"(+{psnr - noisy_psnr:.2f})  SSIM {ssim:.4f}  lr {sched.get_last_lr()[0]:.1e}  "
            f"{time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    return 0


def start_or_resume(args: argparse.Namespace, out: Path, archs: tuple[str, ...]) -> Any:
    """The checkpoint to continue from with ``--resume`` (its run settings copied into ``args``),
    else None; a new run refuses a folder that already holds a checkpoint."""
    path = out / CHECKPOINT
    if not args.resume:
        if path.exists():
            raise UserError(f"'{out}' already holds a checkpoint: pass --resume, or another --out")
        return None
    if not path.is_file():
        raise UserError(f"--resume: '{out}' has no {CHECKPOINT}")
    ckpt = read_checkpoint(path)
    if ckpt["arch"] not in archs:
        raise UserError(f"'{path}' holds a {ckpt['arch']} model, not a {' or '.join(archs)}")
    if not {"args", "optimizer", "scheduler", "rng"} <= set(ckpt):
        raise UserError(f"'{path}' was written without the training state --resume needs")
    _resume_settings(args, json.loads(ckpt["args"]))
    return ckpt


def restore_state(
    ckpt: Any, out: Path, model: Any, opt: Any, sched: Any, history: dict[str, Any], epochs: int
) -> tuple[dict, int] | None:
    """(history, first epoch to train): a new run's ``history`` and 0 when ``ckpt`` is None, else
    the checkpoint's history and epochs done, its model, optimizer, schedule and generator state
    loaded. None when the checkpoint already holds ``epochs`` epochs (said on stdout), so the
    caller ends without training."""
    import pyengine as pe

    if ckpt is None:
        return history, 0
    try:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
    except (ValueError, RuntimeError, KeyError) as e:
        raise UserError(f"'{out / CHECKPOINT}' does not match this model: {e}") from None
    sched.load_state_dict(ckpt["scheduler"])
    pe.random.generator().bit_generator.state = json.loads(ckpt["rng"])
    start = int(ckpt["epoch"])
    if start >= epochs:
        print(f"{out}: already trained {start} epochs (ask for more with --epochs)")
        return None
    return json.loads(ckpt["history"]), start


def save_state(
    out: Path,
    arch: str,
    model: Any,
    opt: Any,
    sched: Any,
    epoch: int,
    history: dict[str, Any],
    run_args: dict[str, Any],
    **extra: str,
) -> None:
    """The atomic end-of-epoch checkpoint (everything ``restore_state`` reads) and history.json;
    ``extra`` adds entries (the inverse problems' task)."""
    import pyengine as pe

    pe.save(
        {
            "format": CHECKPOINT_FORMAT,
            "arch": arch,
            "config": json.dumps(model.config()),
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch,
            "rng": json.dumps(pe.random.generator().bit_generator.state),
            "history": json.dumps(history),
            "args": json.dumps(run_args),
            **extra,
        },
        out / CHECKPOINT,
    )
    _atomic_text(out / "history.json", json.dumps(history, indent=1) + "\n")


def _resume_settings(args: argparse.Namespace, saved: dict[str, Any]) -> None:
    """--resume continues the run as it was started: its settings come from the checkpoint. An
    option given now with another value than the checkpoint's is refused rather than ignored."""
    defaults = args.run_defaults
    conflicts = []
    for k, v in saved.items():
        now = getattr(args, k, None)
        now = list(now) if isinstance(now, tuple) else now
        if k in defaults and now != defaults[k] and now != v:
            conflicts.append(f"--{k.replace('_', '-')} {now} (checkpoint: {v})")
    if conflicts:
        raise UserError(
            "--resume continues a run with the settings in its checkpoint; these differ: "
            + ", ".join(conflicts)
            + " (drop them, or start a new run with another --out)"
        )
    for k, v in saved.items():
        setattr(args, k, v)


def _residual_loss(model: Any, noisy: Any, clean: Any) -> Any:
    import pyengine.nn.functional as F

    # DnCNN's residual objective: mse(net(y), y - x) == mse(y - net(y), x).
    return F.mse_loss(model(noisy), noisy - clean)


def train_epoch(
    model: Any,
    opt: Any,
    loader: Any,
    epoch: int,
    args: argparse.Namespace,
    kept: str,
    loss_fn: Any,
) -> list:
    """One epoch of ``loss_fn(model, input, target)`` over ``loader``'s batches; returns the
    losses (averaged over the ranks of a distributed run)."""
    from pyengine.cli.progress import progress

    model.train()
    loader.set_epoch(epoch)
    losses: list[float] = []
    bar = progress(len(loader) * args.batch, f"epoch {epoch + 1}/{args.epochs}", unit="patch")
    with bar:
        for inp, target in loader:
            if args.device != "cpu":
                inp, target = inp.to(args.device), target.to(args.device)
            loss = loss_fn(model, inp, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(args.launch.mean(float(loss.item())))
            check_loss(losses[-1], f"epoch {epoch + 1}, step {len(losses)}", kept)
            bar.update(args.batch)  # the global batch: the bar shows patches/s over all ranks
            bar.set_postfix(loss=f"{losses[-1]:.2e}", refresh=False)
    return losses


def _figures(
    out: Path,
    history: dict[str, Any],
    steps: int,
    noisy: np.ndarray,
    den: np.ndarray,
    clean: np.ndarray,
    noisy_psnr: float,
) -> None:
    from pyengine.cli import plots

    plots.training_curves(
        out / "curves.png", history["loss"], steps, history["val_psnr"], noisy_psnr
    )
    plots.comparison(
        out / "comparison.png",
        noisy,
        den,
        clean,
        (
            f"noisy ({clipped_psnr(noisy, clean):.2f} dB)",
            f"denoised ({clipped_psnr(den, clean):.2f} dB)",
            "clean",
        ),
    )
