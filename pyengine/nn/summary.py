"""``summary(model, input_shape)``: a torchinfo-like table of the leaf modules of a model.

One forward pass runs under ``no_grad`` in eval mode (so batch-norm statistics are not touched;
every module's training flag is restored afterwards) on a standard-normal input of
``input_shape`` (batch dimension included). Each leaf module's ``forward`` is wrapped for the
pass to record its output, and restored afterwards even when the forward raises.

FLOP convention (forward pass, whole batch):

- Conv2d, ConvTranspose2d, Linear: 2 x multiply-adds (bias additions not counted);
  ConvTranspose2d counts one multiply-add per (input pixel, kernel tap, output channel).
- BatchNorm: 2 per output element (one scale, one shift in eval mode).
- MaxPool2d / AvgPool2d: kh * kw per output element (comparisons or additions).
- AdaptiveAvgPool2d: one addition per input element of each output's window (PyTorch's windows
  [floor(i * in / out), ceil((i + 1) * in / out)), which overlap when out does not divide in).
- Identity, Flatten, Dropout: 0; every other leaf (activations, Upsample, ...): 1 per output
  element.

Receptive field (rows are (height, width), in input pixels), the lecture's arithmetic, starting
from r = 1, j = 1 at the input, with k_eff = dilation * (k - 1) + 1:

- Conv2d / pooling: r_out = r_in + (k_eff - 1) * j_in, j_out = j_in * stride.
- ConvTranspose2d: the jump divides, j_out = j_in / stride, and r_out = r_in + (k_eff - 1) * j_out
  (a stride-1/s convolution on the output grid). Upsample: j_out = j_in / scale_factor, r unchanged
  for 'nearest', r_in + j_in for the linear modes (two neighbours per axis) and r_in + 3 j_in
  for 'bicubic'.
- AdaptiveAvgPool2d: a pool with the widest window as k and stride in / out; a global pool
  (1 x 1 output) sees the whole input.
- Linear and global pooling: the output sees the whole input (shown as "all"); element-wise
  layers keep r and j.

A leaf's input is looked up among the outputs recorded so far; a tensor made outside any leaf
(a skip-connection ``cat`` or ``+``) inherits the most recent leaf output's field, so branching
models (U-Net) follow the path that executed last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from pyengine.autograd import no_grad
from pyengine.nn.module import Module
from pyengine.tensor import Tensor

RF = Any  # tuple[Fraction, Fraction] (height, width), or None for "whole input"


@dataclass
class SummaryRow:
    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    flops: int
    receptive_field: tuple[int | Fraction, int | Fraction] | None
    jump: tuple[int | Fraction, int | Fraction] | None


@dataclass
class SummaryResult:
    rows: list[SummaryRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    total_flops: int = 0
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()

    @property
    def receptive_field(self) -> Any:
        """The field of the last leaf's output."""
        return self.rows[-1].receptive_field if self.rows else (1, 1)

    def __str__(self) -> str:
        head = ("Layer", "Type", "Output shape", "Params", "FLOPs", "RF", "Jump")
        body = [
            (
                r.name,
                r.type,
                str(list(r.output_shape)),
                f"{r.params:,}",
                f"{r.flops:,}",
                _fmt_pair(r.receptive_field),
                _fmt_pair(r.jump),
            )
            for r in self.rows
        ]
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
        right = {3, 4, 5, 6}

        def line(cells: tuple[str, ...]) -> str:
            return "  ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()

        rule = "-" * len(line(head))
        out = [rule, line(head), rule, *(line(b) for b in body), rule]
        out.append(
            f"Input shape: {list(self.input_shape)}   Output shape: {list(self.output_shape)}"
        )
        out.append(f"Total params: {self.total_params:,}   Trainable: {self.trainable_params:,}")
        out.append(f"Total FLOPs: {self.total_flops:,} ({self.total_flops / 1e9:.3f} GFLOP)")
        out.append(f"Receptive field: {_fmt_pair(self.receptive_field)}")
        return "\n".join(out)


