"""DnCNN-17 inference: pyengine's fast path against PyTorch, each engine in its own process.

pyengine runs what ``pyengine denoise`` runs: ``denoise_array`` (pyengine/models/inference.py),
which folds every BatchNorm into its conv and runs conv + bias + ReLU as one fused node per layer
with ``algo="auto"`` (Winograd where the tuner measures it fastest), in tiles of 512 x 512 output
pixels. PyTorch runs the same weights as conv / BatchNorm / ReLU modules in eval mode under
``torch.inference_mode()``. The weights are the shipped pretrained DnCNN-S sigma 25
(/work/shared/data/weights/dncnn_s25.npz, BatchNorm explicit); both outputs are checked to agree
before the times count. The pyengine process never imports PyTorch.

The large case denoises a 4096 x 4096 image in the pyengine process and reports its peak RSS
(VmHWM), which tiling keeps bounded.

``python -m benchmarks.bench_inference [--quick] [--size 512] [--large 4096]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks.harness import engine_process, row, torch

WEIGHTS = "dncnn_s25.npz"
SIGMA = 25.0


def _weights_path() -> str:
    root = os.environ.get("PYENGINE_DATA", "/work/shared/data")
    return os.path.join(root, "weights", WEIGHTS)


def _hwm_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def _noisy(size: int, seed: int = 0) -> np.ndarray:
    """A smooth (1, size, size) image in [0, 1] plus Gaussian noise of SIGMA / 255."""
    rng = np.random.default_rng(seed)
    u = np.linspace(0, 6 * np.pi, size, dtype=np.float32)
    clean = 0.5 + 0.4 * np.sin(u)[:, None] * np.cos(0.7 * u)[None, :]
    return (clean + rng.standard_normal((size, size), dtype=np.float32) * SIGMA / 255)[None]


def torch_dncnn(state: dict[str, np.ndarray], eps: float) -> Any:
    """PyTorch's Sequential with pyengine DnCNN's layout: ``layers.<i>`` holds a conv (4-D
    weight), a BatchNorm (1-D weight) or, without parameters, a ReLU."""
    nn = torch.nn
    weights = {int(k.split(".")[1]): v for k, v in state.items() if k.endswith(".weight")}
    layers: list[Any] = []
    for i in range(max(weights) + 1):
        w = weights.get(i)
        if w is None:
            layers.append(nn.ReLU())
        elif w.ndim == 1:
            layers.append(nn.BatchNorm2d(w.shape[0], eps=eps))
        else:
            bias = f"layers.{i}.bias" in state
            layers.append(nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1, bias=bias))
    net = nn.Sequential(*layers)
    net.load_state_dict({k.split(".", 1)[1]: torch.from_numpy(v) for k, v in state.items()})
    return net.eval()


def _worker(engine: str, size: int, repeats: int, out_path: str, weights: str) -> None:
    """One engine's process: denoise, save the result to ``out_path``, time ``repeats`` more
    runs; prints JSON with the times (s) and VmHWM. ``weights``: the .npz of
    ``_save_torch_weights`` (PyTorch only)."""
    noisy = _noisy(size)
    if engine == "torch":
        torch.set_num_threads(int(os.environ.get("PE_BENCH_THREADS", "2")))
        z = np.load(weights)
        net = torch_dncnn({k: z[k] for k in z.files if k != "eps"}, float(z["eps"]))
        x = torch.from_numpy(noisy[None])

        def fn() -> np.ndarray:
            with torch.inference_mode():
                return (x - net(x)).numpy()[0]

    else:
        from pyengine.models.dncnn import DnCNN
        from pyengine.models.inference import denoise_array

        model = DnCNN.from_npz(_weights_path())

        def fn() -> np.ndarray:
            return denoise_array(model, noisy, tile=512)

    np.save(out_path, fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"times": times, "hwm_kb": _hwm_kb()}))


def in_process(
    engine: str, size: int, repeats: int, out_path: str, weights: str = ""
) -> dict[str, Any]:
    """``_worker`` in a fresh Python process of ``engine``'s own (``engine_process``)."""
    call = (
        "from benchmarks.bench_inference import _worker; "
        f"_worker({engine!r}, {size}, {repeats}, {out_path!r}, {weights!r})"
    )
    return engine_process(engine, call, "DnCNN inference")


