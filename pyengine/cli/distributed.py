"""Data-parallel training commands under an MPI launcher: ``mpiexec -n N pyengine train ...``.

``command`` wraps a training command: when the process was started by an MPI launcher (its
environment names a world size) or ``--distributed`` is given, it joins the process group,
gives each rank ``cores / ranks-on-this-node`` threads unless OMP_NUM_THREADS is set, silences
stdout and the progress bar on every rank but 0, and hands the command a ``Launch`` that wraps
the model in DistributedDataParallel, shards the data and broadcasts rank 0's decisions. A rank
that fails aborts the whole job at once, so no rank waits for a peer that is gone.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from pyengine.cli import UserError

# Environment variables by which MPI launchers tell a process its world size: MPICH/Hydra, Intel
# MPI and srun --mpi=pmi2 (PMI_SIZE), Open MPI (OMPI_COMM_WORLD_SIZE), MVAPICH (MV2_...).
LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launcher_world_size() -> int:
    for var in LAUNCHER_SIZE_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 1


def add_arguments(p: Any) -> None:
    p.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel over MPI (automatic under mpiexec/srun with more than one process)",
    )
    p.add_argument(
        "--sync-bn",
        action="store_true",
        help="distributed: BatchNorm statistics over all ranks' batches (default: per process)",
    )


class Launch:
    """How this process takes part in the run (one process: rank 0 of 1, nothing to do)."""

    def __init__(self, distributed: bool = False) -> None:
        from pyengine import distributed as dist

        self.distributed = distributed
        self.rank = dist.get_rank() if distributed else 0
        self.world = dist.get_world_size() if distributed else 1
        self.is_main = self.rank == 0

    def per_rank(self, batch: int, option: str = "--batch") -> int:
        if batch % self.world:
            raise UserError(
                f"{option} {batch} is not a multiple of the {self.world} processes: each takes "
                f"an equal share of the global batch"
            )
        return batch // self.world

    def wrap(self, model: Any, sync_bn: bool = False) -> Any:
        if not self.distributed:
            return model
        from pyengine import nn

        if any(p.device.type != "cpu" for p in model.parameters()):
            raise UserError("distributed training over MPI runs on the CPU: use --device cpu")
        if sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model)

    def sampler(self, dataset: Any) -> Any:
        """Rank r takes samples r, r + N, ...: step k's shards together are one process's
        batch k (the same patches, whatever the number of processes)."""
        if not self.distributed:
            return None
        from pyengine.data import DistributedSampler

        return DistributedSampler(dataset, self.world, self.rank, shuffle=False)

    def bcast(self, obj: Any) -> Any:
        if not self.distributed:
            return obj
        from pyengine import distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, value: float) -> float:
        if not self.distributed:
            return value
        import numpy as np

        from pyengine import distributed as dist

        a = np.array([value], np.float64)
        dist.iallreduce_array(a, dist.ReduceOp.AVG, "loss average").wait()
        return float(a[0])


def _start(args: Any) -> Launch:
    if not (getattr(args, "distributed", False) or launcher_world_size() > 1):
        return Launch()
    import pyengine as pe
    from pyengine import distributed as dist

    if not dist.is_available():
        raise UserError(
            "this process was started for distributed training, which needs mpi4py: "
            + dist.INSTALL_HINT
        )
    dist.init_process_group("mpi")
    launch = Launch(True)
    from mpi4py import MPI

    local = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED)
    on_node = local.Get_size()
    local.Free()
    if "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        pe.set_num_threads(max(1, (cores or 1) // on_node))
    if launch.is_main:
        library = MPI.Get_library_version().splitlines()[0]
        print(
            f"distributed: {launch.world} processes ({on_node} on this node) x "
            f"{pe.get_num_threads()} thread(s) each, MPI: {library}",
            flush=True,
        )
    else:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (for the life of the process)
        os.environ["PYENGINE_PROGRESS"] = "0"
    return launch


def command(fn: Callable[[Any], int]) -> Callable[[Any], int]:
    """Run a training command on every rank; ``args.launch`` is the rank's ``Launch``."""

    @functools.wraps(fn)
    def run(args: Any) -> int:
        args.launch = launch = _start(args)
        if not launch.distributed:
            return fn(args)
        from pyengine import distributed as dist

        try:
            code = fn(args)
        except UserError as e:
            print(f"pyengine {args.command}: error (rank {launch.rank}): {e}", file=sys.stderr)
            code = 2
        except KeyboardInterrupt:
            code = 130
        except Exception:
            traceback.print_exc()
            code = 1
        if code:
            sys.stderr.flush()
            dist.abort(code)
        dist.barrier()
        dist.destroy_process_group()
        return code

    return run
