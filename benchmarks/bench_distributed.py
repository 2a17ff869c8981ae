"""Data-parallel DnCNN-17 training over MPI: 1 process x 2 threads vs 2 processes x 1 thread.

``python -m benchmarks.bench_distributed [--steps 8] [--rounds 2] [--batch 16]`` (needs the
``mpi`` extra) launches each configuration through ``mpiexec`` ``--rounds`` times, alternating, so
that load on a shared machine hits both alike, and prints medians:

* patches/s of a training step (forward, MSE, backward, Adam) at the global batch ``--batch``
  (40x40 patches), split evenly over the processes;
* the blocking all-reduce time of the model's whole gradient (0.56 M float32), and of a range of
  sizes, for the latency + bandwidth fit used by docs/distributed.md;
* the fraction of that all-reduce hidden behind backward: a DDP step against the same step under
  ``no_sync()`` (identical compute, no communication), hidden = 1 - (t_sync - t_nosync) / t_ar;
  and the time DDP's reducer still blocked at the end of backward.
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
    net = DistributedDataParallel(model)
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
    t_sync, t_nosync, waits = [], [], []
    for _ in range(args.steps):
        t_sync.append(_median_time(step, 1))
        waits.append(net.comm_wait_s)
        t_nosync.append(_median_time(step_no_sync, 1))
    n = model.num_parameters()
    grad = np.zeros(n, np.float32)
    t_ar = _median_time(lambda: dist.iallreduce_array(grad).wait(), 20)
    sizes = {}
    for s in SIZES:
        a = np.zeros(s, np.float32)
        sizes[s] = _median_time(lambda a=a: dist.iallreduce_array(a).wait(), 20)
    # Every rank reports its medians; rank 0 prints the slowest rank's (the step's pace).
    mine = np.array([np.median(t_sync), np.median(t_nosync), np.median(waits), t_ar], np.float64)
    dist.iallreduce_array(mine, dist.ReduceOp.MAX).wait()
    if rank == 0:
        result = {
            "world": world,
            "threads": args.threads,
            "batch": args.batch,
            "params": n,
            "buckets": len(net._buckets),
            "t_sync": mine[0],
            "t_nosync": mine[1],
            "comm_wait": mine[2],
            "t_allreduce": mine[3],
            "allreduce_by_size": sizes,
        }
        print("RESULT " + json.dumps(result), flush=True)
    dist.destroy_process_group()


def launch(world: int, threads: int, args: argparse.Namespace) -> dict:
    exe = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if exe is None:
        raise SystemExit('needs mpiexec and mpi4py: pip install "pyengine[mpi]"')
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [exe, "-n", str(world), sys.executable, "-m", "benchmarks.bench_distributed"]
    cmd += ["--worker", "--threads", str(threads), "--steps", str(args.steps)]
    cmd += ["--batch", str(args.batch)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": root}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=root, check=False)
    if out.returncode:
        raise SystemExit(out.stdout + out.stderr)
    line = next(s for s in out.stdout.splitlines() if s.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="timed steps per mode and round")
    ap.add_argument("--rounds", type=int, default=2, help="alternating launches per config")
    ap.add_argument("--batch", type=int, default=16, help="global batch (40x40 patches)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return
    configs = ((1, 2), (2, 1))
    runs: dict[tuple[int, int], list[dict]] = {c: [] for c in configs}
    for _ in range(args.rounds):
        for c in configs:
            runs[c].append(launch(*c, args))
    print(f"DnCNN-17, global batch {args.batch} of 40x40, Adam; medians of {args.rounds} launches")
    print(
        f"{'config':<22}{'step ms':>9}{'patches/s':>11}{'no-comm ms':>12}{'allreduce ms':>14}"
        f"{'hidden':>8}{'wait ms':>9}"
    )
    for (world, threads), rs in runs.items():
        med = {k: float(np.median([r[k] for r in rs])) for k in rs[0] if k.startswith(("t_", "c"))}
        hidden = 1 - (med["t_sync"] - med["t_nosync"]) / med["t_allreduce"]
        comm = world > 1
        print(
            f"{f'{world} proc x {threads} thread':<22}{med['t_sync'] * 1e3:>9.1f}"
            f"{args.batch / med['t_sync']:>11.1f}"
            f"{med['t_nosync'] * 1e3 if comm else float('nan'):>12.1f}"
            f"{med['t_allreduce'] * 1e3 if comm else float('nan'):>14.2f}"
            f"{f'{min(max(hidden, 0), 1):.0%}' if comm else '-':>8}"
            f"{med['comm_wait'] * 1e3 if comm else float('nan'):>9.2f}"
        )
        if comm:
            per_sample = med["t_nosync"] / (args.batch // world)
            sizes = {
                int(k): float(np.median([r["allreduce_by_size"][k] for r in rs]))
                for k in rs[0]["allreduce_by_size"]
            }
            print(
                f"  compute per sample (1 thread, no comm): {per_sample * 1e3:.1f} ms; "
                f"{rs[0]['params']:,} parameters in {rs[0]['buckets']} buckets"
            )
            print(
                "  all-reduce of n float32 (ms): "
                + ", ".join(f"{n:,}: {t * 1e3:.3f}" for n, t in sizes.items())
            )


if __name__ == "__main__":
    main()
