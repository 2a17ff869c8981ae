import numpy as np
import pytest
from opcheck import check_op

import pyengine as pe
import pyengine.nn as nn
import pyengine.nn.functional as F

SHAPES = [(4, 3, 5, 6), (1, 3, 4, 4), (6, 5), (3, 4, 7)]


def _running(C, dtype, device="cpu", seed=7):
    rng = np.random.default_rng(seed)
    rm = pe.tensor(rng.standard_normal(C).astype(dtype), device=device)
    rv = pe.tensor(rng.uniform(0.5, 2.0, C).astype(dtype), device=device)
    return rm, rv


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_against_twin(device, rng, shape, training, affine):
    C = shape[1]
    x = rng.standard_normal(shape) * 3 + 2

    def fn(x, *wb):
        rm, rv = _running(C, x.dtype, x.device)
        return F.batch_norm(x, rm, rv, *wb, training=training, momentum=0.3)

    wb = [rng.standard_normal(C), rng.standard_normal(C)] if affine else []
    check_op(fn, [x, *wb], device=device)


def test_running_stats_against_twin(rng):
    x = rng.standard_normal((5, 4, 3, 3)).astype(np.float32) * 2 + 1
    got = _running(4, np.float32)
    F.batch_norm(pe.tensor(x), *got, training=True, momentum=0.25)
    ref = _running(4, np.float64)
    F.batch_norm(pe.tensor(x.astype(np.float64)), *ref, training=True, momentum=0.25)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_twin(rng, training):
    x = pe.tensor(rng.standard_normal((2, 3, 2, 2)), dtype=pe.float64, requires_grad=True)
    w = pe.tensor(rng.standard_normal(3), dtype=pe.float64, requires_grad=True)
    b = pe.tensor(rng.standard_normal(3), dtype=pe.float64, requires_grad=True)

    def fn(x, w, b):
        rm, rv = _running(3, np.float64)
        return F.batch_norm(x, rm, rv, w, b, training=training)

    assert pe.autograd.gradcheck(fn, [x, w, b])
    assert pe.autograd.gradcheck(lambda x: F.batch_norm(x, None, None, training=True), [x])


def test_only_requested_grads(rng):
    x = pe.tensor(rng.standard_normal((3, 2, 4)).astype(np.float32), requires_grad=True)
    w = pe.ones(2)
    b = pe.zeros(2, requires_grad=True)
    F.batch_norm(x, None, None, w, b, training=True).sum().backward()
    assert w.grad is None and x.grad is not None and b.grad is not None
    np.testing.assert_allclose(b.grad.numpy(), [12, 12])
    # sum(y) does not depend on x in training mode: the batch mean absorbs any shift.
    np.testing.assert_allclose(x.grad.numpy(), 0, atol=1e-5)
    w2 = pe.ones(2, requires_grad=True)
    F.batch_norm(pe.tensor(x.detach()), None, None, w2, None, training=True).sum().backward()
    assert w2.grad is not None


def test_eval_backward_is_channel_scale(rng):
    x = pe.tensor(rng.standard_normal((2, 3, 4)).astype(np.float32), requires_grad=True)
    rm, rv = _running(3, np.float32)
    w = pe.tensor(np.array([1.0, -2.0, 0.5], np.float32))
    F.batch_norm(x, rm, rv, w, training=False).sum().backward()
    scale = w.numpy() / np.sqrt(rv.numpy() + 1e-5)
    np.testing.assert_allclose(
        x.grad.numpy(), np.broadcast_to(scale[:, None], (2, 3, 4)), rtol=1e-6
    )


