"""CUDA kernels: SGEMM (FP32 and opt-in TF32), device copy and host transfer bandwidth, conv2d
forward + backward and a DnCNN-17 training step, against PyTorch CUDA where installed.

Every result is checked against a reference before it is timed; times are medians of repeats
between device synchronisations. Prints a skip message and exits 0 without a GPU.

Usage, from the repository root:
    PYTHONPATH=. python benchmarks/bench_cuda.py [--repeats 10] [--n 4096]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

import pyengine as pe

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


def bench_gemm(_cuda, n: int, repeats: int) -> None:
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
    if torch_cuda():
        ta_, tb_ = torch.from_numpy(A.numpy()).cuda(), torch.from_numpy(B.numpy()).cuda()
    for tf32 in (False, True):
        _cuda.set_allow_tf32(tf32)
        t = median_time(lambda: _cuda.gemm(A, B, C), _cuda.synchronize, repeats)
        line = f"sgemm n={n} {'tf32' if tf32 else 'fp32'}: {flops / t / 1e9:9.0f} GFLOP/s"
        if torch_cuda():
            torch.backends.cuda.matmul.allow_tf32 = tf32
            tt = median_time(lambda: ta_ @ tb_, torch.cuda.synchronize, repeats)
            line += f"   torch {flops / tt / 1e9:9.0f} GFLOP/s   ratio {tt / t:5.2f}"
        print(line)
    _cuda.set_allow_tf32(False)


def bench_copy(_cuda, repeats: int) -> None:
    n = 64 << 20  # 256 MiB of float32
    host = np.ones(n, np.float32)
    a = _cuda.from_numpy(host)
    b = _cuda.empty((n,), np.float32)
    _cuda.copy_(b, a)
    assert float(b.numpy()[-1]) == 1.0
    t = median_time(lambda: _cuda.copy_(b, a), _cuda.synchronize, repeats)
    print(f"device copy 256 MiB: {2 * host.nbytes / t / 1e9:7.1f} GB/s (read + write)")
    t = median_time(lambda: _cuda.from_numpy(host), _cuda.synchronize, max(3, repeats // 3))
    print(f"host->device 256 MiB: {host.nbytes / t / 1e9:7.1f} GB/s (pinned staging)")
    t = median_time(lambda: a.numpy(), _cuda.synchronize, max(3, repeats // 3))
    print(f"device->host 256 MiB: {host.nbytes / t / 1e9:7.1f} GB/s (pinned staging)")


def bench_conv(repeats: int) -> None:
    import pyengine.nn.functional as F

    if not hasattr(F, "conv2d"):
        print("conv2d: skipped (pyengine has no conv2d yet)")
        return
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
        return
    flops = 3 * 2.0 * x.shape[0] * 64 * 40 * 40 * 64 * 9
    t = median_time(step, pe.cuda.synchronize, repeats)
    print(f"conv2d 128x64x40x40 3x3 fwd+bwd: {flops / t / 1e9:8.0f} GFLOP/s ({t * 1e3:.1f} ms)")


def bench_dncnn(repeats: int) -> None:
    try:
        from pyengine.models import DnCNN  # type: ignore[attr-defined]
    except ImportError:
        print("DnCNN-17 step: skipped (pyengine.models.DnCNN not available)")
        return
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
        return
    t = median_time(step, pe.cuda.synchronize, repeats)
    print(f"DnCNN-17 training step, batch 128 of 40x40: {t * 1e3:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--n", type=int, default=4096)
    args = ap.parse_args()
    if not pe.cuda.is_available():
        print(f"bench_cuda: skipped, {pe.cuda.unavailable_reason()}")
        return
    from pyengine import _cuda

    bench_gemm(_cuda, args.n, args.repeats)
    bench_copy(_cuda, args.repeats)
    bench_conv(args.repeats)
    bench_dncnn(args.repeats)


if __name__ == "__main__":
    main()
