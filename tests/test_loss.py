"""BCELoss, BCEWithLogitsLoss, SmoothL1Loss, HuberLoss: against PyTorch (values and input
gradients over the argument grids), the float64 twin and gradcheck; the maps they compose from
(csrc/activation.cpp smooth_l1, huber, log_clamped) against the twin."""

import numpy as np
import pytest
from opcheck import check_op
from torchcheck import torch_check

import pyengine as pe
import pyengine.nn as nn
import pyengine.nn.functional as F

REDUCTIONS = ["mean", "sum", "none"]


def _probs(rng, shape):
    return rng.uniform(0.02, 0.98, shape)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_against_torch(torch, rng, reduction, weighted):
    x, t = _probs(rng, (4, 5)).astype(np.float32), rng.uniform(0, 1, (4, 5)).astype(np.float32)
    w = [rng.uniform(0.5, 2, (5,)).astype(np.float32)] if weighted else []

    def run(lib):
        def fn(x, t, *w):
            return lib.nn.functional.binary_cross_entropy(
                x, t.detach(), *[v.detach() for v in w], reduction=reduction
            )

        return fn

    torch_check(torch, run(pe), [x, t, *w], run(torch), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos_weight", [False, True])
def test_bce_with_logits_against_torch(torch, rng, reduction, pos_weight):
    x = (rng.standard_normal((4, 5)) * 30).astype(np.float32)  # saturated logits stay finite
    t = rng.uniform(0, 1, (4, 5)).astype(np.float32)
    extra = [rng.uniform(0.5, 3, (5,)).astype(np.float32)] if pos_weight else []

    def run(lib):
        def fn(x, t, *pw):
            pw = [v.detach() for v in pw]
            return lib.nn.functional.binary_cross_entropy_with_logits(
                x, t.detach(), reduction=reduction, pos_weight=pw[0] if pw else None
            )

        return fn

    torch_check(torch, run(pe), [x, t, *extra], run(torch), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("param", [1.0, 0.3, 0.0])
def test_smooth_l1_and_huber_against_torch(torch, rng, reduction, param):
    x, t = (
        rng.standard_normal((3, 7)).astype(np.float32),
        rng.standard_normal((3, 7)).astype(np.float32),
    )
    torch_check(
        torch,
        lambda x, t: F.smooth_l1_loss(x, t, reduction=reduction, beta=param),
        [x, t],
        lambda x, t: torch.nn.functional.smooth_l1_loss(x, t, reduction=reduction, beta=param),
    )
    if param > 0:
        torch_check(
            torch,
            lambda x, t: F.huber_loss(x, t, reduction=reduction, delta=param),
            [x, t],
            lambda x, t: torch.nn.functional.huber_loss(x, t, reduction=reduction, delta=param),
        )


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, t: F.smooth_l1_loss(x, t, beta=0.5),
        lambda x, t: F.huber_loss(x, t, delta=0.7),
        lambda x, t: F.binary_cross_entropy_with_logits(x, t),
    ],
)
def test_twin_and_gradcheck(rng, fn):
    x, t = rng.standard_normal((2, 3, 50)), rng.uniform(0, 1, (2, 3, 50))
    check_op(fn, [x, t])
    xs = pe.tensor(x[..., :4], dtype=pe.float64, requires_grad=True)
    ts = pe.tensor(t[..., :4], dtype=pe.float64, requires_grad=True)
    assert pe.autograd.gradcheck(fn, [xs, ts])


def test_bce_twin_gradcheck_and_clamp(rng):
    x, t = _probs(rng, (3, 40)), rng.uniform(0, 1, (3, 40))
    check_op(lambda x, t: F.binary_cross_entropy(x, t.detach()), [x, t])
    xs = pe.tensor(_probs(rng, (2, 3)), dtype=pe.float64, requires_grad=True)
    ts = pe.tensor(rng.uniform(0, 1, (2, 3)), dtype=pe.float64)
    assert pe.autograd.gradcheck(lambda x: F.binary_cross_entropy(x, ts), [xs])
    # log(0) is clamped at -100 and the gradient stays finite, as in torch.
    x0 = pe.tensor([0.0, 1.0, 0.0], requires_grad=True)
    loss = F.binary_cross_entropy(x0, pe.tensor([1.0, 0.0, 0.0]), reduction="none")
    assert loss.tolist() == [100.0, 100.0, 0.0]
    loss.sum().backward()
    assert np.all(np.isfinite(x0.grad.numpy()))


def test_loss_modules_and_errors(torch, rng):
    x = _probs(rng, (6,)).astype(np.float32)
    t = (rng.uniform(0, 1, 6) > 0.5).astype(np.float32)
    w = np.linspace(0.5, 2, 6).astype(np.float32)
    pairs = [
        (nn.BCELoss(weight=pe.tensor(w)), torch.nn.BCELoss(weight=torch.tensor(w))),
        (
            nn.BCEWithLogitsLoss(pos_weight=pe.tensor(w), reduction="sum"),
            torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(w), reduction="sum"),
        ),
        (nn.SmoothL1Loss(beta=0.2), torch.nn.SmoothL1Loss(beta=0.2)),
        (nn.HuberLoss(delta=0.2), torch.nn.HuberLoss(delta=0.2)),
    ]
    for ours, ref in pairs:
        got = ours(pe.tensor(x), pe.tensor(t)).item()
        assert got == pytest.approx(ref(torch.tensor(x), torch.tensor(t)).item(), rel=1e-5)
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(pe.tensor([1.5]), pe.tensor([1.0]))
    with pytest.raises(ValueError, match="target size"):
        F.binary_cross_entropy(pe.tensor([0.5, 0.5]), pe.tensor([1.0]))
    with pytest.raises(ValueError, match="reduction"):
        F.huber_loss(pe.tensor([0.5]), pe.tensor([1.0]), reduction="avg")
    with pytest.raises(RuntimeError, match="delta"):
        F.huber_loss(pe.tensor([0.5]), pe.tensor([1.0]), delta=0.0)
    with pytest.raises(RuntimeError, match="beta"):
        F.smooth_l1_loss(pe.tensor([0.5]), pe.tensor([1.0]), beta=-1.0)
