"""``DistributedDataParallel``: synchronous data parallelism over ``pyengine.distributed``.

The reducer follows PyTorch's: parameters go into flat buckets in reverse registration order
(roughly the order backward produces their gradients; the first bucket is capped at 1 MiB so
that communication starts early, the others at ``bucket_cap_mb``). A hook on each parameter
(``register_post_accumulate_grad_hook``) copies its gradient into its bucket as soon as autograd
has accumulated it; a full bucket starts a non-blocking all-reduce (MPI_Iallreduce), so the
transfer overlaps the rest of the backward pass. Buckets start strictly in index order, the same
on every rank, as MPI requires of collectives. When the last gradient of the iteration arrives
the reducer waits for every bucket and writes the averaged gradients back into ``.grad``.

MPI moves a non-blocking transfer forward only inside MPI calls, so every hook also polls the
buckets in flight: backward's own pace drives the progress, with no extra thread.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

from pyengine import distributed as dist
from pyengine.autograd import is_grad_enabled
from pyengine.nn.module import Module
from pyengine.tensor import Tensor

FIRST_BUCKET_BYTES = 1024 * 1024


class _Bucket:
    def __init__(self, params: list[Any], dtype: np.dtype) -> None:
        self.params = params
        self.offsets = np.cumsum([0] + [p.numel() for p in params])
        self.flat = np.zeros(int(self.offsets[-1]), dtype)
        self.pending = len(params)
        self.work: dist.Work | None = None

    def view(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i] : self.offsets[i + 1]]


class DistributedDataParallel(Module):
    """Wrap ``module`` so that ``backward()`` leaves every rank with the gradients averaged over
    all ranks. Rank 0's parameters and buffers are copied to every rank here; with
    ``broadcast_buffers`` (default) its buffers (BatchNorm statistics) again at every training
    forward. ``find_unused_parameters=True`` lets the forward use only some parameters (the others
    count as zero gradients; parameters no rank used keep ``.grad`` unchanged); without it a
    parameter left out of the loss makes the next forward raise, as in PyTorch."""

    def __init__(
        self,
        module: Module,
        device_ids: Any = None,
        output_device: Any = None,
        dim: int = 0,
        broadcast_buffers: bool = True,
        process_group: Any = None,
        bucket_cap_mb: float = 25,
        find_unused_parameters: bool = False,
    ) -> None:
        super().__init__()
        if not dist.is_initialized():
            raise RuntimeError(
                "DistributedDataParallel needs the default process group: call "
                "pyengine.distributed.init_process_group() first"
            )
        if process_group is not None:
            raise ValueError("only the default process group (process_group=None) is supported")
        if bucket_cap_mb <= 0:
            raise ValueError(f"bucket_cap_mb must be positive, got {bucket_cap_mb}")
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.require_backward_grad_sync = True
        seen: set[int] = set()
        params = []
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
        for t in params + list(module.buffers()):
            if t.device.type != "cpu":
                raise RuntimeError(
                    f"DistributedDataParallel over MPI needs the module on the CPU, found a "
                    f"tensor on {t.device}"
                )
        self._params = params
        dist.broadcast_coalesced(params + list(module.buffers()), 0)
        self._buckets = self._make_buckets(params, bucket_cap_mb)
        self._where = {id(p): (b, i) for b in self._buckets for i, p in enumerate(b.params)}
        self._index = {id(p): k for k, p in enumerate(params)}
        self._ready: set[int] = set()
        # The hooks live in autograd's registry for as long as the parameters: they reach this
        # object through a weak reference, so a dropped DDP wrapper is not kept alive by them.
        ref = weakref.ref(self)

        def hook(p: Any) -> None:
            ddp = ref()
            if ddp is not None:
                ddp._grad_ready(p)

        self._handles = [p.register_post_accumulate_grad_hook(hook) for p in params]
        self._sync_now = False
        self._used: np.ndarray | None = None
        self._used_work: dist.Work | None = None
        self._unused: list[Any] = []
        self._reset()
        # The last reduction: time backward blocked at its end waiting for transfers (and for
        # slower ranks), and gradient bytes whose all-reduce had finished before that.
        self.comm_wait_s = 0.0
        self.comm_overlapped_bytes = 0

    @staticmethod
    def _make_buckets(params: list[Any], cap_mb: float) -> list[_Bucket]:
        buckets: list[_Bucket] = []
        open_: dict[np.dtype, list[Any]] = {}
        size: dict[np.dtype, int] = {}
        for p in reversed(params):
            dt = p._data.dtype
            group = open_.setdefault(dt, [])
            group.append(p)
            size[dt] = size.get(dt, 0) + p.numel() * dt.itemsize
            cap = cap_mb * 1024 * 1024
            if not buckets:
                cap = min(cap, FIRST_BUCKET_BYTES)
            if size[dt] >= cap:
                buckets.append(_Bucket(group, dt))
                open_[dt], size[dt] = [], 0
        buckets += [_Bucket(g, dt) for dt, g in open_.items() if g]
        return buckets

    def _reset(self) -> None:
        for b in self._buckets:
            b.pending, b.work = len(b.params), None
        self._next = 0
        self._started = False
        self._ready = set()

    def _partial(self) -> bool:
        return self._started and self._next < len(self._buckets)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes inside accumulate local gradients without communication; the first
        synchronised backward after it all-reduces the accumulated sum."""
        prev = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = prev

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        if self._partial():
            missing = [k for k, p in enumerate(self._params) if id(p) not in self._ready]
            raise RuntimeError(
                "Expected to have finished reduction in the prior iteration before starting a new "
                "one. This error indicates that your module has parameters that were not used in "
                "producing loss. You can enable unused parameter detection by passing the keyword "
                "argument `find_unused_parameters=True` to DistributedDataParallel. Parameter "
                f"indices which did not receive grad: {missing[:20]}"
            )
        self._reset()
        self._sync_now = is_grad_enabled() and self.require_backward_grad_sync
        if self.broadcast_buffers and self.module.training and is_grad_enabled():
            buffers = [b for b in self.module.buffers() if b is not None]
            if buffers:
                dist.broadcast_coalesced(buffers, 0)
        out = self.module(*inputs, **kwargs)
        if self._sync_now and self.find_unused_parameters:
            reached = _reachable_leaves(out)
            self._unused = [p for p in self._params if id(p) not in reached]
        return out

    # ------------------------------------------------------------------ reducer
    def _grad_ready(self, p: Any) -> None:
        if not self._sync_now:
            return
        if not self._started:
            self._started = True
            if self.find_unused_parameters:
                self._start_used_map()
                for q in self._unused:
                    b, i = self._where[id(q)]
                    b.view(i)[...] = 0
                    self._ready.add(id(q))
                    self._mark(b)
        b, i = self._where[id(p)]
        b.view(i)[...] = p.grad._data.reshape(-1)
        self._ready.add(id(p))
        self._mark(b)
        for other in self._buckets[: self._next]:
            if other.work is not None:
                other.work.is_completed()

    def _start_used_map(self) -> None:
        unused = {id(q) for q in self._unused}
        self._used = np.array([id(p) not in unused for p in self._params], np.int32)
        self._used_work = dist.iallreduce_array(self._used, name="unused-parameter map")

    def _mark(self, b: _Bucket) -> None:
        b.pending -= 1
        while self._next < len(self._buckets) and self._buckets[self._next].pending == 0:
            nb = self._buckets[self._next]
            nb.work = dist.iallreduce_array(nb.flat, name=f"gradient bucket {self._next}")
            self._next += 1
        if self._next == len(self._buckets) and b.pending == 0:
            self._finish()

    def _finish(self) -> None:
        t0 = time.perf_counter()
        self.comm_overlapped_bytes = sum(
            b.flat.nbytes for b in self._buckets if b.work.is_completed()
        )
        for b in self._buckets:
            b.work.wait()
        if self._used_work is not None:
            self._used_work.wait()
        self.comm_wait_s = time.perf_counter() - t0
        scale = 1.0 / dist.get_world_size()
        used = self._used
        for b in self._buckets:
            for i, p in enumerate(b.params):
                if used is not None and used[self._index[id(p)]] == 0:
                    continue
                if p.grad is None:
                    p.grad = Tensor._wrap(b.view(i).reshape(p.shape) * scale, p.device)
                else:
                    np.multiply(b.view(i), scale, out=p.grad._data.reshape(-1))
        self._used, self._used_work = None, None
        self._sync_now = False


def _reachable_leaves(out: Any) -> set[int]:
    """ids of the leaf tensors that the autograd graph of ``out`` (tensors, possibly nested in
    tuples, lists and dicts) depends on."""
    stack: list[Any] = [out]
    seen: set[int] = set()
    leaves: set[int] = set()
    while stack:
        x = stack.pop()
        if isinstance(x, (tuple, list)):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, Tensor) and id(x) not in seen:
            seen.add(id(x))
            if x._ctx is None:
                leaves.add(id(x))
            else:
                stack.extend(x._ctx.inputs)
    return leaves
