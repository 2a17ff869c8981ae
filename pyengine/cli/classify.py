"""The lecture's classification examples on scikit-learn's bundled 8x8 digits:
``pyengine train mlp`` (linear classifier and 2-layer MLP), ``pyengine train inpaint`` and
``pyengine train cnn`` (a small VGG-style CNN)."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np

import pyengine as pe
import pyengine.nn.functional as F
from pyengine import nn
from pyengine.cli import distributed
from pyengine.cli.progress import progress


def load_digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits scaled to [0, 1], a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return xtr, xte, ytr, yte


def batches(n: int, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i : i + batch] for i in range(0, n, batch)]


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with pe.no_grad():
        pred = model(pe.from_numpy(x)).argmax(1).numpy()
    model.train()
    return float((pred == y).mean())


def fit_classifier(
    model: nn.Module,
    data: tuple[np.ndarray, ...],
    epochs: int,
    lr: float,
    batch: int,
    seed: int,
    desc: str,
) -> float:
    xtr, xte, ytr, yte = data
    opt = pe.optim.Adam(model.parameters(), lr=lr)
    sched = pe.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    rng = np.random.default_rng(seed)
    with progress(total=epochs, desc=desc, unit="epoch") as bar:
        for _ in range(epochs):
            total = 0.0
            for idx in batches(len(xtr), batch, rng):
                loss = F.cross_entropy(model(pe.from_numpy(xtr[idx])), pe.from_numpy(ytr[idx]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            sched.step()
            acc = accuracy(model, xte, yte)
            bar.set_postfix(loss=f"{total / len(xtr):.4f}", test_acc=f"{acc:.4f}")
            bar.update(1)
    return accuracy(model, xte, yte)


def run_mlp(args: argparse.Namespace) -> int:
    os.makedirs(args.out, exist_ok=True)
    pe.manual_seed(args.seed)
    data = load_digits_split(args.seed)
    t0 = time.perf_counter()
    linear = nn.Linear(64, 10)
    acc_lin = fit_classifier(
        linear, data, args.epochs, args.lr, args.batch, args.seed, "linear f=Wx+b"
    )
    mlp = nn.Sequential(nn.Linear(64, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 10))
    acc_mlp = fit_classifier(
        mlp, data, args.epochs, args.lr, args.batch, args.seed, f"mlp 64-{args.hidden}-10"
    )
    elapsed = time.perf_counter() - t0
    pe.save(linear.state_dict(), os.path.join(args.out, "linear.npz"))
    pe.save(mlp.state_dict(), os.path.join(args.out, "mlp.npz"))
    save_filters_grid(
        linear.weight.detach().numpy().reshape(-1, 8, 8),
        os.path.join(args.out, "linear_filters.png"),
        "linear classifier: rows of W (one template per digit)",
        cols=10,
    )
    save_filters_grid(
        mlp[0].weight.detach().numpy().reshape(-1, 8, 8),
        os.path.join(args.out, "mlp_filters.png"),
        "MLP: rows of W1",
        cols=10,
    )
    print(f"test accuracy  linear: {acc_lin:.4f}   mlp: {acc_mlp:.4f}   ({elapsed:.1f} s)")
    print(f"checkpoints and filter images in {args.out}/")
    return 0


def mask_batch(x: np.ndarray, rng: np.random.Generator, size: int = 4) -> np.ndarray:
    """Blank a random size x size square of each 8x8 digit (the part to inpaint)."""
    out = x.reshape(-1, 8, 8).copy()
    r = rng.integers(0, 8 - size + 1, len(out))
    c = rng.integers(0, 8 - size + 1, len(out))
    for i in range(len(out)):
        out[i, r[i] : r[i] + size, c[i] : c[i] + size] = 0.0
    return out.reshape(-1, 64)


def run_inpaint(args: argparse.Namespace) -> int:
    os.makedirs(args.out, exist_ok=True)
    pe.manual_seed(args.seed)
    xtr, xte, _, _ = load_digits_split(args.seed)
    rng = np.random.default_rng(args.seed)
    xte_masked = mask_batch(xte, np.random.default_rng(args.seed + 1))
    model = nn.Sequential(
        nn.Linear(64, args.hidden),
        nn.ReLU(),
        nn.Linear(args.hidden, args.hidden),
        nn.ReLU(),
        nn.Linear(args.hidden, 64),
    )
    opt = pe.optim.Adam(model.parameters(), lr=args.lr)

    def half_sse(pred: pe.Tensor, target: pe.Tensor) -> pe.Tensor:
        # the lecture's 1/2 ||y - y_hat||^2 per example, averaged over the batch
        return F.mse_loss(pred, target, reduction="sum") * (0.5 / pred.shape[0])

    with progress(total=args.epochs, desc="inpainting MLP", unit="epoch") as bar:
        for _ in range(args.epochs):
            for idx in batches(len(xtr), args.batch, rng):
                clean = xtr[idx]
                loss = half_sse(model(pe.from_numpy(mask_batch(clean, rng))), pe.from_numpy(clean))
                opt.zero_grad()
                loss.backward()
                opt.step()
            bar.set_postfix(loss=f"{loss.item():.4f}")
            bar.update(1)
    model.eval()
    with pe.no_grad():
        pred = model(pe.from_numpy(xte_masked)).numpy()
    mse_pred = float(((pred - xte) ** 2).mean())
    mse_masked = float(((xte_masked - xte) ** 2).mean())
    pe.save(model.state_dict(), os.path.join(args.out, "inpaint.npz"))
    save_inpaint_grid(xte_masked[:10], pred[:10], xte[:10], os.path.join(args.out, "inpaint.png"))
    print(
        f"test MSE  masked input: {mse_masked:.5f}   inpainted: {mse_pred:.5f}   "
        f"({mse_masked / max(mse_pred, 1e-12):.1f}x lower)"
    )
    print(f"checkpoint and grid image in {args.out}/")
    return 0


def save_inpaint_grid(masked: np.ndarray, pred: np.ndarray, clean: np.ndarray, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(clean)
    fig, axes = plt.subplots(3, n, figsize=(n * 0.9, 3.2))
    rows = ((masked, "masked"), (pred, "predicted"), (clean, "truth"))
    for row, (imgs, label) in enumerate(rows):
        for i in range(n):
            ax = axes[row, i]
            ax.imshow(np.clip(imgs[i].reshape(8, 8), 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(label)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def small_vgg(width: int = 32) -> nn.Sequential:
    """conv-BN-ReLU blocks, a max pool, global average pooling and a linear head (8x8 input)."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(1, width),
        *block(width, width),
        nn.MaxPool2d(2),
        *block(width, 2 * width),
        *block(2 * width, 2 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, 10),
    )


