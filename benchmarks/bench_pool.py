"""Pooling and resampling benchmarks: max_pool2d, avg_pool2d and interpolate, forward and
forward+backward, against the NumPy twin and PyTorch (when installed).

Every case is first checked against the reference, then timed (warm-up, repeats, median).
Bandwidth counts the bytes a single-pass kernel must move (inputs read + outputs written, int64
indices included), and is compared with a triad (y = a*x + b*y) on arrays far larger than cache.

    OMP_NUM_THREADS=2 PYTHONPATH=. python benchmarks/bench_pool.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import pyengine as pe
import pyengine.nn.functional as F
from pyengine.backend import device as dev

try:
    import torch
except ImportError:  # pragma: no cover - torch is optional
    torch = None


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def triad_gbs(repeats: int) -> float:
    """Reference bandwidth: the engine's axpby over 2 x 64 MiB (2 reads + 1 write per element)."""
    k = dev.backend(pe.autograd.Device("cpu")).native
    n = 16 << 20
    x, y = np.ones(n, np.float32), np.ones(n, np.float32)
    t = median_time(lambda: k.axpby(x, y, 1.0, 0.5), repeats)
    return 12 * n / t / 1e9


def _case(
    name: str,
    shape: tuple[int, ...],
    fn: Callable,
    out_shape: Callable,
    nbytes: Callable,
    repeats: int,
) -> dict[str, Any]:
    """fn(tensor_module, x) runs the op with that module's functional API."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    oshape = out_shape(shape)
    g = rng.standard_normal(oshape).astype(np.float32)
    fwd_b, bwd_b = nbytes(shape, oshape)

    xo = pe.tensor(x, requires_grad=True)
    go = pe.tensor(g)

    def ours_fwd():
        with pe.no_grad():
            return fn(F, xo)

    def ours_fb():
        xo.grad = None
        fn(F, xo).backward(go)

    # Check first: forward and gradient against the float64 NumPy twin.
    xr = pe.tensor(x.astype(np.float64), requires_grad=True)
    yr = fn(F, xr)
    yr.backward(pe.tensor(g.astype(np.float64)))
    ours_fb()
    np.testing.assert_allclose(
        fn(F, xo).detach().numpy(), yr.detach().numpy(), rtol=1e-4, atol=1e-4, err_msg=name
    )
    np.testing.assert_allclose(xo.grad.numpy(), xr.grad.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)

    row: dict[str, Any] = {"case": name, "shape": "x".join(map(str, shape))}
    row["fwd_ms"] = median_time(ours_fwd, repeats) * 1e3
    row["fb_ms"] = median_time(ours_fb, repeats) * 1e3
    row["fwd_gbs"] = fwd_b / row["fwd_ms"] / 1e6
    row["fb_gbs"] = (fwd_b + bwd_b) / row["fb_ms"] / 1e6

    with dev.use_reference(True):
        row["numpy_fb_ms"] = median_time(ours_fb, max(2, repeats // 5), warmup=1) * 1e3

    if torch is not None:
        tf = torch.nn.functional
        xt = torch.tensor(x, requires_grad=True)
        gt = torch.tensor(g)

        def torch_fwd():
            with torch.no_grad():
                return fn(tf, xt)

        def torch_fb():
            xt.grad = None
            fn(tf, xt).backward(gt)

        torch_fb()
        np.testing.assert_allclose(xt.grad.numpy(), xr.grad.numpy(), rtol=1e-4, atol=1e-4)
        row["torch_fwd_ms"] = median_time(torch_fwd, repeats) * 1e3
        row["torch_fb_ms"] = median_time(torch_fb, repeats) * 1e3
    return row


def _pool_out(k: int) -> Callable:
    return lambda s: (s[0], s[1], s[2] // k, s[3] // k)


def _up_out(f: int) -> Callable:
    return lambda s: (s[0], s[1], s[2] * f, s[3] * f)


def _bytes_max(s, o):
    n_in, n_out = np.prod(s), np.prod(o)
    return 4 * n_in + 12 * n_out, 12 * n_out + 4 * n_in


def _bytes_plain(s, o):
    n_in, n_out = np.prod(s), np.prod(o)
    return 4 * (n_in + n_out), 4 * (n_in + n_out)


CASES = [
    (
        "max_pool2d k2s2",
        (16, 64, 40, 40),
        lambda m, x: m.max_pool2d(x, 2),
        _pool_out(2),
        _bytes_max,
    ),
    (
        "max_pool2d k2s2",
        (16, 64, 64, 64),
        lambda m, x: m.max_pool2d(x, 2),
        _pool_out(2),
        _bytes_max,
    ),
    (
        "avg_pool2d k2s2",
        (16, 64, 64, 64),
        lambda m, x: m.avg_pool2d(x, 2),
        _pool_out(2),
        _bytes_plain,
    ),
    (
        "interp nearest x2",
        (16, 64, 32, 32),
        lambda m, x: m.interpolate(x, scale_factor=2, mode="nearest"),
        _up_out(2),
        _bytes_plain,
    ),
    (
        "interp bilinear x2",
        (16, 64, 32, 32),
        lambda m, x: m.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
        _up_out(2),
        _bytes_plain,
    ),
]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args(argv)
    repeats = 5 if args.quick else 20
    threads = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))
    if torch is not None:
        torch.set_num_threads(threads)
    triad = triad_gbs(repeats)
    print(f"threads={threads}  triad (axpby, 2x64 MiB) = {triad:.1f} GB/s")
    hdr = (
        f"{'case':<20}{'shape':>14}{'fwd ms':>9}{'GB/s':>7}{'fwd+bwd ms':>12}{'GB/s':>7}"
        f"{'%triad':>8}{'x numpy':>9}{'x torch fwd':>13}{'x torch f+b':>13}"
    )
    print(hdr)
    print("-" * len(hdr))
    rows = []
    for name, shape, fn, out_shape, nbytes in CASES:
        r = _case(name, shape, fn, out_shape, nbytes, repeats)
        rows.append(r)
        t_fwd = r["torch_fwd_ms"] / r["fwd_ms"] if "torch_fwd_ms" in r else float("nan")
        t_fb = r["torch_fb_ms"] / r["fb_ms"] if "torch_fb_ms" in r else float("nan")
        print(
            f"{r['case']:<20}{r['shape']:>14}{r['fwd_ms']:>9.3f}{r['fwd_gbs']:>7.1f}"
            f"{r['fb_ms']:>12.3f}{r['fb_gbs']:>7.1f}{100 * r['fb_gbs'] / triad:>7.0f}%"
            f"{r['numpy_fb_ms'] / r['fb_ms']:>9.1f}{t_fwd:>13.2f}{t_fb:>13.2f}"
        )
    print("x numpy / x torch: speed-up over that implementation (> 1: pyengine is faster)")
    return rows


if __name__ == "__main__":
    main()
