"""Layer, group and instance norm (csrc/norm_group.cpp): C++ kernels against the float64 NumPy
twin, the twin against finite differences, both against PyTorch, and the modules' parameters."""

import numpy as np
import pytest
from opcheck import check_op
from torchcheck import torch_check

import pyengine as pe
import pyengine.nn as nn
import pyengine.nn.functional as F

GROUP_CASES = [
    ((4, 6, 5, 6), 3),
    ((2, 4, 3), 4),
    ((3, 8), 2),
    ((1, 6, 4, 4), 1),
    ((2, 64, 32, 32), 8),
]
# (4, 8192): long rows, threaded; (3001, 8): many short rows, so the weight/bias gradients go
# through several float-partial flushes (every 64 rows) and a partial one.
LAYER_CASES = [
    ((4, 6, 5), (5,)),
    ((3, 4, 5, 6), (5, 6)),
    ((7, 3), (7, 3)),
    ((4, 8192), (8192,)),
    ((3001, 8), (8,)),
]


def _x(rng, shape):
    return rng.standard_normal(shape) * 3 + 5  # |mean| > std exercises the two-pass variance


@pytest.mark.parametrize("shape,groups", GROUP_CASES)
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_against_twin(rng, shape, groups, affine):
    C = shape[1]
    wb = [rng.standard_normal(C), rng.standard_normal(C)] if affine else []
    check_op(lambda x, *wb: F.group_norm(x, groups, *wb), [_x(rng, shape), *wb])


@pytest.mark.parametrize("shape,ns", LAYER_CASES)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_against_twin(rng, shape, ns, affine):
    wb = [rng.standard_normal(ns), rng.standard_normal(ns)] if affine else []
    check_op(lambda x, *wb: F.layer_norm(x, ns, *wb), [_x(rng, shape), *wb])


def test_weight_only_and_bias_only(rng):
    x = _x(rng, (3, 4, 5))
    check_op(lambda x, w: F.layer_norm(x, (5,), w), [x, rng.standard_normal(5)])
    check_op(lambda x, b: F.layer_norm(x, (4, 5), None, b), [x, rng.standard_normal((4, 5))])
    check_op(lambda x, w: F.group_norm(x, 2, w), [x, rng.standard_normal(4)])


def test_gradcheck_twin(rng):
    def t(shape):
        return pe.tensor(rng.standard_normal(shape), dtype=pe.float64, requires_grad=True)

    x, w, b = t((2, 4, 3)), t(4), t(4)
    assert pe.autograd.gradcheck(lambda x, w, b: F.group_norm(x, 2, w, b), [x, w, b])
    assert pe.autograd.gradcheck(lambda x: F.instance_norm(x), [x])
    lw, lb = t((4, 3)), t((4, 3))
    assert pe.autograd.gradcheck(lambda x, w, b: F.layer_norm(x, (4, 3), w, b), [x, lw, lb])


@pytest.mark.parametrize("shape,groups", GROUP_CASES[:4])
def test_group_norm_against_torch(torch, rng, shape, groups):
    C = shape[1]
    args = [_x(rng, shape).astype(np.float32), rng.standard_normal(C), rng.standard_normal(C)]
    torch_check(
        torch,
        lambda x, w, b: F.group_norm(x, groups, w, b),
        args,
        lambda x, w, b: torch.nn.functional.group_norm(x, groups, w, b),
        atol=1e-4,
        rtol=1e-4,
    )


