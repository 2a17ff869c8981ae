"""nn.Embedding: a lookup table of learnable rows (pyengine.ops.embedding)."""

from __future__ import annotations

import numpy as np

from pyengine import random
from pyengine.autograd import no_grad
from pyengine.nn import functional as F
from pyengine.nn.module import Module, Parameter
from pyengine.tensor import Tensor


class Embedding(Module):
    """weight (num_embeddings, embedding_dim) ~ N(0, 1) as in torch; the padding_idx row starts at
    zero and receives no gradient."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: Tensor | None = None,
    ) -> None:
        super().__init__()
        if int(num_embeddings) <= 0 or int(embedding_dim) <= 0:
            raise ValueError(
                f"num_embeddings and embedding_dim must be positive, got {num_embeddings}, "
                f"{embedding_dim}"
            )
        n, d = int(num_embeddings), int(embedding_dim)
        if padding_idx is not None:
            if not -n <= padding_idx < n:
                raise ValueError("Padding_idx must be within num_embeddings")
            padding_idx %= n
        self.num_embeddings, self.embedding_dim, self.padding_idx = n, d, padding_idx
        self.max_norm, self.norm_type = max_norm, norm_type
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        if _weight is None:
            w = random.generator().standard_normal((n, d)).astype(np.float32)
            self.weight = Parameter(Tensor(w))
            self._fill_padding_idx_with_zero()
        else:
            if tuple(_weight.shape) != (n, d):
                raise ValueError("Shape of weight does not match num_embeddings and embedding_dim")
            self.weight = Parameter(_weight.detach())

    def _fill_padding_idx_with_zero(self) -> None:
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx] = 0.0

    def forward(self, input: Tensor) -> Tensor:
        return F.embedding(
            input,
            self.weight,
            self.padding_idx,
            self.max_norm,
            self.norm_type,
            self.scale_grad_by_freq,
            self.sparse,
        )

    @classmethod
    def from_pretrained(
        cls, embeddings: Tensor, freeze: bool = True, padding_idx: int | None = None
    ) -> Embedding:
        n, d = embeddings.shape
        m = cls(n, d, padding_idx=padding_idx, _weight=embeddings)
        m.weight.requires_grad_(not freeze)
        return m

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        return s
