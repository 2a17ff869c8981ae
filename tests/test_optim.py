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


ADAMW_CASES = [
    dict(lr=1e-3),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.0),
]
RMSPROP_CASES = [
    dict(lr=0.01),
    dict(lr=0.01, alpha=0.9, weight_decay=0.05),
    dict(lr=0.005, momentum=0.9),
    dict(lr=0.005, centered=True),
    dict(lr=0.002, momentum=0.5, centered=True, eps=1e-4, weight_decay=1e-3),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "name,kwargs", [("AdamW", k) for k in ADAMW_CASES] + [("RMSprop", k) for k in RMSPROP_CASES]
)
def test_new_optimizers_match_torch(torch, name, kwargs, dtype):
    ours, _ = _trajectory(pe, getattr(pe.optim, name), kwargs, dtype, steps=8)
    ref, _ = _trajectory(torch, getattr(torch.optim, name), kwargs, dtype, steps=8)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("kernel", ["adamw_step", "rmsprop_step"])
def test_new_optimizer_kernels_reject_bad_sizes(kernel):
    from pyengine.backend.device import _cpu

    p, g = np.ones(4, np.float32), np.ones(3, np.float32)
    args = (p, g, np.ones(4, np.float32), np.ones(4, np.float32))
    with pytest.raises(ValueError, match="grad"):
        if kernel == "adamw_step":
            _cpu.adamw_step(*args, 0.1, 0.9, 0.99, 1e-8, 0.01, 1)
        else:
            _cpu.rmsprop_step(*args, p, 0.1, 0.9, 1e-8, 0.0, 0.0, True)


def _sched_run(lib, make_opt, make_sched, steps, metrics=None):
    p = lib.nn.Parameter(lib.zeros(3))
    opt = make_opt(lib, p)
    s = make_sched(lib, opt)
    lrs = [[g["lr"] for g in opt.param_groups]]
    moms = []
    for i in range(steps):
        p.grad = lib.ones(3)
        opt.step()
        s.step(metrics[i]) if metrics is not None else s.step()
        lrs.append([g["lr"] for g in opt.param_groups])
        g0 = opt.param_groups[0]
        moms.append(g0["betas"][0] if "betas" in g0 else g0.get("momentum"))
    return np.array(lrs), np.array(moms, dtype=float), p.detach().numpy().astype(np.float64)


def _two_groups(lib, p, cls="SGD", **kw):
    q = lib.nn.Parameter(lib.zeros(2))
    q.grad = lib.ones(2)
    return getattr(lib.optim, cls)([{"params": [p]}, {"params": [q], "lr": 0.2}], lr=0.1, **kw)


SCHED_CASES = [
    ("LambdaLR", lambda L, o: L.optim.lr_scheduler.LambdaLR(o, lambda e: 0.9**e), 12, None),
    (
        "LambdaLR per group",
        lambda L, o: L.optim.lr_scheduler.LambdaLR(o, [lambda e: 1 / (e + 1), lambda e: 0.5]),
        6,
        None,
    ),
    ("MultiStepLR", lambda L, o: L.optim.lr_scheduler.MultiStepLR(o, [3, 3, 7], 0.5), 10, None),
    (
        "OneCycleLR cos",
        lambda L, o: L.optim.lr_scheduler.OneCycleLR(o, 1.0, total_steps=20),
        20,
        None,
    ),
    (
        "OneCycleLR linear three-phase",
        lambda L, o: L.optim.lr_scheduler.OneCycleLR(
            o,
            [1.0, 2.0],
            epochs=3,
            steps_per_epoch=5,
            anneal_strategy="linear",
            three_phase=True,
            pct_start=0.4,
        ),
        15,
        None,
    ),
    (
        "ReduceLROnPlateau",
        lambda L, o: L.optim.lr_scheduler.ReduceLROnPlateau(
            o, patience=2, cooldown=1, min_lr=0.002
        ),
        14,
        [5, 4, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3, 3, 3],
    ),
    (
        "ReduceLROnPlateau max abs",
        lambda L, o: L.optim.lr_scheduler.ReduceLROnPlateau(
            o, mode="max", factor=0.5, patience=1, threshold=0.1, threshold_mode="abs"
        ),
        8,
        [1, 1.05, 1.2, 1.25, 1.3, 1.3, 1.5, 1.5],
    ),
]


@pytest.mark.parametrize("opt", ["SGD", "Adam", "RMSprop"])
@pytest.mark.parametrize("name,make,steps,metrics", SCHED_CASES, ids=[c[0] for c in SCHED_CASES])
def test_new_schedulers_match_torch(torch, opt, name, make, steps, metrics):
    kw = dict(momentum=0.9) if opt == "SGD" else {}
    ours = _sched_run(pe, lambda L, p: _two_groups(L, p, opt, **kw), make, steps, metrics)
    ref = _sched_run(torch, lambda L, p: _two_groups(L, p, opt, **kw), make, steps, metrics)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_new_scheduler_errors():
    from pyengine.optim.lr_scheduler import OneCycleLR, ReduceLROnPlateau

    p = pe.nn.Parameter(pe.zeros(1))
    opt = SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="total_steps"):
        OneCycleLR(opt, 1.0)
    s = OneCycleLR(opt, 1.0, total_steps=2)
    s.step()
    s.step()
    with pytest.raises(ValueError, match="Tried to step 3 times"):
        s.step()
    with pytest.raises(ValueError, match="Factor"):
        ReduceLROnPlateau(opt, factor=1.5)


@pytest.mark.parametrize(
    "sched,kwargs",
    [
        ("ExponentialLR", dict(gamma=0.8)),
        ("LinearLR", dict()),
        ("LinearLR", dict(start_factor=0.5, end_factor=0.1, total_iters=4)),
    ],
)
def test_exponential_and_linear_lr_match_torch(torch, sched, kwargs):
    ours = _sched_run(
        pe,
        lambda L, p: _two_groups(L, p),
        lambda L, o: getattr(L.optim.lr_scheduler, sched)(o, **kwargs),
        8,
    )
    ref = _sched_run(
        torch,
        lambda L, p: _two_groups(L, p),
        lambda L, o: getattr(torch.optim.lr_scheduler, sched)(o, **kwargs),
        8,
    )
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-9)