def _save_torch_weights(path: str) -> None:
    from pyengine.models.dncnn import DnCNN

    model = DnCNN.from_npz(_weights_path())
    bn = next(m for m in model.modules() if type(m).__name__ == "BatchNorm2d")
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    np.savez(path, eps=np.float64(bn.eps), **sd)


def compare(size: int, repeats: int, rounds: int) -> dict[str, Any]:
    """Median ms per engine over ``rounds`` alternating process pairs; outputs checked first."""
    times: dict[str, list[float]] = {"pyengine": [], "torch": []}
    hwm: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "weights.npz")
        _save_torch_weights(weights)
        for _ in range(rounds):
            for e in times:
                path = os.path.join(tmp, f"{e}.npy")
                r = in_process(e, size, repeats, path, weights)
                times[e] += r["times"]
                hwm[e] = max(hwm.get(e, 0), r["hwm_kb"])
            a, b = (np.load(os.path.join(tmp, f"{e}.npy")) for e in times)
            err = float(np.abs(a - b).max())
            if not err <= 1e-4:
                raise AssertionError(f"DnCNN {size}x{size}: outputs differ by {err:.3g}")
    ms, tms = (float(np.median(times[e])) * 1e3 for e in ("pyengine", "torch"))
    return {
        "ms": ms,
        "torch_ms": tms,
        "max_abs_diff": err,
        "rss_mb": hwm["pyengine"] / 1024,
        "torch_rss_mb": hwm["torch"] / 1024,
    }


def large_rss(size: int) -> dict[str, Any]:
    """Peak RSS (MB) and time of one tiled pyengine denoise of a ``size`` x ``size`` image."""
    with tempfile.TemporaryDirectory() as tmp:
        r = in_process("pyengine", size, 0, os.path.join(tmp, "large.npy"))
    return {"rss_mb": r["hwm_kb"] / 1024}


def _flops(size: int) -> float:
    """Conv multiply-adds x 2 of DnCNN-17 (1 -> 64, 15 x 64 -> 64, 64 -> 1) on size^2 pixels."""
    return 2.0 * size * size * 9 * (64 + 15 * 64 * 64 + 64)


def run(quick: bool) -> list[dict[str, Any]]:
    if torch is None or not os.path.exists(_weights_path()):
        return []
    size = 128 if quick else 512
    c = compare(size, repeats=2 if quick else 5, rounds=1 if quick else 2)
    r = row(
        "dncnn-17 inference",
        f"1x1x{size}x{size}",
        c["ms"],
        flops=_flops(size),
        torch_ms=c["torch_ms"],
    )
    print(
        f"DnCNN-17 inference {size}x{size}: {c['ms']:.0f} ms vs torch {c['torch_ms']:.0f} ms "
        f"({c['ms'] / c['torch_ms']:.2f}x), max |diff| {c['max_abs_diff']:.2g}",
        file=sys.stderr,
    )
    rows = [r]
    if not quick:
        big = large_rss(4096)
        print(f"DnCNN-17 inference 4096x4096: peak RSS {big['rss_mb']:.0f} MB", file=sys.stderr)
        r.update(large_4096_peak_rss_mb=big["rss_mb"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--large", type=int, default=0, help="also the peak RSS of a LARGE^2 image")
    args = ap.parse_args()
    c = compare(args.size, args.repeats, args.rounds)
    print(
        f"DnCNN-17 inference {args.size}x{args.size}: pyengine {c['ms']:.0f} ms, torch "
        f"{c['torch_ms']:.0f} ms, ratio {c['ms'] / c['torch_ms']:.3f}x; max |diff| "
        f"{c['max_abs_diff']:.2g}; peak RSS {c['rss_mb']:.0f} MB vs torch "
        f"{c['torch_rss_mb']:.0f} MB"
    )
    if args.large:
        t0 = time.perf_counter()
        big = large_rss(args.large)
        print(
            f"DnCNN-17 inference {args.large}x{args.large} (tiles of 512): peak RSS "
            f"{big['rss_mb']:.0f} MB, {time.perf_counter() - t0:.0f} s with process start"
        )


if __name__ == "__main__":
    main()
