"""``pyengine.distributed``: collectives between processes over MPI (mpi4py), with the names of
``torch.distributed``.

The processes come from an MPI launcher (``mpiexec -n N``, ``srun``): ``init_process_group()``
takes the rank and world size from it. mpi4py is imported only here, on first use, so the core
package never needs it; ``pip install "pyengine[mpi]"`` installs it with MPICH.

Every blocking call is a non-blocking MPI call followed by a wait with a watchdog: a peer that
died or got stuck makes the wait raise ``RuntimeError`` after ``timeout`` (default 30 minutes, as
PyTorch; ``init_process_group(timeout=...)`` or ``PYENGINE_DIST_TIMEOUT`` seconds) instead of
hanging. An exception that escapes a rank's program aborts every rank (``MPI_Abort``), so one
failing process never leaves the others waiting; a rank killed outright is cleaned up by
``mpiexec``.
"""

from __future__ import annotations

import datetime
import enum
import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

import numpy as np

from pyengine.tensor import Tensor

INSTALL_HINT = 'pip install "pyengine[mpi]"  (mpi4py and the MPICH wheel)'


class ReduceOp(enum.Enum):
    SUM = "sum"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    AVG = "avg"


class _Group:
    def __init__(self, comm: Any, timeout: float) -> None:
        self.comm, self.timeout = comm, timeout
        self.rank, self.size = comm.Get_rank(), comm.Get_size()


_group: _Group | None = None
_previous_excepthook: Any = None


def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise RuntimeError(
            f"distributed training needs mpi4py and an MPI library: {INSTALL_HINT} ({e})"
        ) from None
    return MPI


def is_available() -> bool:
    """Whether mpi4py can be imported (does not initialise MPI)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def _abort_on_uncaught(exc_type: Any, exc: Any, tb: Any) -> None:
    # A rank that stops on an exception would leave its peers in a collective until their
    # watchdog fires; print, then take the whole job down at once.
    traceback.print_exception(exc_type, exc, tb)
    sys.stderr.flush()
    if _group is not None:
        _group.comm.Abort(1)


def init_process_group(
    backend: str = "mpi",
    init_method: str | None = None,
    timeout: datetime.timedelta | float | None = None,
    world_size: int = -1,
    rank: int = -1,
) -> None:
    """Join the processes started by the MPI launcher. ``world_size`` and ``rank``, when given,
    must match the launcher's (they cannot be chosen: MPI assigns them)."""
    global _group, _previous_excepthook
    if backend != "mpi":
        raise ValueError(f"backend must be 'mpi' (the only transport), got {backend!r}")
    if _group is not None:
        raise RuntimeError("trying to initialize the default process group twice")
    MPI = _mpi()
    if timeout is None:
        seconds = float(os.environ.get("PYENGINE_DIST_TIMEOUT", 1800))
    elif isinstance(timeout, datetime.timedelta):
        seconds = timeout.total_seconds()
    else:
        seconds = float(timeout)
    if not seconds > 0:
        raise ValueError(f"timeout must be positive, got {seconds} s")
    comm = MPI.COMM_WORLD.Dup()
    comm.Set_errhandler(MPI.ERRORS_RETURN)
    group = _Group(comm, seconds)
    for given, actual, name in ((world_size, group.size, "world_size"), (rank, group.rank, "rank")):
        if given not in (-1, actual):
            raise ValueError(
                f"{name}={given} but the MPI launcher started this process as {actual}"
            )
    _group = group
    _previous_excepthook = sys.excepthook
    sys.excepthook = _abort_on_uncaught


def is_initialized() -> bool:
    return _group is not None


def _get() -> _Group:
    if _group is None:
        raise RuntimeError(
            "Default process group has not been initialized, please make sure to call "
            "init_process_group."
        )
    return _group


def get_rank() -> int:
    return _get().rank


def get_world_size() -> int:
    return _get().size


def destroy_process_group() -> None:
    global _group
    group = _get()
    sys.excepthook = _previous_excepthook
    _group = None
    group.comm.Free()


