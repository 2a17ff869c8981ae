"""Data-parallel DnCNN-17 training over MPI: 1 process x 2 threads vs 2 processes x 1 thread.

``python -m benchmarks.bench_distributed [--steps 8] [--rounds 2] [--batch 16]`` (needs the
``mpi`` extra) launches each configuration through ``mpiexec`` ``--rounds`` times, alternating, so
that load on a shared machine hits both alike, and prints medians:

* patches/s of a training step (forward, MSE, backward, Adam) at the global batch ``--batch``
  (40x40 patches), split evenly over the processes;
* the blocking all-reduce time of the model's whole gradient (0.56 M float32), and of a range of
  sizes;
* how much of it backward hides: "wait ms" is how long DDP's reducer still blocked at the end of
  backward (this includes waiting for the slower rank), "done early" the share of gradient bytes
  whose all-reduce had completed before then, "hidden" = 1 - wait / all-reduce, and "(diff)" =
  1 - (t_sync - t_nosync) / all-reduce from the step times with and without ``no_sync()``
  (identical compute; only meaningful when step times are steady);
* the scaling model of docs/distributed.md from the measured compute time per sample (or from
  given inputs: ``--model-only MS_PER_SAMPLE HIDDEN BATCH_PER_RANK``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

SIZES = (1_000, 10_000, 100_000, 1_000_000, 4_000_000)


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def worker(args: argparse.Namespace) -> None:
    import pyengine as pe
    import pyengine.distributed as dist
    import pyengine.nn.functional as F
    from pyengine.models import DnCNN
    from pyengine.nn.parallel import DistributedDataParallel

    dist.init_process_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    pe.set_num_threads(args.threads)
    pe.manual_seed(0)
    model = DnCNN(depth=17, channels=64)
    net = DistributedDataParallel(model, bucket_cap_mb=args.bucket_cap_mb)
    opt = pe.optim.Adam(model.parameters(), lr=1e-4)
    b = args.batch // world
    rng = np.random.default_rng(rank)
    x = pe.from_numpy(rng.random((b, 1, 40, 40), np.float32))
    y = pe.from_numpy(rng.random((b, 1, 40, 40), np.float32))

    def step() -> None:
        loss = F.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def step_no_sync() -> None:
        with net.no_sync():
            step()

    for _ in range(2):
        step()
    t_sync, t_nosync, waits, overlapped = [], [], [], []
    for _ in range(args.steps):
        t_sync.append(_median_time(step, 1))
        waits.append(net.comm_wait_s)
        overlapped.append(net.comm_overlapped_bytes / (4 * model.num_parameters()))
        t_nosync.append(_median_time(step_no_sync, 1))
    n = model.num_parameters()
    grad = np.zeros(n, np.float32)
    t_ar = _median_time(lambda: dist.iallreduce_array(grad).wait(), 20)
    sizes = {}
    for s in SIZES:
        a = np.zeros(s, np.float32)
        sizes[s] = _median_time(lambda a=a: dist.iallreduce_array(a).wait(), 20)
    # Every rank reports its medians; rank 0 prints the slowest rank's (the step's pace).
    mine = np.array(
        [np.median(t_sync), np.median(t_nosync), np.median(waits), t_ar, -np.median(overlapped)]
    )
    dist.iallreduce_array(mine, dist.ReduceOp.MAX).wait()
    if rank == 0:
        result = {
            "world": world,
            "bucket_cap_mb": args.bucket_cap_mb,
            "threads": args.threads,
            "batch": args.batch,
            "params": n,
            "buckets": len(net._buckets),
            "t_sync": mine[0],
            "t_nosync": mine[1],
            "comm_wait": mine[2],
            "t_allreduce": mine[3],
            "c_overlapped": -mine[4],  # the least overlap over the ranks
            "allreduce_by_size": sizes,
        }
        print("RESULT " + json.dumps(result), flush=True)
    dist.destroy_process_group()


def launch(world: int, threads: int, cap: float, args: argparse.Namespace) -> dict:
    exe = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if exe is None:
        raise SystemExit('needs mpiexec and mpi4py: pip install "pyengine[mpi]"')
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [exe, "-n", str(world), sys.executable, "-m", "benchmarks.bench_distributed"]
    cmd += ["--worker", "--threads", str(threads), "--steps", str(args.steps)]
    cmd += ["--batch", str(args.batch), "--bucket-cap-mb", str(cap)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": root}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=root, check=False)
    if out.returncode:
        raise SystemExit(out.stdout + out.stderr)
    line = next(s for s in out.stdout.splitlines() if s.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


LINKS = {"10 Gbit/s": (10e9 / 8, 20e-6), "100 Gbit/s": (100e9 / 8, 5e-6)}  # bytes/s, latency s


def ring_allreduce_s(n: int, grad_bytes: float, bandwidth: float, latency: float) -> float:
    """Ring all-reduce: 2(n-1) steps, each moving grad_bytes / n and paying one latency."""
    return 2 * (n - 1) / n * grad_bytes / bandwidth + 2 * (n - 1) * latency


def scaling_table(per_sample_s: float, hidden: float, params: int, batch: int) -> None:
    """Predicted efficiency compute / (compute + exposed all-reduce) of synchronous data
    parallelism at ``batch`` samples per rank, and the smallest batch per rank for >= 90 %."""
    grad = 4 * params
    print(
        f"scaling model: {per_sample_s * 1e3:.1f} ms compute per sample per rank, "
        f"{grad / 1e6:.2f} MB of gradient, {hidden:.0%} of the all-reduce hidden, "
        f"batch {batch} per rank"
    )
    print(f"{'link':<12}{'ranks':>6}{'all-reduce ms':>15}{'efficiency':>12}{'batch for 90%':>15}")
    for name, (bw, lat) in LINKS.items():
        for n in (8, 64, 512):
            t_ar = ring_allreduce_s(n, grad, bw, lat)
            exposed = (1 - hidden) * t_ar
            eff = batch * per_sample_s / (batch * per_sample_s + exposed)
            need = max(1, int(np.ceil(9 * exposed / per_sample_s)))
            print(f"{name:<12}{n:>6}{t_ar * 1e3:>15.2f}{eff:>12.1%}{need:>15}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="timed steps per mode and round")
    ap.add_argument("--rounds", type=int, default=2, help="alternating launches per config")
    ap.add_argument("--batch", type=int, default=16, help="global batch (40x40 patches)")
    ap.add_argument(
        "--model-only",
        nargs=3,
        type=float,
        metavar=("MS_PER_SAMPLE", "HIDDEN", "BATCH_PER_RANK"),
        help="print only the scaling model from these inputs (no MPI needed)",
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--bucket-cap-mb", type=float, default=25, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return
    if args.model_only:
        ms, hidden, b = args.model_only
        scaling_table(ms / 1e3, hidden, 556_097, int(b))
        return
    configs = ((1, 2, 25.0), (2, 1, 25.0), (2, 1, 0.25))
    runs: dict[tuple[int, int, float], list[dict]] = {c: [] for c in configs}
    for _ in range(args.rounds):
        for c in configs:
            runs[c].append(launch(*c, args))
    print(f"DnCNN-17, global batch {args.batch} of 40x40, Adam; medians of {args.rounds} launches")
    print(
        f"{'config':<34}{'step ms':>9}{'patches/s':>11}{'no-comm ms':>12}{'all-reduce ms':>15}"
        f"{'wait ms':>9}{'done early':>11}{'hidden':>8}{'(diff)':>8}"
    )
    model_inputs = None
    for (world, threads, cap), rs in runs.items():
        med = {k: float(np.median([r[k] for r in rs])) for k in rs[0] if k.startswith(("t_", "c"))}
        name = f"{world} proc x {threads} thread"
        if world == 1:
            print(f"{name:<34}{med['t_sync'] * 1e3:>9.1f}{args.batch / med['t_sync']:>11.1f}")
            continue
        hidden_wait = min(max(1 - med["comm_wait"] / med["t_allreduce"], 0.0), 1.0)
        hidden_diff = 1 - (med["t_sync"] - med["t_nosync"]) / med["t_allreduce"]
        name += f", {rs[0]['buckets']} buckets (cap {cap:g} MB)"
        print(
            f"{name:<34}{med['t_sync'] * 1e3:>9.1f}{args.batch / med['t_sync']:>11.1f}"
            f"{med['t_nosync'] * 1e3:>12.1f}{med['t_allreduce'] * 1e3:>15.2f}"
            f"{med['comm_wait'] * 1e3:>9.2f}{med['c_overlapped']:>11.0%}{hidden_wait:>8.0%}"
            f"{hidden_diff:>8.0%}"
        )
        if model_inputs is None:
            per_sample = med["t_nosync"] / (args.batch // world)
            model_inputs = (per_sample, hidden_wait, rs[0]["params"])
            sizes = {
                int(k): float(np.median([r["allreduce_by_size"][k] for r in rs]))
                for k in rs[0]["allreduce_by_size"]
            }
            print(
                "  all-reduce of n float32 between the 2 processes (ms): "
                + ", ".join(f"{n:,}: {t * 1e3:.3f}" for n, t in sizes.items())
            )
    if model_inputs is not None:
        per_sample, hidden, params = model_inputs
        scaling_table(per_sample, hidden, params, args.batch // 2)


if __name__ == "__main__":
    main()
