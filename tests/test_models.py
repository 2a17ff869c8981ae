import time

import numpy as np
import pytest
from shared_data import shared

import pyengine as pe
import pyengine.nn.functional as F
from pyengine import nn
from pyengine.data import ImageFolder
from pyengine.models import DnCNN, UNet, denoise_array
from pyengine.nn.utils import fuse_conv_bn, fuse_conv_bn_sequential


def _x(rng, *shape):
    return pe.tensor(rng.standard_normal(shape).astype(np.float32))


def _np(t):
    return t.detach().cpu().numpy()


# ------------------------------------------------------------------------------ shapes


def test_dncnn_layout_and_odd_sizes(rng):
    m = DnCNN(depth=5, channels=8)
    kinds = [type(layer).__name__ for layer in m.layers]
    assert kinds == ["Conv2d", "ReLU"] + ["Conv2d", "BatchNorm2d", "ReLU"] * 3 + ["Conv2d"]
    for shape in [(1, 1, 13, 17), (2, 1, 1, 1), (3, 1, 8, 5)]:
        x = _x(rng, *shape)
        assert m(x).shape == shape and m.denoise(x).shape == shape
    assert DnCNN(image_channels=3, depth=3, channels=4)(_x(rng, 1, 3, 7, 9)).shape == (1, 3, 7, 9)
    # parameter counts of the paper's DnCNN-S (see shared/data/README.md)
    assert DnCNN().num_parameters() == 556_097
    assert DnCNN(bn=False).num_parameters() == 555_137
    assert DnCNN(depth=20, bn=False).num_parameters() == 665_921
    with pytest.raises(ValueError):
        DnCNN(depth=1)


@pytest.mark.parametrize("up", ["transpose", "upsample"])
def test_unet_any_size(rng, up):
    m = UNet(1, 2, depth=3, base=4, up=up)
    assert m(_x(rng, 2, 1, 19, 23)).shape == (2, 2, 19, 23)
    m.eval()  # (in training, BatchNorm needs more than one value per channel, as in PyTorch)
    for shape in [(1, 1, 19, 23), (2, 1, 8, 8), (1, 1, 5, 3), (1, 1, 1, 1)]:
        y = m(_x(rng, *shape))
        assert y.shape == (shape[0], 2) + shape[2:]
    with pytest.raises(ValueError, match="up must be"):
        UNet(up="nearest")


# ------------------------------------------------------------------------------ training