def abort(code: int = 1) -> None:
    """Terminate every rank now (MPI_Abort): for a failure the other ranks cannot see."""
    group = _group
    if group is None:
        sys.exit(code)
    group.comm.Abort(code)


class Work:
    """A started collective: ``wait()`` blocks (with the group's watchdog timeout) until it has
    finished; ``is_completed()`` polls it and lets MPI progress the transfer."""

    def __init__(self, request: Any, name: str, finish: Any = None) -> None:
        self.request, self.name, self.finish, self.done = request, name, finish, False

    def is_completed(self) -> bool:
        if not self.done and self.request.Test():
            self._complete()
        return self.done

    def _complete(self) -> None:
        self.done = True
        if self.finish is not None:
            self.finish()

    def wait(self, timeout: float | None = None) -> bool:
        group = _get()
        limit = group.timeout if timeout is None else float(timeout)
        start = time.monotonic()
        pause = 0.0
        # MPI progresses a non-blocking call only inside MPI calls, so poll: yield the core for
        # the first millisecond (the peer may need it: ranks can outnumber cores), then sleep,
        # backing off to 1 ms between polls, rather than spin as a blocking MPI_Wait would.
        while not self.is_completed():
            elapsed = time.monotonic() - start
            if elapsed > limit:
                raise RuntimeError(
                    f"pyengine.distributed: {self.name} on rank {group.rank} of {group.size} "
                    f"timed out after {limit:g} s: another rank has died, is stuck, or called "
                    "a different collective"
                )
            if elapsed < 1e-3:
                os.sched_yield()
            else:
                pause = min(max(pause * 2, 2e-5), 1e-3)
                time.sleep(pause)
        return True


_OPS = {
    ReduceOp.SUM: "SUM",
    ReduceOp.AVG: "SUM",
    ReduceOp.PRODUCT: "PROD",
    ReduceOp.MIN: "MIN",
    ReduceOp.MAX: "MAX",
}
_BOOL_OPS = {
    ReduceOp.SUM: "LOR",
    ReduceOp.MAX: "LOR",
    ReduceOp.PRODUCT: "LAND",
    ReduceOp.MIN: "LAND",
}


def _buffer(tensor: Any, name: str) -> np.ndarray:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name}: expected a Tensor, got {type(tensor).__name__}")
    if tensor.device.type != "cpu":
        raise RuntimeError(
            f"{name}: the MPI backend works on CPU tensors, got one on {tensor.device}; "
            "move it with .cpu() first"
        )
    a = tensor._data
    if not a.flags.c_contiguous:
        raise RuntimeError(f"{name}: tensors must be contiguous")
    return a


def _result(work: Work, async_op: bool) -> Work | None:
    if async_op:
        return work
    work.wait()
    return None


def all_reduce(tensor: Tensor, op: ReduceOp = ReduceOp.SUM, async_op: bool = False) -> Any:
    """Reduce ``tensor`` over all ranks, in place on every rank. ``ReduceOp.AVG`` divides the
    sum by the world size (floating tensors only); on bool tensors SUM/MAX are a logical or and
    PRODUCT/MIN a logical and."""
    a = _buffer(tensor, "all_reduce")
    if not isinstance(op, ReduceOp):
        raise TypeError(f"all_reduce: op must be a ReduceOp, got {op!r}")
    if op is ReduceOp.AVG and a.dtype.kind != "f":
        raise TypeError(f"all_reduce: ReduceOp.AVG needs a floating tensor, got {a.dtype}")
    return _result(iallreduce_array(a, op, "all_reduce"), async_op)


