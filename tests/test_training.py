"""End-to-end training of small CNNs: a conv net overfits a fixed batch, and the same models
trained in PyTorch from the same initial weights follow the same loss curve and end at the same
parameters (SGD with momentum, batch norm in training mode)."""

import numpy as np
import pytest

import pyengine as pe


def tiny_cnn(nn):
    """conv-BN-ReLU, max pool, conv, global average pool, linear (8x8 inputs, 4 classes)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    )


def unet_block(lib):
    """Encoder conv, 2x down, then two ways back up (transposed conv and bilinear interpolate)
    concatenated with the skip connection, and a conv head (one output channel)."""
    nn, F = lib.nn, lib.nn.functional

    class UNetBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
            self.pool = nn.MaxPool2d(2)
            self.mid = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
            self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
            self.head = nn.Conv2d(8 + 8 + 16, 1, 3, padding=1)

        def forward(self, x):
            e = self.enc(x)
            m = self.mid(self.pool(e))
            s = F.interpolate(m, scale_factor=2, mode="bilinear", align_corners=False)
            return self.head(lib.cat([e, self.up(m), s], 1))

    return UNetBlock()


def _data(rng, n=8, classes=4):
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, classes, n).astype(np.int64)
    return x, y


def _train(lib, model, x, target, loss_fn, steps, opt):
    losses = []
    xt, tt = lib.from_numpy(x), lib.from_numpy(target)
    for _ in range(steps):
        loss = loss_fn(model(xt), tt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _to_torch(torch, model, tmodel):
    """Copy pyengine's initial weights into the same PyTorch model through the state dicts."""
    state = {k: torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()}
    tmodel.load_state_dict(state)


def test_tiny_cnn_overfits_a_fixed_batch(rng):
    pe.manual_seed(0)
    model = tiny_cnn(pe.nn)
    x, y = _data(rng)
    opt = pe.optim.Adam(model.parameters(), lr=1e-2)
    losses = _train(pe, model, x, y, pe.nn.functional.cross_entropy, 150, opt)
    assert losses[-1] <= losses[0] / 10, (losses[0], losses[-1])
    model.eval()
    with pe.no_grad():
        pred = model(pe.from_numpy(x)).argmax(1).numpy()
    np.testing.assert_array_equal(pred, y)


def _compare_training(torch, model, tmodel, x, target, pe_loss, torch_loss, lr):
    _to_torch(torch, model, tmodel)
    opt = pe.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    topt = torch.optim.SGD(tmodel.parameters(), lr=lr, momentum=0.9)
    got = _train(pe, model, x, target, pe_loss, 10, opt)
    ref = _train(torch, tmodel, x, target, torch_loss, 10, topt)
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    assert got[-1] < got[0]
    tstate = tmodel.state_dict()
    state = model.state_dict()
    assert list(state) == list(tstate)
    for k, v in state.items():
        np.testing.assert_allclose(v.numpy(), tstate[k].numpy(), rtol=1e-4, atol=1e-5, err_msg=k)


def test_tiny_cnn_matches_pytorch_sgd_momentum(torch, rng):
    torch.manual_seed(0)
    pe.manual_seed(1)
    model, tmodel = tiny_cnn(pe.nn), tiny_cnn(torch.nn)
    x, y = _data(rng)
    _compare_training(
        torch,
        model,
        tmodel,
        x,
        y,
        pe.nn.functional.cross_entropy,
        torch.nn.functional.cross_entropy,
        lr=0.05,
    )


def test_unet_block_matches_pytorch_sgd_momentum(torch, rng):
    torch.manual_seed(0)
    pe.manual_seed(2)
    model, tmodel = unet_block(pe), unet_block(torch)
    x = rng.standard_normal((2, 2, 8, 8)).astype(np.float32)
    target = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    _compare_training(
        torch,
        model,
        tmodel,
        x,
        target,
        pe.nn.functional.mse_loss,
        torch.nn.functional.mse_loss,
        lr=0.02,
    )


def test_unet_block_overfits(rng):
    pe.manual_seed(3)
    model = unet_block(pe)
    x = rng.standard_normal((4, 2, 8, 8)).astype(np.float32)
    target = x[:, :1] * 0.5 + x[:, 1:] ** 2
    opt = pe.optim.Adam(model.parameters(), lr=1e-2)
    losses = _train(pe, model, x, target, pe.nn.functional.mse_loss, 150, opt)
    assert losses[-1] <= losses[0] / 10, (losses[0], losses[-1])


@pytest.mark.parametrize("train", [True, False])
def test_unet_block_forward_and_grads_match_pytorch(torch, rng, train):
    pe.manual_seed(4)
    model, tmodel = unet_block(pe), unet_block(torch)
    _to_torch(torch, model, tmodel)
    model.train(train)
    tmodel.train(train)
    x = rng.standard_normal((2, 2, 8, 8)).astype(np.float32)
    out = model(pe.from_numpy(x))
    tout = tmodel(torch.from_numpy(x))
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-4, atol=1e-5)
    out.sum().backward()
    tout.sum().backward()
    tparams = dict(tmodel.named_parameters())
    for k, p in model.named_parameters():
        np.testing.assert_allclose(
            p.grad.numpy(), tparams[k].grad.numpy(), rtol=1e-4, atol=1e-4, err_msg=k
        )
