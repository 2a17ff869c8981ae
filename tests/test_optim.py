import numpy as np
import pytest

import pyengine as pe
from pyengine.optim import SGD, Adam
from pyengine.optim.lr_scheduler import CosineAnnealingLR, MultiStepLR, StepLR

SHAPES = [(3, 4), (5,), (70000,)]  # the last one takes the threaded path


def _trajectory(lib, opt_cls, kwargs, dtype, steps=6):
    rng = np.random.default_rng(0)
    params = [lib.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in SHAPES]
    if lib is pe:
        params = [pe.nn.Parameter(p.detach()) for p in params]
    opt = opt_cls(params, **kwargs)
    for _ in range(steps):
        for p in params:
            p.grad = lib.tensor(rng.standard_normal(p.shape).astype(dtype))
        opt.step()
    return [p.detach().numpy().astype(np.float64) for p in params], opt


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.1, momentum=0.8, dampening=0.3),
    dict(lr=0.1, momentum=0.9, weight_decay=0.01),
    dict(lr=0.1, weight_decay=0.1),
    dict(lr=0.02, momentum=0.5, nesterov=True, weight_decay=1e-3),
]
ADAM_CASES = [
    dict(lr=1e-3),
    dict(lr=0.01, betas=(0.8, 0.99)),
    dict(lr=0.01, eps=1e-3),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.1, betas=(0.5, 0.9), eps=1e-6, weight_decay=1e-2),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "name,kwargs", [("SGD", k) for k in SGD_CASES] + [("Adam", k) for k in ADAM_CASES]
)
def test_trajectory_matches_torch(torch, name, kwargs, dtype):
    ours, _ = _trajectory(pe, getattr(pe.optim, name), kwargs, dtype)
    ref, _ = _trajectory(torch, getattr(torch.optim, name), kwargs, dtype)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 if dtype == np.float32 else 1e-12)


def test_optimizer_skips_params_without_grad_and_zero_grad():
    a, b = pe.nn.Parameter(pe.ones(2)), pe.nn.Parameter(pe.ones(2))
    opt = SGD([a, b], lr=1.0)
    a.grad = pe.ones(2)
    opt.step()
    assert a.tolist() == [0.0, 0.0] and b.tolist() == [1.0, 1.0]
    opt.zero_grad(set_to_none=False)
    assert a.grad.tolist() == [0.0, 0.0]
    opt.zero_grad()
    assert a.grad is None


def test_param_groups_have_their_own_lr():
    a, b = pe.nn.Parameter(pe.ones(1)), pe.nn.Parameter(pe.ones(1))
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    a.grad, b.grad = pe.ones(1), pe.ones(1)
    opt.step()
    assert a.item() == pytest.approx(0.9) and b.item() == pytest.approx(0.5)


def test_invalid_settings():
    p = pe.nn.Parameter(pe.ones(1))
    with pytest.raises(ValueError):
        SGD([p], lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError):
        Adam([p], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="require grad"):
        SGD([pe.ones(1)], lr=0.1)


def _sched_values(lib, sched, kwargs, epochs=15):
    p = lib.nn.Parameter(lib.zeros(1))
    opt = lib.optim.SGD([p], lr=0.5)
    s = getattr(lib.optim.lr_scheduler, sched)(opt, **kwargs)
    out = []
    for _ in range(epochs):
        opt.step()
        s.step()
        out.append(s.get_last_lr()[0])
    return out


@pytest.mark.parametrize(
    "sched,kwargs",
    [
        ("StepLR", dict(step_size=3)),
        ("StepLR", dict(step_size=2, gamma=0.5)),
        ("MultiStepLR", dict(milestones=[2, 5, 9], gamma=0.3)),
        ("CosineAnnealingLR", dict(T_max=5)),
        ("CosineAnnealingLR", dict(T_max=4, eta_min=0.01)),
    ],
)
def test_schedulers_match_torch(torch, sched, kwargs):
    np.testing.assert_allclose(
        _sched_values(pe, sched, kwargs), _sched_values(torch, sched, kwargs), rtol=1e-9
    )


@pytest.mark.parametrize(
    "name,kwargs", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.01))]
)
def test_state_dict_round_trip_through_save(tmp_path, name, kwargs):
    def make():
        rng = np.random.default_rng(0)
        return [
            pe.nn.Parameter(pe.tensor(rng.standard_normal(s).astype(np.float32)))
            for s in SHAPES[:2]
        ]

    def steps(params, opt, n, seed):
        rng = np.random.default_rng(seed)
        for _ in range(n):
            for p in params:
                p.grad = pe.tensor(rng.standard_normal(p.shape).astype(np.float32))
            opt.step()

    cls = getattr(pe.optim, name)
    pa = make()
    oa = cls(pa, **kwargs)
    steps(pa, oa, 3, 1)
    pe.save(
        {"optim": oa.state_dict(), "params": {str(i): p for i, p in enumerate(pa)}},
        tmp_path / "ck.npz",
    )
    ck = pe.load(tmp_path / "ck.npz")
    pb = make()
    for i, p in enumerate(pb):
        with pe.no_grad():
            p.copy_(ck["params"][str(i)])
    ob = cls(pb, **{**kwargs, "lr": 123.0})
    ob.load_state_dict(ck["optim"])
    assert ob.param_groups[0]["lr"] == kwargs["lr"]
    steps(pa, oa, 2, 7)
    steps(pb, ob, 2, 7)
    for a, b in zip(pa, pb):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_scheduler_state_dict():
    p = pe.nn.Parameter(pe.zeros(1))
    s = StepLR(SGD([p], lr=1.0), step_size=2)
    for _ in range(3):
        s.step()
    s2 = StepLR(SGD([p], lr=1.0), step_size=2)
    s2.load_state_dict(s.state_dict())
    s2.step()
    assert s2.get_last_lr() == pytest.approx([0.01]) and s2.last_epoch == 4
    assert MultiStepLR is not None and CosineAnnealingLR is not None