def iallreduce_array(a: np.ndarray, op: ReduceOp = ReduceOp.SUM, name: str = "all_reduce") -> Work:
    """Start an in-place all-reduce of a contiguous NumPy array (DDP's buckets use this)."""
    group = _get()
    MPI = _mpi()
    mpi_op = getattr(MPI, (_BOOL_OPS if a.dtype == np.bool_ else _OPS)[op])
    if a.size == 0:
        return Work(MPI.REQUEST_NULL, name)
    req = group.comm.Iallreduce(MPI.IN_PLACE, a, mpi_op)
    finish = None
    if op is ReduceOp.AVG:
        finish = lambda: np.multiply(a, 1.0 / group.size, out=a, casting="unsafe")  # noqa: E731
    return Work(req, f"{name} of {a.size} x {a.dtype}", finish)


def broadcast(tensor: Tensor, src: int = 0, async_op: bool = False) -> Any:
    """Copy ``tensor`` of rank ``src`` into ``tensor`` on every rank."""
    a = _buffer(tensor, "broadcast")
    group = _get()
    _check_rank(src, group, "broadcast")
    if a.size == 0:
        return _result(Work(_mpi().REQUEST_NULL, "broadcast"), async_op)
    req = group.comm.Ibcast(a, root=src)
    return _result(Work(req, f"broadcast of {a.size} x {a.dtype}"), async_op)


def all_gather(tensor_list: list[Tensor], tensor: Tensor, async_op: bool = False) -> Any:
    """Fill ``tensor_list[r]`` with rank r's ``tensor`` (same shape and dtype on every rank)."""
    a = _buffer(tensor, "all_gather")
    group = _get()
    if not isinstance(tensor_list, list) or len(tensor_list) != group.size:
        raise ValueError(
            f"all_gather: tensor_list must be a list of {group.size} tensors (the world size)"
        )
    outs = [_buffer(t, "all_gather") for t in tensor_list]
    for o in outs:
        if o.shape != a.shape or o.dtype != a.dtype:
            raise ValueError(
                f"all_gather: every output must have the input's shape {a.shape} and dtype "
                f"{a.dtype}, got {o.shape} {o.dtype}"
            )
    recv = np.empty((group.size, *a.shape), a.dtype)
    if a.size == 0:
        return _result(Work(_mpi().REQUEST_NULL, "all_gather"), async_op)
    req = group.comm.Iallgather(a, recv)

    def finish() -> None:
        for r, o in enumerate(outs):
            o[...] = recv[r]

    return _result(Work(req, f"all_gather of {a.size} x {a.dtype}", finish), async_op)


def barrier(async_op: bool = False) -> Any:
    return _result(Work(_get().comm.Ibarrier(), "barrier"), async_op)


def broadcast_object_list(object_list: list[Any], src: int = 0) -> None:
    """Replace ``object_list``'s items on every rank by rank ``src``'s (picklable objects)."""
    group = _get()
    _check_rank(src, group, "broadcast_object_list")
    objs = group.comm.bcast(list(object_list) if group.rank == src else None, root=src)
    object_list[:] = objs


def _check_rank(src: int, group: _Group, name: str) -> None:
    if not 0 <= int(src) < group.size:
        raise ValueError(f"{name}: src must be a rank in [0, {group.size}), got {src}")


def broadcast_coalesced(tensors: Sequence[Tensor], src: int = 0) -> None:
    """Broadcast many tensors as one message per dtype (DDP's start-up sync of the model)."""
    group = _get()
    _check_rank(src, group, "broadcast_coalesced")
    by_dtype: dict[np.dtype, list[np.ndarray]] = {}
    for t in tensors:
        a = _buffer(t, "broadcast_coalesced").reshape(-1)
        by_dtype.setdefault(a.dtype, []).append(a)
    for arrays in by_dtype.values():
        flat = np.concatenate(arrays)
        if flat.size:
            Work(group.comm.Ibcast(flat, root=src), "broadcast of the model").wait()
        offset = 0
        for a in arrays:
            a[...] = flat[offset : offset + a.size]
            offset += a.size


__all__ = [
    "ReduceOp",
    "Work",
    "abort",
    "all_gather",
    "all_reduce",
    "barrier",
    "broadcast",
    "broadcast_object_list",
    "destroy_process_group",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "is_available",
    "is_initialized",
]