def test_large_mean_is_stable(device, rng, torch):
    x = (1e4 + rng.standard_normal((8, 4, 16, 16))).astype(np.float32)
    rm, rv = pe.zeros(4, device=device), pe.ones(4, device=device)
    y = F.batch_norm(pe.tensor(x, device=device), rm, rv, training=True, momentum=1.0).numpy()
    t = torch.tensor(x, dtype=torch.float64)
    trm, trv = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    ty = torch.nn.functional.batch_norm(t, trm, trv, training=True, momentum=1.0).numpy()
    # The float32 mean itself is only good to half an ulp of 1e4 (5e-4).
    np.testing.assert_allclose(y, ty, atol=1e-3)
    np.testing.assert_allclose(rv.numpy(), trv.numpy(), rtol=1e-4)
    np.testing.assert_allclose(rm.numpy(), trm.numpy(), rtol=1e-7)
    np.testing.assert_allclose(y.std(axis=(0, 2, 3)), 1.0, atol=1e-3)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_functional_against_torch(torch, rng, shape, training, affine):
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    w, b = rng.standard_normal(C).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    rm, rv = _running(C, np.float32)
    trm, trv = torch.tensor(rm.numpy()), torch.tensor(rv.numpy())
    px = pe.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    pwb = [pe.tensor(w, requires_grad=True), pe.tensor(b, requires_grad=True)] if affine else []
    twb = (
        [torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)] if affine else []
    )
    y = F.batch_norm(px, rm, rv, *pwb, training=training, momentum=0.2)
    ty = torch.nn.functional.batch_norm(tx, trm, trv, *twb, training=training, momentum=0.2)
    y.backward(pe.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(px.grad.numpy(), tx.grad.numpy(), rtol=1e-3, atol=1e-4)
    for p, t in zip(pwb, twb):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(rm.numpy(), trm.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(rv.numpy(), trv.numpy(), rtol=1e-6, atol=1e-7)


def _pair(torch, cls, C, **kw):
    tm = getattr(torch.nn, cls)(C, **kw)
    with torch.no_grad():
        if tm.weight is not None:
            tm.weight.uniform_(0.5, 1.5)
            tm.bias.uniform_(-0.5, 0.5)
    pm = getattr(nn, cls)(C, **kw)
    pm.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    return pm, tm


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"momentum": None},
        {"affine": False, "momentum": 0.5},
        {"track_running_stats": False},
        {"eps": 1e-3},
    ],
)
def test_module_steps_against_torch(torch, rng, kw):
    pm, tm = _pair(torch, "BatchNorm2d", 3, **kw)
    for step in range(3):
        x = (rng.standard_normal((4, 3, 5, 5)) * (step + 1) + step).astype(np.float32)
        y = pm(pe.tensor(x))
        ty = tm(torch.tensor(x))
        np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    sd, tsd = pm.state_dict(), tm.state_dict()
    assert list(sd) == list(tsd)
    for k in sd:
        assert sd[k].shape == tuple(tsd[k].shape), k
        np.testing.assert_allclose(sd[k].numpy(), tsd[k].numpy(), rtol=1e-6, atol=1e-7, err_msg=k)
    pm.eval()
    tm.eval()
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(
        pm(pe.tensor(x)).detach().numpy(),
        tm(torch.tensor(x)).detach().numpy(),
        rtol=1e-4,
        atol=1e-5,
    )


def test_batchnorm1d_against_torch(torch, rng):
    pm, tm = _pair(torch, "BatchNorm1d", 4)
    for shape in [(5, 4), (3, 4, 6)]:
        x = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(
            pm(pe.tensor(x)).detach().numpy(),
            tm(torch.tensor(x)).detach().numpy(),
            rtol=1e-4,
            atol=1e-5,
        )
    np.testing.assert_allclose(pm.running_var.numpy(), tm.running_var.numpy(), rtol=1e-6)
    assert int(pm.num_batches_tracked.item()) == 2


def test_state_dict_both_ways(torch, rng):
    pm = nn.BatchNorm2d(3)
    pm(pe.tensor(rng.standard_normal((2, 3, 4, 4)).astype(np.float32)))
    sd = pm.state_dict()
    assert sd["num_batches_tracked"].shape == () and sd["num_batches_tracked"].dtype == np.int64
    tm = torch.nn.BatchNorm2d(3)
    tm.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in sd.items()})
    assert int(tm.num_batches_tracked) == 1
    np.testing.assert_array_equal(tm.running_mean.numpy(), pm.running_mean.numpy())
    pm2 = nn.BatchNorm2d(3)
    pm2.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    assert pm2.num_batches_tracked.item() == 1
    assert nn.BatchNorm2d(3, affine=False).state_dict().keys() == {
        "running_mean",
        "running_var",
        "num_batches_tracked",
    }
    assert not nn.BatchNorm2d(3, track_running_stats=False).state_dict().keys() - {"weight", "bias"}


def test_train_eval_modes(rng):
    m = nn.BatchNorm2d(2)
    x = pe.tensor((rng.standard_normal((3, 2, 4, 4)) * 3 + 5).astype(np.float32))
    y = m(x).detach().numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    m.eval()
    before = m.running_mean.numpy().copy()
    ye = m(x).detach().numpy()
    np.testing.assert_array_equal(m.running_mean.numpy(), before)
    assert m.num_batches_tracked.item() == 1
    assert not np.allclose(ye, y)
    # Without running statistics eval mode still normalises with the batch.
    m2 = nn.BatchNorm2d(2, track_running_stats=False).eval()
    np.testing.assert_allclose(m2(x).detach().numpy(), y, rtol=1e-5, atol=1e-5)
    assert "momentum=0.1" in repr(m)


