"""``pyengine.nn.parallel``: data parallelism across processes (torch.nn.parallel's names)."""

from pyengine.nn.parallel.distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel"]