@pytest.mark.parametrize("shape,ns", LAYER_CASES[:3])
def test_layer_norm_against_torch(torch, rng, shape, ns):
    args = [_x(rng, shape).astype(np.float32), rng.standard_normal(ns), rng.standard_normal(ns)]
    torch_check(
        torch,
        lambda x, w, b: F.layer_norm(x, ns, w, b, eps=1e-6),
        args,
        lambda x, w, b: torch.nn.functional.layer_norm(x, ns, w, b, eps=1e-6),
        atol=1e-4,
        rtol=1e-4,
    )


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("track", [True, False])
def test_instance_norm2d_module_against_torch(torch, rng, affine, track):
    ours = nn.InstanceNorm2d(3, affine=affine, track_running_stats=track, momentum=0.2)
    ref = torch.nn.InstanceNorm2d(3, affine=affine, track_running_stats=track, momentum=0.2)
    if affine:
        w, b = rng.standard_normal(3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
        ours.load_state_dict({**ours.state_dict(), "weight": w, "bias": b})
        ref.load_state_dict(
            {**ref.state_dict(), "weight": torch.tensor(w), "bias": torch.tensor(b)}
        )
    assert list(ours.state_dict()) == list(ref.state_dict())
    for _ in range(2):
        x = _x(rng, (4, 3, 5, 6)).astype(np.float32)
        torch_check(torch, ours, [x], ref, atol=1e-4, rtol=1e-4)
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k].numpy(), v.numpy(), rtol=1e-5, err_msg=k)
    ours.eval()
    ref.eval()
    x = _x(rng, (3, 5, 6)).astype(np.float32)  # unbatched
    torch_check(torch, ours, [x], ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda nn: nn.LayerNorm((5, 6)), (2, 3, 5, 6)),
        (lambda nn: nn.LayerNorm(6, elementwise_affine=False), (4, 6)),
        (lambda nn: nn.LayerNorm(6, bias=False), (4, 6)),
        (lambda nn: nn.GroupNorm(2, 6), (3, 6, 4, 4)),
        (lambda nn: nn.GroupNorm(3, 6, affine=False), (3, 6, 4)),
    ],
)
def test_modules_against_torch(torch, rng, make, shape):
    ours, ref = make(nn), make(torch.nn)
    assert list(ours.state_dict()) == list(ref.state_dict())
    sd = {
        k: rng.standard_normal(tuple(v.shape)).astype(np.float32)
        for k, v in ref.state_dict().items()
    }
    ours.load_state_dict(sd)
    ref.load_state_dict({k: torch.tensor(v) for k, v in sd.items()})
    x = _x(rng, shape).astype(np.float32)
    torch_check(torch, ours, [x], ref, atol=1e-4, rtol=1e-4)
    if not list(ref.parameters()):
        return
    ours(pe.tensor(x)).sum().backward()
    ref(torch.tensor(x)).sum().backward()
    for (n, p), (_, q) in zip(ours.named_parameters(), ref.named_parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), atol=1e-4, rtol=1e-4, err_msg=n)


def test_errors(rng):
    x = pe.tensor(rng.standard_normal((2, 6, 3)).astype(np.float32))
    with pytest.raises(RuntimeError, match="divisible by num_groups"):
        F.group_norm(x, 4)
    with pytest.raises(RuntimeError, match="normalized_shape"):
        F.layer_norm(x, (6,))
    with pytest.raises(RuntimeError, match="weight"):
        F.layer_norm(x, (3,), pe.ones(4))
    with pytest.raises(ValueError, match="divisible"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match="3D or 4D"):
        nn.InstanceNorm2d(6)(pe.ones(2, 6))
    from pyengine.backend.device import _cpu

    y, m = np.empty((2, 6, 3), np.float32), np.empty((2, 4), np.float32)
    with pytest.raises(ValueError, match="num_groups must divide"):
        _cpu.groupnorm_forward(x.numpy(), None, None, y, m, m.copy(), 4, 1e-5)
    with pytest.raises(ValueError, match="save_mean"):
        _cpu.layernorm_forward(
            np.ones((2, 3), np.float32), None, None, np.ones((2, 3), np.float32), m, m, 1e-5
        )


def test_constant_rows_and_only_requested_grads():
    # Zero variance: y = 0 (x - mean = 0), finite gradients.
    x = pe.full((2, 4, 3), 7.0, requires_grad=True)
    y = F.layer_norm(x, (3,))
    assert np.all(y.detach().numpy() == 0)
    y.sum().backward()
    assert np.all(np.isfinite(x.grad.numpy()))
    w = pe.ones(4, requires_grad=True)
    F.group_norm(pe.full((2, 4, 3), 1.0), 2, w).sum().backward()
    assert w.grad is not None
