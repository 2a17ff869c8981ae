"""CUDA kernels: SGEMM (FP32 and opt-in TF32), device copy and host transfer bandwidth, conv2d
forward + backward and a DnCNN-17 training step, against PyTorch CUDA where installed.

Every result is checked against a reference before it is timed; times are medians of repeats
between device synchronisations. Prints a skip message and exits 0 without a GPU.

Usage, from the repository root:
    PYTHONPATH=. python benchmarks/bench_cuda.py [--repeats 10] [--n 4096]
or as part of ``python -m benchmarks`` (``run(quick)``, see harness.py). "pct_peak" there is
relative to the host CPU's references, so only the ms, rates and torch ratios mean anything.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

import pyengine as pe
from benchmarks.harness import format_table, row

try:
    import torch
except ImportError:  # PyTorch is an optional reference
    torch = None


def median_time(fn: Callable[[], object], sync: Callable[[], None], repeats: int) -> float:
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def torch_cuda() -> bool:
    return torch is not None and torch.cuda.is_available()


def bench_gemm(_cuda, n: int, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    # Correctness first, on a size NumPy checks quickly, for every transpose case.
    m = 333
    a, b = rng.standard_normal((2, m, m), dtype=np.float32)
    c = _cuda.empty((m, m), np.float32)
    for ta in (False, True):
        for tb in (False, True):
            _cuda.gemm(_cuda.from_numpy(a), _cuda.from_numpy(b), c, ta, tb)
            ref = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b)
            np.testing.assert_allclose(c.numpy(), ref, rtol=1e-3, atol=1e-3)
    A = _cuda.from_numpy(rng.standard_normal((n, n), dtype=np.float32))
    B = _cuda.from_numpy(rng.standard_normal((n, n), dtype=np.float32))
    C = _cuda.empty((n, n), np.float32)
    flops = 2.0 * n**3
    rows = []
    if torch_cuda():
        ta_, tb_ = torch.from_numpy(A.numpy()).cuda(), torch.from_numpy(B.numpy()).cuda()
    for tf32 in (False, True):
        _cuda.set_allow_tf32(tf32)
        t = median_time(lambda: _cuda.gemm(A, B, C), _cuda.synchronize, repeats)
        tt = None
        if torch_cuda():
            torch.backends.cuda.matmul.allow_tf32 = tf32
            tt = median_time(lambda: ta_ @ tb_, torch.cuda.synchronize, repeats)
        name = f"cuda sgemm {'tf32' if tf32 else 'fp32'}"
        rows.append(row(name, (n, n, n), t * 1e3, flops=flops, torch_ms=tt and tt * 1e3))
    _cuda.set_allow_tf32(False)
    return rows


def bench_copy(_cuda, repeats: int) -> list[dict]:
    n = 64 << 20  # 256 MiB of float32
    host = np.ones(n, np.float32)
    a = _cuda.from_numpy(host)
    b = _cuda.empty((n,), np.float32)
    _cuda.copy_(b, a)
    assert float(b.numpy()[-1]) == 1.0
    few = max(3, repeats // 3)
    t = median_time(lambda: _cuda.copy_(b, a), _cuda.synchronize, repeats)
    t_h2d = median_time(lambda: _cuda.from_numpy(host), _cuda.synchronize, few)
    t_d2h = median_time(lambda: a.numpy(), _cuda.synchronize, few)
    return [
        row("cuda device copy (read+write)", (n,), t * 1e3, nbytes=2 * host.nbytes),
        row("cuda host->device (pinned staging)", (n,), t_h2d * 1e3, nbytes=host.nbytes),
        row("cuda device->host (pinned staging)", (n,), t_d2h * 1e3, nbytes=host.nbytes),
    ]


def bench_conv(repeats: int) -> list[dict]:
    import pyengine.nn.functional as F

    if not hasattr(F, "conv2d"):
        print("conv2d: skipped (pyengine has no conv2d yet)")
        return []
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 64, 40, 40), dtype=np.float32)
    w = rng.standard_normal((64, 64, 3, 3), dtype=np.float32) * 0.05
    xt = pe.tensor(x, device="cuda", requires_grad=True)
    wt = pe.tensor(w, device="cuda", requires_grad=True)

    def step():
        F.conv2d(xt, wt, padding=1).sum().backward()

    try:
        step()
    except NotImplementedError as e:
        print(f"conv2d: skipped ({e})")
        return []
    flops = 3 * 2.0 * x.shape[0] * 64 * 40 * 40 * 64 * 9
    t = median_time(step, pe.cuda.synchronize, repeats)
    return [row("cuda conv2d 3x3 fwd+bwd", x.shape, t * 1e3, flops=flops)]


def bench_dncnn(repeats: int) -> list[dict]:
    try:
        from pyengine.models import DnCNN  # type: ignore[attr-defined]
    except ImportError:
        print("DnCNN-17 step: skipped (pyengine.models.DnCNN not available)")
        return []
    model = DnCNN(depth=17).to("cuda")
    opt = pe.optim.Adam(model.parameters(), lr=1e-3)
    x = pe.randn(128, 1, 40, 40, device="cuda")
    noise = pe.randn(128, 1, 40, 40, device="cuda") * 0.1

    def step():
        opt.zero_grad()
        loss = ((model(x + noise) - noise) ** 2).mean()
        loss.backward()
        opt.step()

    try:
        step()
    except NotImplementedError as e:
        print(f"DnCNN-17 step: skipped ({e})")
        return []
    t = median_time(step, pe.cuda.synchronize, repeats)
    # 17 conv layers of 64 channels (first and last 1 channel), forward + 2x backward.
    flops = 3 * 2.0 * 128 * 40 * 40 * 9 * (64 + 15 * 64 * 64 + 64)
    return [row("cuda DnCNN-17 train step", (128, 1, 40, 40), t * 1e3, flops=flops)]


def bench_all(n: int, repeats: int) -> list[dict]:
    if not pe.cuda.is_available():
        print(f"bench_cuda: skipped, {pe.cuda.unavailable_reason()}")
        return []
    from pyengine import _cuda

    rows = bench_gemm(_cuda, n, repeats) + bench_copy(_cuda, repeats)
    return rows + bench_conv(repeats) + bench_dncnn(repeats)


def run(quick: bool) -> list[dict]:
    """Rows for ``python -m benchmarks`` (protocol in harness.py)."""
    return bench_all(1024 if quick else 4096, 3 if quick else 10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--n", type=int, default=4096)
    args = ap.parse_args()
    rows = bench_all(args.n, args.repeats)
    if rows:
        print(format_table(rows))


if __name__ == "__main__":
    main()
