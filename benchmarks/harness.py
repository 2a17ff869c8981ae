"""Shared benchmark harness: check first, then time (warm-up, repeats, median), report rates.

Protocol of a benchmark module (``benchmarks/bench_<family>.py``): it exposes

    def run(quick: bool) -> list[dict]

returning one row per workload, built with ``row(...)`` (or ``measure(...)``, which checks, times
and builds the row in one call). ``python -m benchmarks [--quick] [--only NAME]`` imports every
``bench_*.py`` in this folder, calls ``run``, prints one table, writes JSON to
``benchmarks/results/<timestamp>.json`` and a PNG chart of the ratios. ``quick=True`` must finish
in seconds (small shapes, few repeats); a module may keep a ``main()`` for its own CLI.

Row keys: ``workload``, ``shape``, ``ms`` (pyengine median), ``rate`` and ``unit`` ("GFLOP/s" or
"GB/s"), ``pct_peak`` (rate as % of the machine reference below), ``vs_numpy`` and ``vs_torch``
(speed-ups: reference time / pyengine time, so > 1 means pyengine is faster; None when that
reference is absent), ``numpy_ms``, ``torch_ms``.

Machine references (``machine()``), measured once per process:
  * bandwidth: a STREAM-style triad ``a = b + s*c`` on 64 MiB float32 arrays, run by NumPy (two
    ufunc passes, counted as the 5 array streams they really move) split over as many Python
    threads as pyengine uses (NumPy releases the GIL), so no compiled code of ours is involved;
  * GEMM: the best single-precision GEMM rate known on this machine, i.e. the faster of NumPy's
    BLAS and PyTorch on a 2048^3 product. That is not the FMA peak (a timed GEMM never reaches
    peak, and a true peak needs compiled code); it is the bar a hand-written GEMM is measured
    against, so "% of peak" for GFLOP/s rows means "% of the best-known GEMM".
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import numpy as np

try:
    # A process that times only pyengine or only NumPy (see isolated_ms) leaves PyTorch and its
    # OpenMP runtime out.
    if os.environ.get("PE_BENCH_NO_TORCH"):
        raise ImportError
    import torch
except ImportError:  # PyTorch is an optional reference
    torch = None


def median_ms(
    fn: Callable[[], object], repeats: int = 10, warmup: int = 2, budget_s: float = 3.0
) -> float:
    """Median wall time of ``fn`` in ms, after ``warmup`` calls; fewer repeats (at least 3) when
    one call is slow, so that one measurement stays within about ``budget_s``."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    n = max(3, min(repeats, int(budget_s / max(first, 1e-9))))
    times = [first]
    for _ in range(n - 1):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def engine_process(engine: str, call: str, what: str, **env: str) -> dict[str, Any]:
    """Run ``call`` ("from module import f; f(...)") in a fresh Python process for ``engine``
    ("pyengine" or "torch"), with ``env`` added to the environment, and return the JSON of its
    last stdout line. Each library is timed alone, so the process cannot import the other one (the
    import raises ImportError): no second OpenMP runtime, allocator or cache state, and not the
    ~300 MB of RSS of torch's libraries in pyengine's peak. The torch process gets pyengine's
    thread count as PE_BENCH_THREADS."""
    other = "torch" if engine == "pyengine" else "pyengine"
    full_env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **env}
    if engine == "pyengine":
        full_env["PE_BENCH_NO_TORCH"] = "1"
    else:
        full_env["PE_BENCH_THREADS"] = str(_threads())
    cmd = [sys.executable, "-c", f"import sys; sys.modules[{other!r}] = None; {call}"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=full_env)
    if out.returncode:
        raise RuntimeError(f"{what} [{engine}] failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def isolated_ms(target: str, *args: Any, lib: str = "pyengine", repeats: int = 10) -> float:
    """Median ms (``median_ms``) of a workload timed in a fresh Python process of its own:
    ``target`` ("module:function") is called there with ``lib`` ("pyengine", "numpy" or "torch")
    and the JSON-able ``args`` and returns the callable to time. So each library runs alone: no
    OpenBLAS worker threads still spinning after a NumPy call, no second OpenMP runtime, no other
    library's caches or allocator state (in one process OpenBLAS's spinning halved pyengine's
    rate on the call after a NumPy product). PyTorch is imported only when ``lib`` is "torch"."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if lib != "torch":
        env["PE_BENCH_NO_TORCH"] = "1"
    cmd = [sys.executable, "-m", "benchmarks.harness", target, lib, json.dumps(args), str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"{target}{tuple(args)} [{lib}] failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.split()[-1])


def interleaved_ms(
    jobs: dict[Any, tuple[str, tuple[Any, ...], str]], rounds: int, repeats: int = 10
) -> dict[Any, float]:
    """``isolated_ms`` of every job (key -> (target, args, lib)), each timed in ``rounds``
    processes, round by round across the jobs, and the median over the rounds. This VM has slow
    spells minutes long (one library's median moving 15-25 % between runs of the same code);
    interleaved, a spell falls on every library of a comparison instead of on one of them."""
    times: dict[Any, list[float]] = {key: [] for key in jobs}
    for _ in range(rounds):
        for key, (target, args, lib) in jobs.items():
            times[key].append(isolated_ms(target, *args, lib=lib, repeats=repeats))
    return {key: float(np.median(t)) for key, t in times.items()}


def _isolated_main(argv: list[str]) -> None:
    target, lib, args, repeats = argv
    module, fn = target.split(":")
    work = getattr(importlib.import_module(module), fn)(lib, *json.loads(args))
    print(median_ms(work, int(repeats)))


def check_close(name: str, got: Any, ref: Any, rtol: float = 1e-4) -> None:
    """Raise unless ``got`` matches ``ref`` to ``rtol`` relative to ref's largest magnitude."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        raise AssertionError(f"{name}: shape {got.shape} != reference {ref.shape}")
    err = float(np.abs(got - ref).max(initial=0.0)) / max(float(np.abs(ref).max(initial=0.0)), 1.0)
    if not err <= rtol:
        raise AssertionError(f"{name}: relative error {err:.3g} > {rtol:g}; not timing it")


def _threads() -> int:
    import pyengine as pe

    return pe.get_num_threads()


@cache
def machine() -> dict[str, Any]:
    n = 1 << 24
    a, b, c = (np.ones(n, np.float32) for _ in range(3))
    k = _threads()
    parts = [slice(i * n // k, (i + 1) * n // k) for i in range(k)]

    def triad_part(s: slice) -> None:
        np.multiply(c[s], np.float32(3.0), out=a[s])
        np.add(a[s], b[s], out=a[s])

    with ThreadPoolExecutor(k) as pool:
        ms = median_ms(lambda: list(pool.map(triad_part, parts)), repeats=10, warmup=2)
    triad = 5 * n * 4 / (ms * 1e-3) / 1e9
    m = 2048
    x = np.random.default_rng(0).standard_normal((m, m), dtype=np.float32)
    gemm_rates = {"numpy": 2 * m**3 / (median_ms(lambda: x @ x, 3, 1) * 1e-3) / 1e9}
    if torch is not None:
        tx = torch.from_numpy(x)
        gemm_rates["torch"] = 2 * m**3 / (median_ms(lambda: tx @ tx, 3, 1) * 1e-3) / 1e9
    return {
        "threads": k,
        "triad_gbs": triad,
        "gemm_best_gflops": max(gemm_rates.values()),
        "gemm_rates": gemm_rates,
        "blas": blas_info(),
        "torch_threads": torch.get_num_threads() if torch is not None else None,
    }


def blas_info() -> list[dict[str, Any]]:
    """The BLAS NumPy calls (OpenBLAS kernel architecture, threads), via threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl not installed; see numpy.show_runtime()"}]
    keep = ("internal_api", "version", "architecture", "num_threads", "filepath")
    return [{k: i.get(k) for k in keep} for i in threadpool_info() if i.get("user_api") == "blas"]


def row(
    workload: str,
    shape: Any,
    ms: float,
    *,
    flops: float | None = None,
    nbytes: float | None = None,
    numpy_ms: float | None = None,
    torch_ms: float | None = None,
) -> dict[str, Any]:
    """One result row; ``flops`` gives GFLOP/s (vs the best GEMM), ``nbytes`` GB/s (vs triad)."""
    ref = machine()
    if flops is not None:
        rate, unit, peak = flops / (ms * 1e-3) / 1e9, "GFLOP/s", ref["gemm_best_gflops"]
    elif nbytes is not None:
        rate, unit, peak = nbytes / (ms * 1e-3) / 1e9, "GB/s", ref["triad_gbs"]
    else:
        raise ValueError("row needs flops or nbytes")
    return {
        "workload": workload,
        "shape": "x".join(str(s) for s in shape) if isinstance(shape, tuple) else str(shape),
        "ms": ms,
        "rate": rate,
        "unit": unit,
        "pct_peak": 100.0 * rate / peak,
        "numpy_ms": numpy_ms,
        "torch_ms": torch_ms,
        "vs_numpy": numpy_ms / ms if numpy_ms else None,
        "vs_torch": torch_ms / ms if torch_ms else None,
    }


def measure(
    workload: str,
    shape: Any,
    fn: Callable[[], object],
    *,
    check: Callable[[], None],
    numpy_fn: Callable[[], object] | None = None,
    torch_fn: Callable[[], object] | None = None,
    flops: float | None = None,
    nbytes: float | None = None,
    repeats: int = 10,
) -> dict[str, Any]:
    """``check()`` (raises on a wrong result) and only then time pyengine and the references."""
    check()
    ms = median_ms(fn, repeats)
    nms = median_ms(numpy_fn, repeats) if numpy_fn is not None else None
    tms = median_ms(torch_fn, repeats) if torch_fn is not None and torch is not None else None
    return row(workload, shape, ms, flops=flops, nbytes=nbytes, numpy_ms=nms, torch_ms=tms)


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'workload':<30} {'shape':<18} {'ms':>9} {'rate':>9} {'unit':<8} {'%peak':>6} "
        f"{'vs numpy':>9} {'vs torch':>9}"
    )
    out = [head, "-" * len(head)]

    def r(v: float | None) -> str:
        return f"{v:9.2f}" if v is not None else f"{'-':>9}"

    for x in rows:
        out.append(
            f"{x['workload']:<30} {x['shape']:<18} {x['ms']:9.3f} {x['rate']:9.1f} "
            f"{x['unit']:<8} {x['pct_peak']:6.1f} {r(x['vs_numpy'])} {r(x['vs_torch'])}"
        )
    return "\n".join(out)


def plot_ratios(rows: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{x['workload']}\n{x['shape']}" for x in rows]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    for off, key, name in ((-0.2, "vs_numpy", "vs NumPy"), (0.2, "vs_torch", "vs PyTorch")):
        vals = [x[key] or 0.0 for x in rows]
        ax.barh(y + off, vals, height=0.4, label=name)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up of pyengine (reference time / pyengine time)")
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    _isolated_main(sys.argv[1:])
