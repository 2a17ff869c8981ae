"""Matrix products on the engine's GEMM (csrc/gemm.cpp): matmul and linear."""

from __future__ import annotations

import numpy as np

from pyengine.autograd import Function
from pyengine.ops._util import require_tensor
from pyengine.tensor import Tensor


class MatMul(Function):
    """(M,K) @ (K,N), or batched (B,M,K) @ (B,K,N) as B separate GEMMs."""

    def forward(self, a, b):
        self.save_for_backward(
            a if self.needs_input_grad[1] else None, b if self.needs_input_grad[0] else None
        )
        out = self.be.empty((*a.shape[:-1], b.shape[-1]), a.dtype)
        if a.ndim == 2:
            self.k.gemm(a, b, out)
        else:
            for i in range(a.shape[0]):
                self.k.gemm(a[i], b[i], out[i])
        return out

    def backward(self, g):
        a, b = self.saved
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = self.be.empty((*g.shape[:-1], b.shape[-2]), g.dtype)
            for gi, bi, out in _batches(g, b, ga):
                self.k.gemm(gi, bi, out, trans_b=True)
        if self.needs_input_grad[1]:
            gb = self.be.empty((*a.shape[:-2], a.shape[-1], g.shape[-1]), g.dtype)
            for ai, gi, out in _batches(a, g, gb):
                self.k.gemm(ai, gi, out, trans_a=True)
        return ga, gb

    def backward_graph(self, g):
        a, b = self.inputs
        ga = g @ b.transpose(-1, -2) if self.needs_input_grad[0] else None
        gb = a.transpose(-1, -2) @ g if self.needs_input_grad[1] else None
        return ga, gb


def _batches(x, y, z):
    if x.ndim == 2:
        return [(x, y, z)]
    return [(x[i], y[i], z[i]) for i in range(x.shape[0])]


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """torch.matmul: 1-D operands are promoted to a row/column and the added dim removed; the
    leading (batch) dims broadcast. ``(..., M, K) @ (K, N)`` runs as one (B*M, K) GEMM."""
    # Two matrices of one dtype whose inner sizes agree need none of the promotion, reshaping
    # and broadcasting below: going straight to the Function cut a 1x1 ``a @ b`` from ~13 to
    # ~6 us (benchmarks/bench_gemm.py's "matmul 1x1x1" row), which is 5-10% of a 256^3 product.
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        da, db = a._data, b._data
        sa, sb = da.shape, db.shape
        if len(sa) == 2 and len(sb) == 2 and sa[1] == sb[0] and da.dtype == db.dtype:
            return MatMul.apply(a, b)
    require_tensor(a, "input", "matmul")
    require_tensor(b, "other", "matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            f"both arguments to matmul need to be at least 1D, but they are {a.ndim}D and {b.ndim}D"
        )
    if a.dtype != b.dtype and a.dtype.kind == "f" and b.dtype.kind == "f":
        wide = np.promote_types(a.dtype, b.dtype)
        a, b = a.to(wide), b.to(wide)
    va, vb = a.ndim == 1, b.ndim == 1
    a2 = a.unsqueeze(0) if va else a
    b2 = b.unsqueeze(-1) if vb else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ValueError(
            f"mat1 and mat2 shapes cannot be multiplied ({a.shape} and {b.shape}): inner "
            f"dimensions {a2.shape[-1]} and {b2.shape[-2]} differ"
        )
    M, K, N = a2.shape[-2], a2.shape[-1], b2.shape[-1]
    if b2.ndim == 2:
        lead = a2.shape[:-2]
        out = MatMul.apply(a2.reshape(-1, K) if a2.ndim != 2 else a2, b2)
        out = out.reshape(*lead, M, N) if a2.ndim != 2 else out
    else:
        try:
            batch = tuple(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]))
        except ValueError:
            raise ValueError(
                f"matmul: batch dimensions of {a.shape} and {b.shape} cannot be broadcast"
            ) from None
        ae = a2 if a2.shape[:-2] == batch else a2.expand(*batch, M, K)
        be = b2 if b2.shape[:-2] == batch else b2.expand(*batch, K, N)
        out = MatMul.apply(ae.reshape(-1, M, K), be.reshape(-1, K, N)).reshape(*batch, M, N)
    if va:
        out = out.squeeze(-2)
    if vb:
        out = out.squeeze(-1)
    return out


class Linear(Function):
    """y = x W^T + b with x (M, in), W (out, in), b (out,)."""

    def forward(self, x, w, b):
        self.wshape = w.shape
        y = self.be.empty((x.shape[0], w.shape[0]), x.dtype)
        self.k.gemm(x, w, y, trans_b=True)
        if b is not None:
            self.k.binary_forward("add", y, b, y)
        self.save_for_backward(
            x if self.needs_input_grad[1] else None, w if self.needs_input_grad[0] else None
        )
        return y

    def backward(self, g):
        x, w = self.saved
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            gx = self.be.empty((g.shape[0], w.shape[1]), g.dtype)
            self.k.gemm(g, w, gx)
        if self.needs_input_grad[1]:
            gw = self.be.empty(self.wshape, g.dtype)
            self.k.gemm(g, x, gw, trans_a=True)
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            gb = self.be.empty((1, g.shape[1]), g.dtype)
            self.k.sum_reduce(g, gb)
            gb = self.be.reshape(gb, (g.shape[1],))
        return gx, gw, gb

    def backward_graph(self, g):
        x, w = self.inputs[0], self.inputs[1]
        gx = g @ w if self.needs_input_grad[0] else None
        gw = g.transpose(0, 1) @ x if self.needs_input_grad[1] else None
        gb = None
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            gb = g.sum(0)
        return gx, gw, gb


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    if weight.ndim != 2:
        raise ValueError(
            f"linear: weight must be 2-D (out_features, in_features), got {weight.shape}"
        )
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {x.shape} does not match weight of shape {weight.shape} "
            f"(expected last dim {weight.shape[1]})"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias shape {bias.shape} != ({weight.shape[0]},)")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
    y = Linear.apply(x2, weight, bias)
    return y.reshape(*lead, weight.shape[0]) if x.ndim != 2 else y