def test_overfit_tiny_batch(rng):
    pe.manual_seed(0)
    m = DnCNN(depth=4, channels=8)
    noisy = pe.tensor(rng.random((2, 1, 12, 12)).astype(np.float32))
    target = pe.tensor(rng.standard_normal((2, 1, 12, 12)).astype(np.float32))
    opt = pe.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = F.mse_loss(m(noisy), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_unet_overfit_tiny_batch(rng):
    pe.manual_seed(0)
    m = UNet(1, 1, depth=2, base=4)
    x = pe.tensor(rng.random((2, 1, 12, 12)).astype(np.float32))
    y = pe.tensor(rng.random((2, 1, 12, 12)).astype(np.float32))
    opt = pe.optim.Adam(m.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = F.mse_loss(m(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first


# ------------------------------------------------------------------------------ vs PyTorch


def _torch_twin(torch, model):
    """The same architecture in torch.nn, with our weights."""
    tnn = torch.nn

    def conv(m):
        return tnn.Conv2d(
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            m.stride,
            m.padding,
            bias=m.bias is not None,
        )

    def convert(m):
        if isinstance(m, nn.Sequential):
            return tnn.Sequential(*[convert(c) for c in m])
        if isinstance(m, nn.ModuleList):
            return tnn.ModuleList([convert(c) for c in m])
        if isinstance(m, nn.Conv2d):
            return conv(m)
        if isinstance(m, nn.ConvTranspose2d):
            return tnn.ConvTranspose2d(
                m.in_channels, m.out_channels, m.kernel_size, m.stride, bias=m.bias is not None
            )
        if isinstance(m, nn.BatchNorm2d):
            return tnn.BatchNorm2d(m.num_features, eps=m.eps)
        if isinstance(m, nn.ReLU):
            return tnn.ReLU()
        if isinstance(m, nn.MaxPool2d):
            return tnn.MaxPool2d(2)
        if isinstance(m, nn.Upsample):
            return tnn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        raise TypeError(type(m).__name__)

    class Twin(tnn.Module):
        def __init__(self):
            super().__init__()
            for name, child in model.named_children():
                setattr(self, name, convert(child))

        def forward(self, x):
            if isinstance(model, DnCNN):
                return self.layers(x)
            h, w = x.shape[-2:]
            m = 2**model.depth
            x = torch.nn.functional.pad(x, (0, -w % m, 0, -h % m))
            skips = []
            for i, block in enumerate(self.down):
                x = block(x if i == 0 else self.pool(x))
                skips.append(x)
            x = skips.pop()
            for up, dec in zip(self.up, self.dec):
                x = dec(torch.cat([skips.pop(), up(x)], 1))
            return self.head(x)[:, :, :h, :w]

    twin = Twin().double()
    state = {
        k: torch.from_numpy(_np(v).astype(np.float64) if _np(v).dtype.kind == "f" else _np(v))
        for k, v in model.state_dict().items()
    }
    twin.load_state_dict(state, strict=True)
    return twin


@pe.no_grad()
def _random_stats(model, rng):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            k = m.num_features
            m.load_state_dict(
                {
                    "weight": rng.uniform(0.5, 1.5, k),
                    "bias": rng.normal(0, 0.1, k),
                    "running_mean": rng.normal(0, 0.1, k),
                    "running_var": rng.uniform(0.5, 2, k),
                    "num_batches_tracked": np.array(0),
                }
            )
    for p in model.parameters():  # a non-zero last layer, so every gradient is non-trivial
        if p.ndim == 4 and not np.any(_np(p)):
            p.copy_(pe.tensor(rng.normal(0, 0.1, p.shape).astype(np.float32)))


@pytest.mark.parametrize("arch", ["dncnn", "unet-transpose", "unet-upsample"])
@pytest.mark.parametrize("training", [True, False])
def test_same_output_and_gradients_as_torch(torch, rng, arch, training):
    pe.manual_seed(1)
    if arch == "dncnn":
        model = DnCNN(depth=4, channels=6)
    else:
        model = UNet(1, 1, depth=2, base=4, up=arch.split("-")[1])
    _random_stats(model, rng)
    twin = _torch_twin(torch, model)
    model.train(training)
    twin.train(training)
    xa = rng.random((2, 1, 11, 14)).astype(np.float32)
    ga = rng.standard_normal((2, 1, 11, 14)).astype(np.float32)
    x = pe.tensor(xa, requires_grad=True)
    y = model(x)
    (y * pe.tensor(ga)).sum().backward()
    xt = torch.tensor(xa, dtype=torch.float64, requires_grad=True)
    yt = twin(xt)
    (yt * torch.from_numpy(ga).double()).sum().backward()
    tol = dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_np(y), yt.detach().numpy(), **tol)
    np.testing.assert_allclose(_np(x.grad), xt.grad.numpy(), **tol)
    tparams = dict(twin.named_parameters())
    for name, p in model.named_parameters():
        scale = max(1.0, float(np.abs(tparams[name].grad.numpy()).max()))
        np.testing.assert_allclose(
            _np(p.grad), tparams[name].grad.numpy(), rtol=1e-4, atol=1e-4 * scale, err_msg=name
        )
    if training:  # running statistics updated the same way
        tbufs = dict(twin.named_buffers())
        for name, b in model.named_buffers():
            np.testing.assert_allclose(_np(b), tbufs[name].numpy(), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ BN folding


def test_fuse_conv_bn_pair(rng):
    conv, bn = nn.Conv2d(3, 5, 3, padding=1, bias=True), nn.BatchNorm2d(5, eps=1e-3)
    _random_stats(nn.Sequential(conv, bn), rng)
    bn.eval()
    x = _x(rng, 2, 3, 9, 7)
    fused = fuse_conv_bn(conv, bn)
    np.testing.assert_allclose(_np(fused(x)), _np(bn(conv(x))), atol=1e-5)
    with pytest.raises(ValueError, match="features"):
        fuse_conv_bn(conv, nn.BatchNorm2d(4))


@pytest.mark.parametrize("arch", ["dncnn", "unet"])
def test_model_fuse_is_identical_in_eval(rng, arch):
    pe.manual_seed(2)
    model = DnCNN(depth=6, channels=8) if arch == "dncnn" else UNet(1, 1, depth=2, base=4)
    _random_stats(model, rng)
    model.eval()
    x = pe.tensor(rng.random((1, 1, 20, 18)).astype(np.float32))
    ref = _np(model(x))
    n_before = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert n_before > 0
    model.fuse()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    np.testing.assert_allclose(_np(model(x)), ref, atol=1e-5)
    # a fused model has exactly the layout of the BN-free architecture
    cfg = model.config()
    other = DnCNN(**cfg) if arch == "dncnn" else UNet(**cfg)
    other.load_state_dict(model.state_dict())


def test_fuse_sequential_keeps_unpaired_layers():
    seq = nn.Sequential(
        nn.BatchNorm2d(2), nn.Conv2d(2, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)
    )
    fuse_conv_bn_sequential(seq)
    assert [type(m).__name__ for m in seq] == ["BatchNorm2d", "Conv2d", "ReLU", "Conv2d"]


# ------------------------------------------------------------------------------ pretrained


def test_golden_forward_pretrained_dncnn():
    g = np.load(shared("weights", "dncnn_s25_golden.npz"))
    x = pe.tensor(g["input"][None, None])
    for name in ("dncnn_s25.npz", "dncnn_s25_merged.npz"):
        model = DnCNN.from_npz(shared("weights", name))
        residual = _np(model(x))[0, 0]
        np.testing.assert_allclose(residual, g["residual"], atol=1e-5, rtol=0, err_msg=name)
        np.testing.assert_allclose(g["input"] - residual, g["output"], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(_np(model.denoise(x))[0, 0], g["input"] - residual)


def test_from_npz_builds_the_matching_architecture():
    m = DnCNN.from_npz(shared("weights", "dncnn_s25.npz"))
    assert m.config() == {"depth": 17, "channels": 64, "image_channels": 1, "bn": True}
    assert m.num_parameters() == 556_097 and not m.training
    assert all(b.eps == pytest.approx(1e-5) for b in m.modules() if isinstance(b, nn.BatchNorm2d))
    blind = DnCNN.from_npz(shared("weights", "dncnn_b_gray_blind.npz"))
    assert blind.config()["depth"] == 20 and not blind.bn
    assert blind.num_parameters() == 665_921


def test_fuse_pretrained_matches_authors_merged_release():
    g = np.load(shared("weights", "dncnn_s25_golden.npz"))
    x = pe.tensor(g["input"][None, None])
    explicit = DnCNN.from_npz(shared("weights", "dncnn_s25.npz"))
    ref = _np(explicit(x))
    fused = DnCNN.from_npz(shared("weights", "dncnn_s25.npz")).fuse()
    merged = DnCNN.from_npz(shared("weights", "dncnn_s25_merged.npz"))
    np.testing.assert_allclose(_np(fused(x)), ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(_np(fused(x)), _np(merged(x)), atol=1e-5, rtol=0)
    ours, theirs = fused.state_dict(), merged.state_dict()
    assert ours.keys() == theirs.keys()
    for k in ours:
        np.testing.assert_allclose(_np(ours[k]), _np(theirs[k]), rtol=1e-4, atol=1e-6, err_msg=k)


def test_from_npz_rejects_other_files(tmp_path):
    np.savez(tmp_path / "other.npz", w=np.zeros(3))
    with pytest.raises(ValueError, match="not a DnCNN weight file"):
        DnCNN.from_npz(tmp_path / "other.npz")
    src = shared("weights", "dncnn_s15.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(src[: len(src) // 2])
    with pytest.raises(ValueError):
        DnCNN.from_npz(tmp_path / "cut.npz")


def test_tiled_inference_is_exact_for_dncnn(rng):
    pe.manual_seed(3)
    model = DnCNN(depth=5, channels=4)
    _random_stats(model, rng)
    model.eval()
    img = rng.random((1, 45, 37)).astype(np.float32)
    whole = denoise_array(model, img, tile=0)
    tiled = denoise_array(model, img, tile=16)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    u = UNet(1, 1, depth=2, base=4, residual=True).eval()
    assert denoise_array(u, img, tile=16).shape == img.shape


@pytest.mark.slow
def test_set12_sigma25_psnr_matches_reference():
    """README: mean PSNR 30.451 dB on Set12 at sigma 25 with dncnn_s25.npz (PyTorch reference)."""
    from pyengine.cli.restore import evaluate_set

    model = DnCNN.from_npz(shared("weights", "dncnn_s25.npz"))
    t0 = time.perf_counter()
    rows = evaluate_set(model, ImageFolder(shared("testsets", "Set12")), 25.0, tile=0)
    mean_noisy = np.mean([r[1] for r in rows])
    mean = np.mean([r[2] for r in rows])
    dt = time.perf_counter() - t0
    print(f"Set12 sigma 25: {mean:.4f} dB (noisy {mean_noisy:.3f}) in {dt:.0f} s")
    assert mean_noisy == pytest.approx(20.348, abs=1e-3)
    assert mean == pytest.approx(30.451, abs=0.01)
