"""Whole training steps: DnCNN-17 and a U-Net, pyengine vs the identical PyTorch model.

A step is forward, MSE loss, backward and an Adam update. Both engines start from the same
weights; the first step's losses are checked to agree before anything is timed, then the two are
timed interleaved (A/B/A/B..., median of each) so that load on a shared machine hits both alike.
Peak memory (VmHWM) of a few steps is measured in a fresh subprocess per engine.

``python -m benchmarks.bench_models [--quick] [--profile]``; ``--profile`` prints time per op
(forward and backward of every Function class) for one DnCNN step.
"""

from __future__ import annotations

import os
import sys

# Run as a script: idle OpenMP workers of torch and pyengine must not spin on each other's cores
# (see benchmarks/__main__.py); the runtimes read this when loaded, so set it before importing.
if __name__ == "__main__" and "OMP_WAIT_POLICY" not in os.environ:
    os.execve(
        sys.executable,
        [sys.executable, "-m", "benchmarks.bench_models", *sys.argv[1:]],
        {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )

import argparse
import json
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

import pyengine as pe
from benchmarks.harness import row, torch
from pyengine import nn

# ---------------------------------------------------------------- models (built for either engine)


def dncnn(m: Any, depth: int = 17, ch: int = 64) -> Any:
    """conv+ReLU, (depth-2) x (conv without bias + BN + ReLU), conv; 1 -> ch -> 1 channels."""
    layers = [m.Conv2d(1, ch, 3, padding=1), m.ReLU()]
    for _ in range(depth - 2):
        layers += [m.Conv2d(ch, ch, 3, padding=1, bias=False), m.BatchNorm2d(ch), m.ReLU()]
    layers.append(m.Conv2d(ch, 1, 3, padding=1))
    return m.Sequential(*layers)


def unet(m: Any, cat: Callable, depth: int = 4, base: int = 32) -> Any:
    """Depth-``depth`` U-Net: per level (conv-BN-ReLU) x 2, max-pool down, ConvTranspose2d k2 s2
    up, skips concatenated on channels; 1 -> 1 channels."""

    def block(cin: int, cout: int) -> Any:
        return m.Sequential(
            m.Conv2d(cin, cout, 3, padding=1, bias=False),
            m.BatchNorm2d(cout),
            m.ReLU(),
            m.Conv2d(cout, cout, 3, padding=1, bias=False),
            m.BatchNorm2d(cout),
            m.ReLU(),
        )

    class UNet(m.Module):
        def __init__(self) -> None:
            super().__init__()
            chs = [base * 2**i for i in range(depth + 1)]
            self.downs = m.ModuleList(
                [block(1 if i == 0 else chs[i - 1], chs[i]) for i in range(depth)]
            )
            self.pool = m.MaxPool2d(2)
            self.mid = block(chs[depth - 1], chs[depth])
            self.ups = m.ModuleList(
                [m.ConvTranspose2d(chs[i + 1], chs[i], 2, stride=2) for i in reversed(range(depth))]
            )
            self.decs = m.ModuleList([block(2 * chs[i], chs[i]) for i in reversed(range(depth))])
            self.out = m.Conv2d(chs[0], 1, 1)

        def forward(self, x: Any) -> Any:
            skips = []
            for d in self.downs:
                x = d(x)
                skips.append(x)
                x = self.pool(x)
            x = self.mid(x)
            for up, dec, s in zip(self.ups, self.decs, reversed(skips)):
                x = dec(cat([up(x), s], 1))
            return self.out(x)

    return UNet()


MODELS = {
    # name: (builder(engine module namespace), input shape)
    "dncnn": (lambda m, cat: dncnn(m), (16, 1, 40, 40)),
    "unet": (lambda m, cat: unet(m, cat), (4, 1, 128, 128)),
}
QUICK = {"dncnn": (4, 1, 40, 40), "unet": (1, 1, 64, 64)}


def _copy_weights(src: Any, dst: Any) -> None:
    """torch module -> pyengine module with the same structure (parameters and BN buffers)."""
    tsd = src.state_dict()
    pe_sd = {k: pe.from_numpy(v.detach().numpy().copy()) for k, v in tsd.items()}
    dst.load_state_dict({k: v for k, v in pe_sd.items() if k in dst.state_dict()})


class Step:
    """One engine's model, optimizer, data and a ``__call__`` running one training step."""

    def __init__(self, engine: str, model: str, shape: tuple[int, ...], seed: int = 0) -> None:
        build, _ = MODELS[model]
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(shape, dtype=np.float32)
        y = rng.standard_normal(shape, dtype=np.float32)
        if torch is not None:
            torch.manual_seed(seed)
        self.engine = engine
        if engine == "torch":
            self.net = build(torch.nn, torch.cat)
            self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)
            self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-4)
            self.loss_fn = torch.nn.functional.mse_loss
        else:
            self.net = build(nn, pe.cat)
            if torch is not None:
                _copy_weights(build(torch.nn, torch.cat), self.net)
            self.x, self.y = pe.from_numpy(x), pe.from_numpy(y)
            self.opt = pe.optim.Adam(self.net.parameters(), lr=1e-4)
            self.loss_fn = nn.functional.mse_loss
        self.net.train()

    def __call__(self) -> float:
        self.opt.zero_grad()
        loss = self.loss_fn(self.net(self.x), self.y)
        loss.backward()
        self.opt.step()
        return float(loss.item())


def interleaved(fns: list[Callable[[], Any]], repeats: int, warmup: int = 1) -> list[float]:
    """Median ms of each fn, timed round-robin so that background load hits all alike."""
    for f in fns:
        for _ in range(warmup):
            f()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for f, ts in zip(fns, times):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
    return [float(np.median(ts)) * 1e3 for ts in times]