def test_batch_size_one():
    # One sample with spatial extent is fine; a single value per channel is not.
    F.batch_norm(pe.randn(1, 3, 2, 2), None, None, training=True)
    for shape in [(1, 3), (1, 3, 1, 1), (1, 3, 1)]:
        with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
            F.batch_norm(pe.randn(*shape), pe.zeros(3), pe.ones(3), training=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        nn.BatchNorm1d(3)(pe.randn(1, 3))
    y = nn.BatchNorm1d(3).eval()(pe.randn(1, 3))
    assert y.shape == (1, 3)


def test_bad_inputs():
    x = pe.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="at least 2 dims"):
        F.batch_norm(pe.randn(3), None, None, training=True)
    with pytest.raises(RuntimeError, match="running_mean"):
        F.batch_norm(x, pe.zeros(4), pe.ones(4))
    with pytest.raises(RuntimeError, match="running_var"):
        F.batch_norm(x, pe.zeros(3), pe.ones(2, 2))
    with pytest.raises(RuntimeError, match="weight"):
        F.batch_norm(x, None, None, pe.ones(5), training=True)
    with pytest.raises(RuntimeError, match="bias"):
        F.batch_norm(x, None, None, pe.ones(3), pe.ones(2), training=True)
    with pytest.raises(RuntimeError, match="together"):
        F.batch_norm(x, pe.zeros(3), None, training=True)
    with pytest.raises(RuntimeError, match="eval mode"):
        F.batch_norm(x, None, None, training=False)
    with pytest.raises(TypeError):
        F.batch_norm(x, pe.zeros(3, dtype=pe.float64), pe.ones(3, dtype=pe.float64))
    with pytest.raises(TypeError):
        F.batch_norm(x.numpy(), None, None, training=True)
    with pytest.raises(ValueError, match="expected 4D input"):
        nn.BatchNorm2d(3)(pe.randn(2, 3, 4))
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        nn.BatchNorm1d(3)(x)
    with pytest.raises(RuntimeError, match="running_mean"):
        nn.BatchNorm2d(4)(x)


def test_kernels_validate_arguments():
    k = pe.backend.backend(pe.device("cpu")).native
    x = np.zeros((2, 3, 4), np.float32)
    y = np.empty_like(x)
    c3, c2 = np.zeros(3, np.float32), np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="save_mean"):
        k.batchnorm_forward_train(x, None, None, y, c2, c3, None, None, 0.1, 1e-5)
    with pytest.raises(ValueError, match="weight"):
        k.batchnorm_forward_train(x, c2, None, y, c3, c3.copy(), None, None, 0.1, 1e-5)
    with pytest.raises(ValueError, match="more than 1 value"):
        k.batchnorm_forward_train(
            x[:1, :, :1].copy(),
            None,
            None,
            y[:1, :, :1].copy(),
            c3,
            c3.copy(),
            None,
            None,
            0.1,
            1e-5,
        )
    with pytest.raises(ValueError, match="float32"):
        k.batchnorm_forward_eval(x.astype(np.float64), c3, c3, None, None, y, c3, c3, 1e-5)
    with pytest.raises(ValueError, match="grad_input"):
        k.batchnorm_backward(x, x, c3, c3, None, np.empty((2, 3), np.float32), None, None, True)
    with pytest.raises(ValueError, match="out"):
        k.batchnorm_forward_eval(x, c3, c3, None, None, y[:1].copy(), c3, c3.copy(), 1e-5)


# ---------------------------------------------------------------- batch norm + ReLU (training)
# batchnorm_relu_forward_train / batchnorm_relu_backward: one node, fused kernels.


def _bn_relu(x, rm, rv, w=None, b=None, momentum=0.1):
    from pyengine.ops.norm import batch_norm

    return batch_norm(x, rm, rv, w, b, True, momentum, 1e-5, relu=True)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_relu_against_twin(device, rng, shape, affine):
    C = shape[1]
    x = rng.standard_normal(shape) * 3 + 2

    def fn(x, *wb):
        rm, rv = _running(C, x.dtype, x.device)
        y = _bn_relu(x, rm, rv, *wb, momentum=0.3)
        return y, rm, rv

    wb = [rng.standard_normal(C), rng.standard_normal(C)] if affine else []
    check_op(fn, [x, *wb], device=device)


