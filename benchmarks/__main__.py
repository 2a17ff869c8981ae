"""``python -m benchmarks [--quick] [--only NAME]``: run every ``bench_*.py`` module here (each
exposes ``run(quick) -> list[dict]``, see harness.py), print one table, write
``benchmarks/results/<timestamp>.json`` and a PNG chart of the speed-ups.

OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE pin OpenBLAS to a kernel that may not be the machine's best;
the NumPy baseline must be NumPy as users get it, so the process re-executes itself without them
before NumPy is imported, and the report records which OpenBLAS kernel actually runs.
It also sets OMP_WAIT_POLICY=PASSIVE unless given: PyTorch's bundled OpenMP runtime and ours live
in one process, and their spin-waiting idle workers otherwise steal each other's cores (seen as
30-100x slowdowns of small kernels timed right after a torch call on a 2-core machine).
"""

from __future__ import annotations

import os
import sys

_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if any(v in os.environ for v in _PINS) or "OMP_WAIT_POLICY" not in os.environ:
    env = {k: v for k, v in os.environ.items() if k not in _PINS}
    env["OMP_WAIT_POLICY"] = env.get("OMP_WAIT_POLICY", "PASSIVE")
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks", *sys.argv[1:]], env)

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks import harness  # noqa: E402

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    ap.add_argument("--only", action="append", help="module name, e.g. gemm (repeatable)")
    args = ap.parse_args(argv)
    names = sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))
    if args.only:
        unknown = set(args.only) - set(names)
        if unknown:
            ap.error(f"unknown benchmark(s) {sorted(unknown)}; available: {names}")
        names = [n for n in names if n in args.only]
    info = harness.machine()
    print(
        f"threads {info['threads']}, torch threads {info['torch_threads']}; "
        f"triad {info['triad_gbs']:.1f} GB/s (NumPy); best-known sgemm "
        f"{info['gemm_best_gflops']:.1f} GFLOP/s {info['gemm_rates']}"
    )
    for b in info["blas"]:
        print(f"NumPy BLAS: {b}")
    rows = []
    for name in names:
        mod = importlib.import_module(f"benchmarks.bench_{name}")
        if not hasattr(mod, "run"):
            print(f"skipping bench_{name}: no run(quick) function")
            continue
        for r in mod.run(args.quick):
            rows.append({"bench": name, **r})
    print(harness.format_table(rows))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    meta = {
        "machine": info,
        "platform": platform.platform(),
        "quick": args.quick,
        "python": sys.version.split()[0],
    }
    (out / f"{stamp}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    if rows:
        harness.plot_ratios(rows, str(out / f"{stamp}.png"))
    print(f"wrote {out / stamp}.json and .png")


if __name__ == "__main__":
    main()