def peak_rss_mb(
    engine: str, model: str, shape: tuple[int, ...], steps: int = 3
) -> tuple[float, float]:
    """(peak RSS, its growth over the process's peak after imports) in MB of a fresh process that
    builds the model and runs a few steps; the growth leaves out the engines' libraries.

    The peak is VmHWM from /proc (Linux), not ru_maxrss: a child's ru_maxrss starts from the
    forking parent's peak, which exec does not reset."""
    # The pyengine process must not even import torch (its libraries alone take ~300 MB).
    block = "sys.modules['torch'] = None; " if engine == "pyengine" else ""
    code = (
        "import sys; "
        f"{block}from benchmarks.bench_models import Step, _hwm_kb; "
        "base = _hwm_kb(); "
        f"s = Step({engine!r}, {model!r}, {tuple(shape)!r}); "
        f"[s() for _ in range({steps})]; "
        "print(base, _hwm_kb())"
    )
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    base, peak = (int(v) / 1024.0 for v in out.stdout.split()[-2:])
    return peak, peak - base


def _hwm_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def _flops(step: Step) -> float:
    """~3x the forward's conv multiply-adds x 2 (fwd + two backward GEMMs), for a rough rate."""
    total = 0.0
    hooks = []

    def hook(mod: Any, inp: Any, out: Any) -> None:
        nonlocal total
        w = mod.weight
        total += (
            2.0 * out.numel() * w[0].numel()
            if not isinstance(mod, torch.nn.ConvTranspose2d)
            else 2.0 * inp[0].numel() * w[0].numel()
        )

    for mod in step.net.modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            hooks.append(mod.register_forward_hook(hook))
    with torch.no_grad():
        step.net(step.x)
    for h in hooks:
        h.remove()
    return 3.0 * total


def run(quick: bool) -> list[dict[str, Any]]:
    if torch is None:
        return []
    torch.set_num_threads(pe.get_num_threads())
    rows = []
    for name, (_, full_shape) in MODELS.items():
        shape = QUICK[name] if quick else full_shape
        a, b = Step("pyengine", name, shape), Step("torch", name, shape)
        la, lb = a(), b()
        if not abs(la - lb) <= 1e-3 * max(1.0, abs(lb)):
            raise AssertionError(f"{name}: first-step loss {la} != torch {lb}; not timing it")
        ms, tms = interleaved([a, b], repeats=3 if quick else 10)
        label = "x".join(map(str, shape))
        rows.append(row(f"{name} train step", label, ms, flops=_flops(b), torch_ms=tms))
        if not quick:
            (pk, grow), (tpk, tgrow) = (peak_rss_mb(e, name, shape) for e in ("pyengine", "torch"))
            print(
                f"{name}: step {ms:.1f} ms vs torch {tms:.1f} ms ({ms / tms:.2f}x); peak RSS "
                f"{pk:.0f} MB vs torch {tpk:.0f} MB (growth over imports {grow:.0f} vs {tgrow:.0f})"
            )
            rows[-1].update(
                peak_rss_mb=pk, torch_peak_rss_mb=tpk, rss_growth_mb=grow, torch_rss_growth_mb=tgrow
            )
    return rows


# ---------------------------------------------------------------- per-op profile


def profile(model: str, shape: tuple[int, ...], steps: int = 3) -> dict[str, list[float]]:
    """Seconds per (Function class, forward/backward) over ``steps`` steps, by wrapping every
    Function subclass's forward and backward with a timer."""
    from pyengine.autograd import Function

    acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    classes: list[type] = []
    todo = list(Function.__subclasses__())
    while todo:
        c = todo.pop()
        classes.append(c)
        todo += c.__subclasses__()
    orig = {}

    def timed(fn: Callable, key: str, slot: int) -> Callable:
        def wrapper(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            out = fn(*args, **kw)
            acc[key][slot] += time.perf_counter() - t0
            return out

        return wrapper

    s = Step("pyengine", model, shape)
    s()
    for c in classes:
        for slot, meth in enumerate(("forward", "backward")):
            if meth in c.__dict__:
                orig[(c, meth)] = c.__dict__[meth]
                setattr(c, meth, timed(c.__dict__[meth], c.__name__, slot))
    try:
        t0 = time.perf_counter()
        for _ in range(steps):
            s()
        total = time.perf_counter() - t0
    finally:
        for (c, meth), f in orig.items():
            setattr(c, meth, f)
    acc["(step total)"] = [total, 0.0]
    return {k: [v[0] / steps, v[1] / steps] for k, v in acc.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--profile", action="store_true", help="time per op of a DnCNN step")
    ap.add_argument("--model", default="dncnn", choices=sorted(MODELS))
    args = ap.parse_args()
    if args.profile:
        shape = QUICK[args.model] if args.quick else MODELS[args.model][1]
        prof = profile(args.model, shape)
        total = prof.pop("(step total)")[0]
        kernels = sum(f + b for f, b in prof.values())
        print(
            f"{args.model} {shape}: step {total * 1e3:.1f} ms, in Function forward/backward "
            f"{kernels * 1e3:.1f} ms, elsewhere (Python, autograd, optimizer) "
            f"{(total - kernels) * 1e3:.1f} ms"
        )
        print(f"{'op':<24} {'fwd ms':>8} {'bwd ms':>8} {'% step':>7}")
        for k, (f, b) in sorted(prof.items(), key=lambda kv: -sum(kv[1])):
            print(f"{k:<24} {f * 1e3:8.2f} {b * 1e3:8.2f} {100 * (f + b) / total:7.1f}")
        return
    for r in run(args.quick):
        print(json.dumps(r))


if __name__ == "__main__":
    main()
