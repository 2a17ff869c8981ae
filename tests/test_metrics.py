import numpy as np
import pytest
from shared_data import shared
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import pyengine as pe
from pyengine.data import load_image
from pyengine.metrics import mse, psnr, ssim


def _real_pairs():
    set12 = shared("testsets", "Set12")
    rng = np.random.default_rng(0)
    for name in ("01.png", "05.png", "09.png"):
        clean = load_image(set12 / name)[0].astype(np.float64)
        noisy = np.clip(clean + rng.normal(0, 25 / 255, clean.shape), 0, 1)
        yield clean, noisy


def test_psnr_matches_skimage_on_real_images():
    for clean, noisy in _real_pairs():
        assert psnr(noisy, clean) == pytest.approx(
            peak_signal_noise_ratio(clean, noisy, data_range=1.0), abs=1e-10
        )
        assert psnr(noisy * 255, clean * 255, data_range=255) == pytest.approx(
            peak_signal_noise_ratio(clean * 255, noisy * 255, data_range=255), abs=1e-10
        )


@pytest.mark.parametrize("gaussian", [False, True])
def test_ssim_matches_skimage_on_real_images(gaussian):
    for clean, noisy in _real_pairs():
        ref = structural_similarity(clean, noisy, data_range=1.0, gaussian_weights=gaussian)
        assert ssim(noisy, clean, gaussian_weights=gaussian) == pytest.approx(ref, abs=1e-9)


def test_ssim_channels_and_odd_shapes(rng):
    a = rng.random((3, 23, 30))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    ref = structural_similarity(a, b, data_range=1.0, channel_axis=0)
    assert ssim(b, a, channel_axis=0) == pytest.approx(ref, abs=1e-12)
    ref = structural_similarity(a[0], b[0], data_range=2.0, win_size=5)
    assert ssim(b[0], a[0], data_range=2.0, win_size=5) == pytest.approx(ref, abs=1e-12)


def test_edge_cases_and_tensors(rng):
    x = rng.random((1, 1, 16, 16)).astype(np.float32)
    t = pe.tensor(x)
    assert psnr(t, t) == float("inf")
    assert ssim(x[0, 0], x[0, 0]) == pytest.approx(1.0)
    assert mse(t, x * 0) == pytest.approx(float(np.mean(x.astype(np.float64) ** 2)))
    assert psnr(np.zeros(4), np.full(4, 0.1)) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="shape"):
        psnr(x, x[0])
    with pytest.raises(ValueError, match="win_size"):
        ssim(np.zeros((5, 5)), np.zeros((5, 5)))
    with pytest.raises(ValueError, match="odd"):
        ssim(x[0, 0], x[0, 0], win_size=4)
    with pytest.raises(ValueError, match="data_range"):
        psnr(x, x, data_range=0)
