"""Optimisers (SGD, Adam, AdamW, RMSprop) with fused per-parameter update kernels
(csrc/optim.cpp)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pyengine.autograd import bump_version
from pyengine.backend import backend
from pyengine.tensor import Tensor


class Optimizer:
    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = []
        for g in groups:
            group = {**defaults, **g, "params": list(g["params"])}
            for p in group["params"]:
                if not isinstance(p, Tensor) or not p.requires_grad:
                    raise ValueError("optimizer can only optimize tensors that require grad")
            self.param_groups.append(group)
        self.state: dict[int, dict[str, Any]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    def _params_with_grad(self) -> Iterable[tuple[dict[str, Any], Tensor, dict[str, Any]]]:
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    # The step rewrites p in place: a graph that saved p must refuse backward.
                    bump_version(p._data, f"{type(self).__name__}.step")
                    yield g, p, self.state.setdefault(id(p), {})

    def state_dict(self) -> dict[str, Any]:
        index = {id(p): i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        state = {
            index[pid]: {k: (v.detach() if isinstance(v, Tensor) else v) for k, v in s.items()}
            for pid, s in self.state.items()
            if pid in index
        }
        groups = [
            {
                **{k: v for k, v in g.items() if k != "params"},
                "params": [index[id(p)] for p in g["params"]],
            }
            for g in self.param_groups
        ]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        params = [p for g in self.param_groups for p in g["params"]]
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError("loaded optimizer state has a different number of parameter groups")
        for g, sg in zip(self.param_groups, groups):
            if len(sg["params"]) != len(g["params"]):
                raise ValueError("loaded optimizer state has a different number of parameters")
            g.update({k: v for k, v in sg.items() if k != "params"})
        self.state = {}
        for i, s in state_dict["state"].items():
            p = params[int(i)]
            self.state[id(p)] = {
                k: (v.clone().to(p.device) if isinstance(v, Tensor) else v) for k, v in s.items()
            }
            for k, v in self.state[id(p)].items():
                if isinstance(v, Tensor) and v.shape != p.shape:
                    raise ValueError(f"optimizer state '{k}' has shape {v.shape}, param {p.shape}")


def _zeros_like(p: Tensor) -> Tensor:
    return Tensor._wrap(backend(p.device).full(p.shape, 0.0, p.dtype), p.device)


class SGD(Optimizer):
    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(
                f"invalid SGD settings lr={lr}, momentum={momentum}, wd={weight_decay}"
            )
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
            ),
        )

    def step(self) -> None:
        for g, p, st in self._params_with_grad():
            first = "momentum_buffer" not in st
            if g["momentum"] and first:
                st["momentum_buffer"] = _zeros_like(p)
            buf = st.get("momentum_buffer", p)
            k = backend(p.device).kernels(p.dtype)
            k.sgd_step(
                p._data,
                p.grad._data,
                buf._data,
                g["lr"],
                g["momentum"],
                g["dampening"],
                g["weight_decay"],
                g["nesterov"],
                first,
            )


class Adam(Optimizer):
    _kernel = "adam_step"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid Adam settings lr={lr}, betas={betas}, eps={eps}")
        super().__init__(
            params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        )

    def step(self) -> None:
        for g, p, st in self._params_with_grad():
            if "step" not in st:
                st["step"] = 0
                st["exp_avg"] = _zeros_like(p)
                st["exp_avg_sq"] = _zeros_like(p)
            st["step"] += 1
            b1, b2 = g["betas"]
            k = backend(p.device).kernels(p.dtype)
            getattr(k, self._kernel)(
                p._data,
                p.grad._data,
                st["exp_avg"]._data,
                st["exp_avg_sq"]._data,
                g["lr"],
                b1,
                b2,
                g["eps"],
                g["weight_decay"],
                st["step"],
            )


class AdamW(Adam):
    """Adam with decoupled weight decay: p *= 1 - lr * weight_decay before the Adam update."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        if amsgrad:
            raise NotImplementedError("AdamW(amsgrad=True) is not supported")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, lr, betas, eps, weight_decay)

    _kernel = "adamw_step"


class RMSprop(Optimizer):
    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        for name, v in (
            ("learning rate", lr),
            ("epsilon value", eps),
            ("momentum value", momentum),
            ("weight_decay value", weight_decay),
            ("alpha value", alpha),
        ):
            if v < 0:
                raise ValueError(f"Invalid {name}: {v}")
        super().__init__(
            params,
            dict(
                lr=lr,
                alpha=alpha,
                eps=eps,
                weight_decay=weight_decay,
                momentum=momentum,
                centered=centered,
            ),
        )

    def step(self) -> None:
        for g, p, st in self._params_with_grad():
            if "step" not in st:
                st["step"] = 0
                st["square_avg"] = _zeros_like(p)
            # Created on first use, also when a scheduler turns momentum on later.
            if g["momentum"] > 0 and "momentum_buffer" not in st:
                st["momentum_buffer"] = _zeros_like(p)
            if g["centered"] and "grad_avg" not in st:
                st["grad_avg"] = _zeros_like(p)
            st["step"] += 1
            k = backend(p.device).kernels(p.dtype)
            k.rmsprop_step(
                p._data,
                p.grad._data,
                st["square_avg"]._data,
                st.get("grad_avg", p)._data,
                st.get("momentum_buffer", p)._data,
                g["lr"],
                g["alpha"],
                g["eps"],
                g["weight_decay"],
                g["momentum"],
                g["centered"],
            )


from pyengine.optim import lr_scheduler  # noqa: E402,F401
