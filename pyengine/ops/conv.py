"""2-D convolution and transposed convolution over csrc/conv.cpp.

The wrappers check arguments with PyTorch's rules and messages (RuntimeError for shape errors, as
torch raises), compute output sizes with torch's formulas, and pick a kernel algorithm:
``algo="direct"`` (shift-and-add over taps), ``"im2col"`` (column buffer + GEMM), ``"winograd"``
(F(4x4,3x3) minimal filtering, 3x3 / stride 1 / dilation 1 / groups 1 only; on devices without a
Winograd kernel it runs im2col) or ``"auto"``.

``"auto"`` picks per pass (forward, input gradient, weight gradient): with
``pyengine.backends.conv_benchmark`` on (the default), the first call of a pass on a new shape
times the algorithms that apply on the real operands and caches the fastest, as cudnn.benchmark
does; off, or where the algorithms are one kernel (the float64 NumPy twin, other devices), or under
``pyengine.use_deterministic_algorithms(True)`` (timings differ between processes), a heuristic.
A backward whose two passes both run Winograd is one kernel call (``Conv2d._joint_kernel``): gy
is padded once for the input and weight gradients, and the bias gradient comes with them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pyengine import backends
from pyengine.autograd import Function
from pyengine.tensor import Tensor

ALGOS = ("auto", "direct", "im2col", "winograd")
# Floats (32 MB) of Winograd weight-gradient accumulators a layer may keep (_winograd_allowed).
WINOGRAD_ACC_FLOATS = 1 << 23
Pair = tuple[int, int]


class _Conv(Function):
    """Forward and backward shared by Conv2d and ConvTranspose2d, which differ only in their
    kernel names and output channel count. Saves x (for the weight gradient) and w (for the input
    gradient) only when those gradients are needed."""

    def _out_channels(self, w: Any) -> int:
        raise NotImplementedError

    def _kernel(self, pass_: str, algo: str, *arrays: Any) -> None:
        raise NotImplementedError

    def _available(self, algo: str) -> str:
        """The algorithm to run: im2col stands in for Winograd on devices without its kernel."""
        if algo == "winograd" and not hasattr(self.k, "conv2d_winograd_forward"):
            return "im2col"
        return algo

    def forward(self, x, w, b, geo: tuple[int, ...], out_hw: Pair, algo: str):
        self.geo, self.algo, self.xshape, self.wshape = geo, algo, x.shape, w.shape
        y = self.be.empty((x.shape[0], self._out_channels(w), *out_hw), x.dtype)
        _run(self, "fwd", lambda a: self._kernel("forward", a, x, w, b, y))
        need_x, need_w, _ = self.needs_input_grad
        self.save_for_backward(x if need_w else None, w if need_x else None)
        return y

    def _joint_kernel(self) -> Callable[..., None] | None:
        """A kernel computing both gradients in one call, where the backend has one for the
        algorithm both passes run."""
        return None

    def backward(self, g):
        x, w = self.saved
        need_x, need_w, need_b = self.needs_input_grad
        gx = gw = None
        joint = self._joint_kernel() if need_x and need_w else None
        if joint is not None:
            gx, gw = self.be.empty(self.xshape, g.dtype), self.be.empty(self.wshape, g.dtype)
            gb = self.be.empty((g.shape[1],), g.dtype) if need_b else None
            joint(x, g, w, gx, gw, gb, *self.geo)
            return gx, gw, gb
        if need_x:
            gx = self.be.empty(self.xshape, g.dtype)
            _run(self, "bwd_input", lambda a: self._kernel("backward_input", a, g, w, gx))
        gb = self.be.empty((g.shape[1],), g.dtype) if need_b else None
        if need_w:
            gw = self.be.empty(self.wshape, g.dtype)
            _run(self, "bwd_weight", lambda a: self._kernel("backward_weight", a, x, g, gw, gb))
        elif need_b:
            gb = _channel_sum(self, g)
        return gx, gw, gb


class Conv2d(_Conv):
    """x (N,C,H,W), w (K,C/G,R,S), b (K,) or None -> y (N,K,P,Q)."""

    def _out_channels(self, w: Any) -> int:
        return w.shape[0]

    def _kernel(self, pass_: str, algo: str, *arrays: Any) -> None:
        getattr(self.k, f"conv2d_{self._available(algo)}_{pass_}")(*arrays, *self.geo)

    def _joint_kernel(self) -> Callable[..., None] | None:
        """Winograd's backward: gy padded once for both gradients, the bias gradient summed from
        the weight gradient's tiles (csrc/conv_winograd.cpp, backward_pass). Used once both
        passes are known to run it; a pass still to be tuned runs on its own."""
        algo = _chosen(self, "bwd_input")
        if algo is None or algo != _chosen(self, "bwd_weight"):
            return None
        return getattr(self.k, f"conv2d_{self._available(algo)}_backward", None)


class Conv2dReLU(Conv2d):
    """relu(conv2d(x, w, b)) as one node: the ReLU is the conv kernel's epilogue (applied as each
    output tile is written, no second pass on the CPU), and backward reads its mask from the saved
    output (y > 0), so no pre-activation tensor is kept."""

    def _kernel(self, pass_: str, algo: str, *arrays: Any) -> None:
        if pass_ != "forward":
            return super()._kernel(pass_, algo, *arrays)
        fn = getattr(self.k, f"conv2d_{self._available(algo)}_forward")
        if self.device.type == "cpu":
            fn(*arrays, *self.geo, relu=True)
        else:
            fn(*arrays, *self.geo)
            self.k.unary_forward("relu", arrays[-1], arrays[-1])

    def forward(self, x, w, b, geo: tuple[int, ...], out_hw: Pair, algo: str):
        self.y = super().forward(x, w, b, geo, out_hw, algo)
        return self.y

    def backward(self, g):
        gm = self.be.empty(g.shape, g.dtype)
        self.k.unary_backward("relu", self.y, g, gm)
        self.y = None
        return super().backward(gm)


class ConvTranspose2d(_Conv):
    """x (N,C_in,H,W), w (C_in,C_out/G,R,S), b (C_out,) or None -> y (N,C_out,H_out,W_out)."""

    def _out_channels(self, w: Any) -> int:
        return w.shape[1] * self.geo[-1]

    def _kernel(self, pass_: str, algo: str, *arrays: Any) -> None:
        getattr(self.k, f"conv_transpose2d_{pass_}")(*arrays, *self.geo, self._available(algo))


# (op, pass, input shape, weight shape, geometry, threads) -> fastest algorithm
_tuned: dict[tuple[Any, ...], str] = {}


def _tuning_key(ctx: Any, pass_: str) -> tuple[Any, ...] | None:
    """The key of pass_ in _tuned where "auto" is tuned, else None (the heuristic decides).
    Tuning is for the compiled CPU kernels: float64 and the NumPy twin run one reference kernel
    under both names, and CUDA launches are asynchronous (a host timer would not see them)."""
    cpu = ctx.device.type == "cpu" and ctx.k is getattr(ctx.be, "native", None)
    if not (backends.conv_benchmark_enabled() and cpu):
        return None
    from pyengine import get_num_threads

    return (type(ctx), pass_, ctx.xshape, ctx.wshape, ctx.geo, get_num_threads())


def _chosen(ctx: Any, pass_: str) -> str | None:
    """The algorithm _run runs pass_ with, known without running it; None while it is to be
    tuned."""
    if ctx.algo != "auto":
        return ctx.algo
    key = _tuning_key(ctx, pass_)
    return _heuristic(ctx, pass_) if key is None else _tuned.get(key)


def _run(ctx: Any, pass_: str, kernel: Callable[[str], None]) -> None:
    """Run one pass of a conv with ctx.algo, or for "auto" the tuned (or heuristic) choice."""
    algo = _chosen(ctx, pass_)
    if algo is not None:
        return kernel(algo)
    key = _tuning_key(ctx, pass_)
    # Three rounds, best of each candidate's runs, so that a first call's page faults and cold
    # caches (its workspace grows on first use) and a busy machine's preemptions do not decide;
    # a candidate over 3x the best so far drops out after a round. The winner runs last,
    # leaving its result in the output.
    best = {a: float("inf") for a in _candidates(ctx, pass_)}
    last = None
    for _ in range(3):
        for last in [a for a in best if best[a] < 3 * min(best.values())] or list(best):
            t0 = time.perf_counter()
            kernel(last)
            best[last] = min(best[last], time.perf_counter() - t0)
    algo = _tuned[key] = min(best, key=best.__getitem__)
    if algo != last:
        kernel(algo)


def _channel_sum(ctx: Any, g: Any) -> Any:
    out = ctx.be.empty((1, g.shape[1], 1, 1), g.dtype)
    ctx.k.sum_reduce(g, out)
    return ctx.be.reshape(out, (g.shape[1],))


# ---------------------------------------------------------------- argument checks
def _pair(v: Any, name: str) -> Pair:
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            v = (v[0], v[0])
        if len(v) == 2 and all(
            isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in v
        ):
            return int(v[0]), int(v[1])
        raise RuntimeError(
            f"expected {name} to be a single integer value or a list of 2 values to match the "
            f"convolution dimensions, but got {name}={list(v)}"
        )
    raise TypeError(f"{name} must be an int or a pair of ints, got {type(v).__name__}")


def _check_common(
    fn: str, x: Tensor, w: Tensor, stride: Pair, padding: Pair, dilation: Pair, groups: Any
) -> int:
    if not isinstance(x, Tensor) or not isinstance(w, Tensor):
        raise TypeError(f"{fn}: input and weight must be Tensors")
    if x.dtype.kind != "f" or w.dtype.kind != "f":
        raise TypeError(f"{fn}: expected floating point input and weight, got {x.dtype}, {w.dtype}")
    if x.ndim != 4:
        raise RuntimeError(
            f"Expected 3D (unbatched) or 4D (batched) input to {fn}, but got input of size: "
            f"{list(x.shape)}"
        )
    if w.ndim != 4:
        raise RuntimeError(f"{fn}: expected a 4-D weight, got weight of size {list(w.shape)}")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool):
        raise TypeError(f"{fn}: groups must be an int, got {groups!r}")
    if min(stride) <= 0:
        raise RuntimeError("non-positive stride is not supported")
    if min(padding) < 0:
        raise RuntimeError("negative padding is not supported")
    if min(dilation) <= 0:
        raise RuntimeError("dilation should be greater than zero")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    if w.shape[0] % groups:
        raise RuntimeError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
            f"but got weight of size {list(w.shape)} instead"
        )
    return int(groups)


def _check_int64(fn: str, sizes: tuple[int, int], pd: Any, dl: Any, st: Any, k: Any) -> None:
    """The kernels' index arithmetic (csrc/check.h) needs in + 2*pad + dilation*(k-1) + stride in
    int64; beyond it they raise too, this says so before any work."""
    for n, p, d, s, kk in zip(sizes, pd, dl, st, k, strict=True):
        if n + 2 * p + d * (kk - 1) + s >= 2**63:
            raise ValueError(
                f"{fn}: padding {tuple(pd)}, dilation {tuple(dl)} and stride {tuple(st)} overflow "
                f"int64 for spatial size {tuple(sizes)} and kernel {tuple(k)}"
            )


def _check_bias(b: Tensor | None, w: Tensor, out_channels: int) -> None:
    if b is not None and not isinstance(b, Tensor):
        raise TypeError(f"bias must be a Tensor or None, got {type(b).__name__}")
    if b is not None and (b.ndim != 1 or b.shape[0] != out_channels):
        raise RuntimeError(
            f"Given weight of size {list(w.shape)}, expected bias to be 1-dimensional with "
            f"{out_channels} elements, but got bias of size {list(b.shape)} instead"
        )


def _check_algo(algo: str) -> None:
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")


def _winograd_applies(ctx: Any) -> bool:
    """3x3 kernel, stride 1, dilation 1, groups 1 (geo = stride, padding, dilation, groups)."""
    sh, sw, _, _, dh, dw, g = ctx.geo
    return tuple(ctx.wshape[2:]) == (3, 3) and (sh, sw, dh, dw, g) == (1, 1, 1, 1, 1)


def _winograd_allowed(ctx: Any, pass_: str) -> bool:
    """Winograd applies and is allowed. Its weight gradient keeps one (6*6, K, C) float
    accumulator per thread, which stays allocated (grow-only workspace): it is left out where
    the threads' accumulators pass both the layer's input and 32 MB (the U-Net's 8x8 512->512
    bottleneck: 75 MB). Below that its speed is worth the memory: on the U-Net's 32x32 and 16x16
    layers it computes the weight gradient in 44-72 % of im2col's time (`benchmarks/README.md`)."""
    from pyengine import get_num_threads

    ok = backends.allow_winograd and _winograd_applies(ctx)
    if ok and pass_ == "bwd_weight":
        acc = 36 * ctx.wshape[0] * ctx.wshape[1] * get_num_threads()
        ok = acc <= max(int(np.prod(ctx.xshape)), WINOGRAD_ACC_FLOATS)
    return ok