def _fmt(v: Any) -> str:
    return str(v) if Fraction(v).denominator == 1 else f"{float(v):.3g}"


def _fmt_pair(p: Any) -> str:
    if p is None:
        return "all"
    return _fmt(p[0]) if p[0] == p[1] else f"{_fmt(p[0])}x{_fmt(p[1])}"


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


def _tidy(p: tuple[Fraction, Fraction]) -> tuple[int | Fraction, int | Fraction]:
    return tuple(int(v) if v.denominator == 1 else v for v in p)  # type: ignore[return-value]


def _shape(out: Any) -> tuple[int, ...]:
    if isinstance(out, Tensor):
        return tuple(out.shape)
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return tuple(out[0].shape)
    return ()


def _numel(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape)) if shape else 0


def _layer_kind(m: Module) -> str:
    name = type(m).__name__
    if name.startswith("ConvTranspose"):
        return "convT"
    if name.startswith("Conv"):
        return "conv"
    if name.startswith("Adaptive") and hasattr(m, "output_size"):
        return "adaptive"
    if "Pool" in name and hasattr(m, "kernel_size"):
        return "pool"
    if name == "Upsample" or hasattr(m, "scale_factor"):
        return "upsample"
    if name == "Linear":
        return "linear"
    if name.startswith("BatchNorm"):
        return "bn"
    if name in ("Identity", "Flatten", "Dropout", "Dropout2d"):
        return "free"
    return "elementwise"


