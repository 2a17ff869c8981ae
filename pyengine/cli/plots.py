"""PNG figures of the restoration commands (matplotlib, Agg backend), written atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pyengine.serialization import mkstemp_umask


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fd, tmp = mkstemp_umask(path.parent, ".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100, format="png")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def training_curves(
    path: Path,
    losses: Sequence[float],
    steps_per_epoch: int,
    val_psnr: Sequence[float],
    noisy_psnr: float | None,
    baseline_label: str = "noisy input",
) -> None:
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.semilogy(
        np.arange(1, len(losses) + 1) / steps_per_epoch,
        losses,
        lw=0.6,
        alpha=0.5,
        label="per batch",
    )
    k = max(1, steps_per_epoch // 4)
    if len(losses) >= k:
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        a.semilogy(np.arange(k, len(losses) + 1) / steps_per_epoch, smooth, label=f"mean of {k}")
    a.set(xlabel="epoch", ylabel="MSE loss", title="training loss")
    a.legend()
    b.plot(np.arange(1, len(val_psnr) + 1), val_psnr, "o-", label="denoised")
    if noisy_psnr is not None:
        b.axhline(noisy_psnr, color="gray", ls="--", label=baseline_label)
    b.set(xlabel="epoch", ylabel="PSNR (dB)", title="validation PSNR")
    b.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def comparison(
    path: Path, noisy: np.ndarray, denoised: np.ndarray, clean: np.ndarray, titles: Sequence[str]
) -> None:
    """Noisy / denoised / clean side by side; images are (C, H, W) in [0, 1]."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    for ax, img, title in zip(axes, (noisy, denoised, clean), titles):
        img = np.clip(img, 0, 1)
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img.transpose(1, 2, 0))
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def psnr_curve(path: Path, iters: Sequence[int], values: Sequence[float], best: int) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(iters, values)
    ax.axvline(best, color="gray", ls="--", label=f"best (iteration {best})")
    ax.set(xlabel="iteration", ylabel="PSNR (dB)", title="deep image prior")
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