def _candidates(ctx: Any, pass_: str = "fwd") -> list[str]:
    """Algorithms the tuner times."""
    ok = _winograd_allowed(ctx, pass_)
    return [a for a in ALGOS[1:] if a != "winograd" or ok]


def _heuristic(ctx: Any, pass_: str) -> str:
    """The GEMM of a pass has the pass's output channels as its M; with a handful of them (a
    1-channel output or input layer, depthwise) the micro-kernel's rows go mostly unused and
    shift-and-add over the taps wins. A transposed conv's forward is a conv's input gradient.
    A 3x3 conv with at least 16 channels on both sides runs Winograd, faster than im2col in
    every pass on the DnCNN and U-Net layers (`python -m benchmarks.winograd_tiles`); with
    fewer, its per-tile transforms outweigh the small GEMMs (the 1->64 first layer: 15x slower)."""
    kg, cg = ctx.wshape[0] // ctx.geo[-1], ctx.wshape[1]
    if isinstance(ctx, Conv2d) and min(kg, cg) >= 16 and _winograd_allowed(ctx, pass_):
        return "winograd"
    if isinstance(ctx, ConvTranspose2d):
        pass_ = {"fwd": "bwd_input", "bwd_input": "fwd"}.get(pass_, pass_)
    return "direct" if (cg if pass_ == "bwd_input" else kg) <= 4 else "im2col"


