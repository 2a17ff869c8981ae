"""Fused layers (issue 12): conv2d_relu (the ReLU as the conv kernel's epilogue), batch_norm with
relu=True, the models' run-time fusion of Conv2d/BatchNorm2d + ReLU pairs, and BN folding in
whole-image inference. Each against the unfused computation or the float64 twin."""

import copy

import numpy as np
import pytest
from opcheck import check_op

import pyengine as pe
import pyengine.nn.functional as F
from pyengine import nn
from pyengine.models import DnCNN, denoise_array
from pyengine.models.fused import run_sequential
from pyengine.ops.conv import conv2d_relu
from pyengine.ops.norm import batch_norm


@pytest.mark.parametrize("algo", ["auto", "direct", "im2col", "winograd"])
def test_conv2d_relu_against_twin(device, rng, algo):
    x = rng.standard_normal((2, 3, 9, 8))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    check_op(lambda x, w, b: conv2d_relu(x, w, b, padding=1, algo=algo), [x, w, b], device=device)


def test_conv2d_relu_equals_relu_of_conv(rng):
    x, w, b = (
        pe.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)
        for s in [(2, 5, 7, 6), (6, 5, 3, 3), (6,)]
    )
    g = pe.tensor(rng.standard_normal((2, 6, 5, 4)).astype(np.float32))
    grads = []
    for fn in (lambda: conv2d_relu(x, w, b), lambda: F.relu(F.conv2d(x, w, b))):
        x.grad = w.grad = b.grad = None
        y = fn()
        y.backward(g)
        grads.append([y.detach().numpy(), x.grad.numpy(), w.grad.numpy(), b.grad.numpy()])
    for a, r in zip(*grads):
        np.testing.assert_allclose(a, r, atol=1e-5)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_relu(rng, training):
    def run(relu):
        x = pe.tensor(rng_x, requires_grad=True)
        w, b = (pe.tensor(a, requires_grad=True) for a in (gamma, beta))
        rm, rv = pe.tensor(mean.copy()), pe.tensor(var.copy())
        y = batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5, relu=relu)
        if not relu:
            y = F.relu(y)
        y.backward(pe.tensor(g))
        return [y.detach().numpy(), x.grad.numpy(), w.grad.numpy(), b.grad.numpy(), rm.numpy()]

    rng_x = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    gamma, beta = rng.random(4).astype(np.float32) + 0.5, rng.standard_normal(4).astype(np.float32)
    mean, var = rng.standard_normal(4).astype(np.float32), rng.random(4).astype(np.float32) + 0.5
    g = rng.standard_normal(rng_x.shape).astype(np.float32)
    for a, r in zip(run(True), run(False)):
        np.testing.assert_allclose(a, r, atol=1e-5)


def test_run_sequential_equals_module_call(rng):
    class MyReLU(nn.ReLU):  # a subclass is not fused
        pass

    pe.manual_seed(0)
    seq = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU()),
        nn.Conv2d(4, 3, 3, padding=1),
        MyReLU(),
        nn.BatchNorm2d(3),
    )
    twin = copy.deepcopy(seq)
    x = pe.tensor(rng.standard_normal((2, 2, 8, 7)).astype(np.float32))
    for run in (lambda: run_sequential(seq, x), lambda: seq(x)):  # nn.Sequential fuses too
        np.testing.assert_allclose(
            run().detach().numpy(), _unfused(twin, x).detach().numpy(), atol=1e-5
        )
    for a, b in zip(seq.buffers(), twin.buffers()):  # running statistics updated alike
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    assert int(seq[2][1].num_batches_tracked.item()) == 2


def _unfused(seq, x):
    """Every leaf module called in turn: no pair fused."""
    for m in seq:
        x = _unfused(m, x) if isinstance(m, nn.Sequential) else m(x)
    return x


def test_sequential_fuses_with_the_same_gradients(rng):
    """A user's nn.Sequential of plain layers runs the fused nodes (conv2d_relu, BatchNormReLU)
    and trains exactly as the unfused chain of modules."""
    pe.manual_seed(1)
    seq = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 1, 3, padding=1),
    )
    twin = copy.deepcopy(seq)
    x = pe.tensor(rng.standard_normal((3, 1, 9, 8)).astype(np.float32))
    hidden = seq[:5](x)
    assert type(hidden.grad_fn).__name__ == "BatchNormReLU"
    seq.zero_grad()
    (seq(x) ** 2).sum().backward()
    (_unfused(twin, x) ** 2).sum().backward()
    for (name, p), q in zip(seq.named_parameters(), twin.parameters()):
        np.testing.assert_allclose(
            p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name
        )


def test_denoise_array_folds_batchnorm(rng):
    pe.manual_seed(3)
    model = DnCNN(depth=5, channels=8)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.data[...] = rng.standard_normal(8).astype(np.float32) * 0.1
            m.running_var.data[...] = rng.random(8).astype(np.float32) + 0.5
    nn.init.normal_(model.layers[-1].weight, std=0.1)
    model.eval()
    noisy = rng.random((1, 19, 23)).astype(np.float32)
    ref = model.denoise(pe.tensor(noisy[None])).numpy()[0]
    got = denoise_array(model, noisy, tile=0)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # model left as it was


def test_instance_forward_is_not_fused(rng):
    """A module whose forward was replaced on the instance (as nn.summary does) runs itself."""
    seq = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU())
    calls = []
    relu = seq[2]
    relu.forward = lambda x: calls.append(1) or F.relu(x)
    x = pe.tensor(rng.standard_normal((2, 1, 5, 5)).astype(np.float32))
    y = seq(x)
    assert calls == [1] and type(y.grad_fn).__name__ != "BatchNormReLU"