def _windows(n_in: int, n_out: int) -> list[int]:
    """Window sizes of an adaptive pool along one axis (PyTorch's start/end indices)."""
    return [-(-(i + 1) * n_in // n_out) - (i * n_in // n_out) for i in range(n_out)]


def _flops(m: Module, kind: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    n_out = _numel(out_shape)
    if kind == "conv":
        kh, kw = _pair(m.kernel_size)
        cin_per_group = in_shape[1] // int(getattr(m, "groups", 1))
        return 2 * n_out * cin_per_group * kh * kw
    if kind == "convT":
        kh, kw = _pair(m.kernel_size)
        cout_per_group = out_shape[1] // int(getattr(m, "groups", 1))
        return 2 * _numel(in_shape) * cout_per_group * kh * kw
    if kind == "linear":
        return 2 * n_out * int(m.in_features)
    if kind == "bn":
        return 2 * n_out
    if kind == "pool":
        kh, kw = _pair(m.kernel_size)
        return kh * kw * n_out
    if kind == "adaptive":
        if len(in_shape) < 2 or len(out_shape) < 2:
            return n_out
        taps = sum(_windows(in_shape[-2], out_shape[-2])) * sum(
            _windows(in_shape[-1], out_shape[-1])
        )
        return _numel(out_shape[:-2]) * taps
    if kind == "free":
        return 0
    return n_out


def _receptive(
    m: Module, kind: str, rf: RF, jump: RF, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> tuple[RF, RF]:
    if rf is None or kind == "linear":
        return None, None
    if kind in ("conv", "convT", "pool"):
        k = _pair(m.kernel_size)
        s = _pair(m.stride if m.stride is not None else m.kernel_size)
        d = _pair(getattr(m, "dilation", 1))
        keff = [d[a] * (k[a] - 1) + 1 for a in range(2)]
        if kind == "convT":
            j = tuple(jump[a] / s[a] for a in range(2))
            return tuple(rf[a] + (keff[a] - 1) * j[a] for a in range(2)), j
        return (
            tuple(rf[a] + (keff[a] - 1) * jump[a] for a in range(2)),
            tuple(jump[a] * s[a] for a in range(2)),
        )
    if kind == "adaptive":
        if len(in_shape) < 2 or len(out_shape) < 2 or out_shape[-2:] == (1, 1):
            return None, None
        sizes = list(zip(in_shape[-2:], out_shape[-2:]))
        k = [max(_windows(i, o)) for i, o in sizes]
        return (
            tuple(rf[a] + (k[a] - 1) * jump[a] for a in range(2)),
            tuple(jump[a] * Fraction(*sizes[a]) for a in range(2)),
        )
    if kind == "upsample":
        f = m.scale_factor
        if f is None:  # Upsample(size=...): the factor is the ratio of the spatial sizes
            f = tuple(Fraction(o, i) for o, i in zip(out_shape[-2:], in_shape[-2:]))
        elif not isinstance(f, (tuple, list)):
            f = (f, f)
        j = tuple(jump[a] / Fraction(f[-2 + a]) for a in range(2))
        taps = {"nearest": 1, "bicubic": 4}.get(getattr(m, "mode", "nearest"), 2)
        return tuple(rf[a] + (taps - 1) * jump[a] for a in range(2)), j
    return rf, jump


def summary(
    model: Module,
    input_shape: tuple[int, ...],
    device: str = "cpu",
    dtype: Any = np.float32,
    verbose: bool = True,
) -> SummaryResult:
    """Run ``model`` once on an input of ``input_shape`` (batch included), print a table of its
    leaf modules in execution order and return it as a ``SummaryResult``."""
    input_shape = tuple(int(s) for s in input_shape)
    names = {id(m): n for n, m in model.named_modules()}
    leaves = list({id(m): m for m in model.modules() if next(m.children(), None) is None}.values())
    result = SummaryResult(input_shape=input_shape)
    one = (Fraction(1), Fraction(1))
    # id(tensor) -> (tensor, rf, jump); the tensor is kept so that its id is not reused.
    fields: dict[int, tuple[Tensor, RF, RF]] = {}
    last: list[tuple[RF, RF]] = [(one, one)]

    def wrap(m: Module, fwd: Any) -> Any:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            out = fwd(*args, **kwargs)
            x = args[0] if args else None
            if isinstance(x, Tensor) and id(x) in fields:
                rf, jump = fields[id(x)][1:]
            else:
                rf, jump = last[0]
            kind = _layer_kind(m)
            in_shape = tuple(x.shape) if isinstance(x, Tensor) else ()
            out_shape = _shape(out)
            rf, jump = _receptive(m, kind, rf, jump, in_shape, out_shape)
            if isinstance(out, Tensor):
                fields[id(out)] = (out, rf, jump)
            last[0] = (rf, jump)
            result.rows.append(
                SummaryRow(
                    name=names.get(id(m), "") or type(m).__name__,
                    type=type(m).__name__,
                    output_shape=out_shape,
                    params=sum(p.numel() for p in m.parameters(recurse=False)),
                    flops=_flops(m, kind, in_shape, out_shape),
                    receptive_field=None if rf is None else _tidy(rf),
                    jump=None if jump is None else _tidy(jump),
                )
            )
            return out

        return recorded

    modes = {id(m): m.training for m in model.modules()}
    patched: list[tuple[Module, bool, Any]] = []
    try:
        for m in leaves:
            had = "forward" in m.__dict__
            prev = m.__dict__.get("forward")
            object.__setattr__(m, "forward", wrap(m, m.forward))
            patched.append((m, had, prev))
        model.eval()
        x = np.random.default_rng(0).standard_normal(input_shape).astype(dtype)
        with no_grad():
            out = model(Tensor(x).to(device))
    finally:
        for m, had, prev in patched:
            if had:
                object.__setattr__(m, "forward", prev)
            else:
                del m.__dict__["forward"]
        for m in model.modules():
            object.__setattr__(m, "training", modes[id(m)])
    result.output_shape = _shape(out)
    params = list(model.parameters())
    result.total_params = sum(p.numel() for p in params)
    result.trainable_params = sum(p.numel() for p in params if p.requires_grad)
    result.total_flops = sum(r.flops for r in result.rows)
    if verbose:
        print(result)
    return result
