"""Index ops on integer tensors: ``embedding`` (a row gather whose backward scatter-adds into the
weight, through the backend's getitem/index_add like tensor indexing) and ``one_hot``."""

from __future__ import annotations

from typing import Any

import numpy as np

from pyengine.autograd import Function
from pyengine.backend import backend
from pyengine.tensor import Tensor


class Embedding(Function):
    def forward(self, weight, index: Any, padding_idx: int | None):
        self.wshape, self.index, self.padding_idx = weight.shape, index, padding_idx
        return self.be.getitem(weight, index)

    def backward(self, g):
        gw = self.be.full(self.wshape, 0.0, g.dtype)
        self.be.index_add(gw, self.index, g)
        if self.padding_idx is not None:
            # The padding row is never updated, as in torch.
            self.be.setitem(gw, self.padding_idx, 0.0)
        return (gw,)


def embedding(
    input: Tensor,
    weight: Tensor,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> Tensor:
    """Rows ``weight[input]``: (*, ) int64 indices into a (num_embeddings, dim) weight."""
    if not isinstance(input, Tensor) or input.dtype.kind not in "iu":
        raise TypeError("embedding: input must be an integer (Long or Int) Tensor of indices")
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise ValueError("embedding: weight must be a 2-D Tensor (num_embeddings, embedding_dim)")
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise NotImplementedError(
            "embedding: max_norm, scale_grad_by_freq and sparse are not supported"
        )
    n = weight.shape[0]
    idx = input.detach().numpy().astype(np.int64)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"index out of range in self (embedding of {n} rows)")
    if padding_idx is not None:
        if not -n <= padding_idx < n:
            raise ValueError("Padding_idx must be within num_embeddings")
        padding_idx = padding_idx % n
    return Embedding.apply(weight, index=idx % n if idx.size else idx, padding_idx=padding_idx)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """(*,) int64 class indices -> (*, num_classes) int64, as torch.nn.functional.one_hot."""
    if not isinstance(tensor, Tensor) or tensor.dtype.kind not in "iu":
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    idx = tensor.numpy().astype(np.int64)
    if idx.size and idx.min() < 0:
        raise RuntimeError("Class values must be non-negative.")
    if num_classes == -1:
        if idx.size == 0:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
        num_classes = int(idx.max()) + 1
    elif idx.size and idx.max() >= num_classes:
        raise RuntimeError("Class values must be smaller than num_classes.")
    out = (idx[..., None] == np.arange(num_classes)).astype(np.int64)
    return Tensor._wrap(backend(tensor.device).from_numpy(out), tensor.device)