def _batched(fn: Any, x: Tensor, *args: Any, **kw: Any) -> Tensor:
    if isinstance(x, Tensor) and x.ndim == 3:
        return fn(x.unsqueeze(0), *args, **kw).squeeze(0)
    return fn(x, *args, **kw)


# ---------------------------------------------------------------- public wrappers
def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    algo: str = "auto",
) -> Tensor:
    """torch.nn.functional.conv2d; ``padding`` may be an int, a pair, "valid" or "same"."""
    return _batched(_conv2d, input, weight, bias, stride, padding, dilation, groups, algo)


def conv2d_relu(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    algo: str = "auto",
) -> Tensor:
    """``relu(conv2d(...))`` in one pass and one autograd node (see Conv2dReLU)."""
    return _batched(_conv2d, input, weight, bias, stride, padding, dilation, groups, algo, True)


def _conv2d(x, w, b, stride, padding, dilation, groups, algo, relu=False) -> Tensor:
    _check_algo(algo)
    st, dl = _pair(stride, "stride"), _pair(dilation, "dilation")
    same = False
    if isinstance(padding, str):
        if padding == "valid":
            pd = (0, 0)
        elif padding == "same":
            if st != (1, 1):
                raise RuntimeError("padding='same' is not supported for strided convolutions")
            same = True
            pd = (0, 0)
        else:
            raise RuntimeError(f"Invalid padding string: '{padding}'")
    else:
        pd = _pair(padding, "padding")
    groups = _check_common("conv2d", x, w, st, pd, dl, groups)
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    if C != Cg * groups:
        raise RuntimeError(
            f"Given groups={groups}, weight of size {list(w.shape)}, expected input"
            f"{list(x.shape)} to have {Cg * groups} channels, but got {C} channels instead"
        )
    _check_bias(b, w, K)
    if same:
        # Total padding d*(k-1); an odd total puts the extra zero at the bottom/right, as torch
        # does. The kernels take the top/left pad and read the extra row/column as zero.
        pd = (dl[0] * (R - 1) // 2, dl[1] * (S - 1) // 2)
        _check_int64("conv2d", (H, W), pd, dl, st, (R, S))
        out_hw = (H, W)
    else:
        _check_int64("conv2d", (H, W), pd, dl, st, (R, S))
        ek = (dl[0] * (R - 1) + 1, dl[1] * (S - 1) + 1)
        ph, pw = H + 2 * pd[0], W + 2 * pd[1]
        if ph < ek[0] or pw < ek[1]:
            raise RuntimeError(
                f"Calculated padded input size per channel: ({ph} x {pw}). Kernel size: "
                f"({ek[0]} x {ek[1]}). Kernel size can't be greater than actual input size"
            )
        out_hw = ((ph - ek[0]) // st[0] + 1, (pw - ek[1]) // st[1] + 1)
    geo = (*st, *pd, *dl, groups)
    return (Conv2dReLU if relu else Conv2d).apply(x, w, b, geo=geo, out_hw=out_hw, algo=algo)


def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
    algo: str = "auto",
) -> Tensor:
    """torch.nn.functional.conv_transpose2d; weight (C_in, C_out/groups, kH, kW)."""
    return _batched(
        _conv_transpose2d,
        input,
        weight,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
        algo,
    )


def _conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation, algo):
    _check_algo(algo)
    st, pd = _pair(stride, "stride"), _pair(padding, "padding")
    op, dl = _pair(output_padding, "output_padding"), _pair(dilation, "dilation")
    groups = _check_common("conv_transpose2d", x, w, st, pd, dl, groups)
    N, C, H, W = x.shape
    Cin, Cg, R, S = w.shape
    if C != Cin:
        raise RuntimeError(
            f"Given transposed=1, weight of size {list(w.shape)}, expected input{list(x.shape)} "
            f"to have {Cin} channels, but got {C} channels instead"
        )
    _check_bias(b, w, Cg * groups)
    if min(op) < 0:
        raise RuntimeError("negative output_padding is not supported")
    if (op[0] >= st[0] and op[0] >= dl[0]) or (op[1] >= st[1] and op[1] >= dl[1]):
        raise RuntimeError(
            f"output padding must be smaller than either stride or dilation, but got "
            f"output_padding_height: {op[0]} output_padding_width: {op[1]} stride_height: "
            f"{st[0]} stride_width: {st[1]} dilation_height: {dl[0]} dilation_width: {dl[1]}"
        )
    _check_int64("conv_transpose2d", (H * st[0], W * st[1]), pd, dl, st, (R, S))
    out_hw = (
        (H - 1) * st[0] - 2 * pd[0] + dl[0] * (R - 1) + op[0] + 1,
        (W - 1) * st[1] - 2 * pd[1] + dl[1] * (S - 1) + op[1] + 1,
    )
    if min(out_hw) <= 0:
        raise RuntimeError(
            f"Given input size per channel: ({H} x {W}). Calculated output size per channel: "
            f"({out_hw[0]} x {out_hw[1]}). Output size is too small"
        )
    geo = (*st, *pd, *dl, groups)
    return ConvTranspose2d.apply(x, w, b, geo=geo, out_hw=out_hw, algo=algo)