def shift_augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Translate each (N, C, 8, 8) image by its own random offset of up to one pixel per axis,
    zero filled (digits are centred, but not exactly)."""
    n, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    dy, dx = rng.integers(0, 3, n), rng.integers(0, 3, n)
    out = np.empty_like(x)
    for i in range(n):
        out[i] = padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
    return out


def save_filters_grid(tiles: np.ndarray, path: str, title: str, cols: int = 8) -> None:
    """Each (h, w) tile drawn with a symmetric diverging colour map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = tiles.shape[0]
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9 + 0.4))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if i < n:
            lim = np.abs(tiles[i]).max() or 1.0
            ax.imshow(tiles[i], cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@distributed.command
def run_cnn(args: argparse.Namespace) -> int:
    launch = args.launch
    os.makedirs(args.out, exist_ok=True)
    pe.manual_seed(args.seed)
    xtr, xte, ytr, yte = load_digits_split(args.seed)
    xtr, xte = xtr.reshape(-1, 1, 8, 8), xte.reshape(-1, 1, 8, 8)
    model = small_vgg(args.hidden)
    net = launch.wrap(model, args.sync_bn)
    opt = pe.optim.Adam(model.parameters(), lr=args.lr)
    steps = args.epochs * ((len(xtr) + args.batch - 1) // args.batch)
    sched = pe.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    with progress(total=args.epochs, desc="cnn", unit="epoch") as bar:
        for _ in range(args.epochs):
            total = 0.0
            for idx in batches(len(xtr), args.batch, rng):
                # every rank draws the whole batch (the generators stay in step), uses its share
                mine = np.arange(len(idx))[launch.rank :: launch.world]
                xb = pe.from_numpy(shift_augment(xtr[idx], rng)[mine])
                loss = F.cross_entropy(net(xb), pe.from_numpy(ytr[idx[mine]]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
            acc = accuracy(model, xte, yte)
            bar.set_postfix(loss=f"{total / len(xtr):.4f}", test_acc=f"{acc:.4f}")
            bar.update(1)
    acc = accuracy(model, xte, yte)
    elapsed = time.perf_counter() - t0
    if not launch.is_main:
        return 0
    pe.save(model.state_dict(), os.path.join(args.out, "cnn.npz"))
    save_filters_grid(
        model[0].weight.detach().numpy()[:, 0],
        os.path.join(args.out, "cnn_filters.png"),
        "CNN: first-layer 3x3 filters",
    )
    print(f"test accuracy  cnn: {acc:.4f}   ({elapsed:.1f} s, {model.num_parameters()} parameters)")
    print(f"checkpoint and filter image in {args.out}/")
    return 0


def _common(p: argparse.ArgumentParser, out: str, epochs: int, lr: float, hidden: int) -> None:
    p.add_argument("--epochs", type=int, default=epochs, help="passes over the training set")
    p.add_argument("--lr", type=float, default=lr, help="Adam learning rate")
    p.add_argument("--batch", type=int, default=32, help="batch size")
    p.add_argument("--hidden", type=int, default=hidden, help="hidden units")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", default=out, help="output folder")


def _check(args: argparse.Namespace) -> None:
    """Every input checked before any work: sizes, a finite learning rate, the output folder;
    then the run is seeded and deterministic."""
    from pyengine.cli import UserError
    from pyengine.cli.common import check_finite, check_out_dir, seed_everything

    for name in ("epochs", "batch", "hidden"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name} must be positive, got {getattr(args, name)}")
    check_finite("--lr", args.lr, positive=True)
    check_out_dir(args.out)
    seed_everything(args.seed)


# name -> (runner, help, description, (out, epochs, lr, hidden) defaults)
_MODELS = {
    "mlp": (
        run_mlp,
        "linear classifier and 2-layer MLP on the 8x8 digits",
        "Train f = Wx + b and W2 max(0, W1 x) on scikit-learn's 8x8 digits; prints test "
        "accuracy, saves checkpoints and PNGs of the learned filters.",
        ("runs/mlp", 60, 3e-3, 100),
    ),
    "inpaint": (
        run_inpaint,
        "MLP that fills in a masked square of each digit",
        "The lecture's inpainting example: an MLP trained on masked/complete digit pairs with "
        "loss 1/2 ||y - y_hat||^2.",
        ("runs/inpaint", 30, 2e-3, 256),
    ),
    "cnn": (
        run_cnn,
        "small VGG-style CNN (conv-BN-ReLU, max pool, global avg pool) on the digits",
        "Train the lecture's small CNN on scikit-learn's 8x8 digits; prints test accuracy, "
        "saves a checkpoint and a PNG of the first layer's filters.",
        ("runs/cnn", 15, 3e-3, 32),
    ),
}


def register(sub: Any, train_sub: Any) -> None:
    for name, (runner, help_, description, defaults) in _MODELS.items():
        p = train_sub.add_parser(name, help=help_, description=description)
        _common(p, *defaults)
        if name == "cnn":
            distributed.add_arguments(p)
        p.set_defaults(func=lambda a, run=runner: (_check(a), run(a))[1])