def test_batch_norm_relu_kernels_skip_absent_grads(rng):
    """Direct kernel calls against the twin, each gradient alone (the others None)."""
    from pyengine import _cpu
    from pyengine.backend import numpy_ref

    x = (rng.standard_normal((3, 4, 5, 5)) * 2 + 1).astype(np.float32)
    w, b = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    out = {}
    for name, mod, dt in (("cpu", _cpu, np.float32), ("ref", numpy_ref, np.float64)):
        xs, ws, bs, gs = (a.astype(dt) for a in (x, w, b, g))
        y, mean, invstd = np.empty_like(xs), np.empty(4, dt), np.empty(4, dt)
        mod.batchnorm_relu_forward_train(xs, ws, bs, y, mean, invstd, None, None, 0.1, 1e-5)
        res = [y]
        for k in range(3):
            grads = [None, None, None]
            grads[k] = np.full(x.shape if k == 0 else (4,), np.nan, dt)
            mod.batchnorm_relu_backward(gs, y, xs, mean, invstd, ws, *grads)
            res.append(grads[k])
        out[name] = res
    assert (out["cpu"][0] >= 0).all() and (out["cpu"][0] == 0).any()
    for a, r in zip(out["cpu"], out["ref"]):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4)


def test_batch_norm_relu_kernel_checks_output_shape(rng):
    from pyengine import _cpu

    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    m, s = np.zeros(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match="output"):
        _cpu.batchnorm_relu_backward(x, x[:1], x, m, s, None, np.empty_like(x), None, None)


def test_batch_norm_relu_gradcheck_twin(rng):
    x = pe.tensor(rng.standard_normal((2, 3, 2, 3)), dtype=pe.float64, requires_grad=True)
    w = pe.tensor(rng.standard_normal(3), dtype=pe.float64, requires_grad=True)
    b = pe.tensor(rng.standard_normal(3), dtype=pe.float64, requires_grad=True)

    def fn(x, w, b):
        rm, rv = _running(3, np.float64)
        return _bn_relu(x, rm, rv, w, b)

    assert pe.autograd.gradcheck(fn, [x, w, b])
    assert pe.autograd.gradcheck(lambda x: _bn_relu(x, None, None), [x])


def test_batch_norm_relu_large_mean_is_stable(device, rng):
    """The one-pass statistics (sums shifted by the first row's mean) against float64."""
    x = (1e4 + rng.standard_normal((8, 4, 16, 16))).astype(np.float32)
    rm, rv = pe.zeros(4, device=device), pe.ones(4, device=device)
    y = _bn_relu(pe.tensor(x, device=device), rm, rv, momentum=1.0).numpy()
    rm64, rv64 = pe.zeros(4, dtype=pe.float64), pe.ones(4, dtype=pe.float64)
    ref = _bn_relu(pe.tensor(x.astype(np.float64)), rm64, rv64, momentum=1.0).numpy()
    np.testing.assert_allclose(y, ref, atol=1e-3)
    np.testing.assert_allclose(rv.numpy(), rv64.numpy(), rtol=1e-4)
    np.testing.assert_allclose(rm.numpy(), rm64.numpy(), rtol=1e-7)


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (1, 2, 7, 7), (6, 5)])
def test_batch_norm_relu_against_torch(torch, rng, shape):
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    w, b = rng.standard_normal(C).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    rm, rv = _running(C, np.float32)
    trm, trv = torch.tensor(rm.numpy()), torch.tensor(rv.numpy())
    px, pw, pb = (pe.tensor(a, requires_grad=True) for a in (x, w, b))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = _bn_relu(px, rm, rv, pw, pb, momentum=0.2)
    F_ = torch.nn.functional
    ty = F_.relu(F_.batch_norm(tx, trm, trv, tw, tb, training=True, momentum=0.2))
    y.backward(pe.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    for p, t in ((px, tx), (pw, tw), (pb, tb)):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(rm.numpy(), trm.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(rv.numpy(), trv.numpy(), rtol=1e-6, atol=1e-7)


def test_fused_module_steps_match_torch_batchnorm2d(torch, rng):
    """BatchNorm2d + ReLU run by the models' fusion (models/fused.py) keeps the running statistics
    and num_batches_tracked of torch's nn.BatchNorm2d over several training steps, then eval."""
    from pyengine.models.fused import run_sequential

    pm, tm = _pair(torch, "BatchNorm2d", 3, momentum=0.3)
    seq, tseq = nn.Sequential(pm, nn.ReLU()), torch.nn.Sequential(tm, torch.nn.ReLU())
    for _ in range(3):
        x = (rng.standard_normal((4, 3, 6, 6)) * 2 + 1).astype(np.float32)
        y = run_sequential(seq, pe.tensor(x))
        want = tseq(torch.tensor(x)).detach().numpy()
        np.testing.assert_allclose(y.detach().numpy(), want, atol=1e-5)
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(
            getattr(pm, name).numpy(), getattr(tm, name).numpy(), rtol=1e-6, atol=1e-7
        )
    assert int(pm.num_batches_tracked.item()) == int(tm.num_batches_tracked) == 3
    seq.eval()
    tseq.eval()
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(
        run_sequential(seq, pe.tensor(x)).detach().numpy(),
        tseq(torch.tensor(x)).detach().numpy(),
        atol=1e-5,
    )
