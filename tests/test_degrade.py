"""Forward models of pyengine.data.degrade and the baselines of pyengine.models.baselines, each
against an independent implementation: scipy.ndimage for blur, a loop-by-loop transcription of
MATLAB's imresize (below), hand-computed cubic weights and Pillow's float resampler for the
bicubic downsampler."""

import math

import numpy as np
import pytest

from pyengine.data import degrade as D
from pyengine.models import baselines as B


@pytest.fixture
def img(rng):
    return rng.random((2, 23, 31)).astype(np.float32)


# ---------------------------------------------------------------------------- blur
@pytest.mark.parametrize(
    "kernel",
    [
        D.gaussian_kernel(1.6),
        D.gaussian_kernel(0.7, size=5),
        D.box_kernel(5),
        D.motion_kernel(9, 30),
        D.motion_kernel(6.5, 117),
        np.arange(15.0).reshape(3, 5) / 105,  # asymmetric: convolution vs correlation matters
    ],
)
def test_blur_matches_scipy(img, kernel):
    ndimage = pytest.importorskip("scipy.ndimage")
    got = D.blur(img, kernel)
    for c in range(img.shape[0]):
        ref = ndimage.convolve(img[c].astype(np.float64), kernel, mode="reflect")
        np.testing.assert_allclose(got[c], ref, atol=1e-6)


def test_kernels():
    ndimage = pytest.importorskip("scipy.ndimage")
    g = D.gaussian_kernel(1.6)
    assert g.shape == (11, 11) and abs(g.sum() - 1) < 1e-12
    delta = np.zeros((11, 11))
    delta[5, 5] = 1
    ref = ndimage.gaussian_filter(delta, 1.6, mode="constant", truncate=5 / 1.6)
    np.testing.assert_allclose(g, ref / ref.sum(), atol=1e-12)
    assert np.allclose(D.box_kernel(3), 1 / 9)
    h = D.motion_kernel(7, 0)
    assert h.shape == (7, 7) and np.allclose(h[3], 1 / 7) and h.sum() == pytest.approx(1)
    v = D.motion_kernel(5, 90)
    assert np.allclose(v[:, 2], 1 / 5) and np.allclose(np.delete(v, 2, axis=1), 0)
    d = D.motion_kernel(9, 45)
    np.testing.assert_allclose(d, d[::-1, ::-1], atol=1e-12)  # a centred segment
    np.testing.assert_allclose(d, d.T, atol=1e-12)  # 45 degrees: on the anti-diagonal
    # all of it on the anti-diagonal, over 9 / sqrt(2) = 6.4 -> 7 pixels
    assert np.fliplr(d).diagonal().sum() == pytest.approx(1)
    assert np.count_nonzero(d) == 7
    for bad in (lambda: D.gaussian_kernel(0), lambda: D.box_kernel(4), lambda: D.motion_kernel(0)):
        with pytest.raises(ValueError):
            bad()


def test_blur_noise_statistics(rng):
    x = np.full((1, 200, 200), 0.5, np.float32)
    y = D.blur_noise(x, D.gaussian_kernel(1.6), 2.0, rng)
    assert abs(y.mean() - 0.5) < 1e-3 and abs(y.std() - 2 / 255) < 2e-4


# ---------------------------------------------------------------------------- MATLAB imresize
def matlab_imresize_1d(v, out_len, scale):
    """imresize.m's contributions() + resizeAlongDim, transcribed scalar by scalar (1-based
    indices as in MATLAB), independently of pyengine's matrix form."""

    def cubic(x):
        a = abs(x)
        if a <= 1:
            return 1.5 * a**3 - 2.5 * a**2 + 1
        if a <= 2:
            return -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2
        return 0.0

    kernel_width = 4.0
    if scale < 1:
        kernel_width /= scale

        def h(x):
            return scale * cubic(scale * x)
    else:
        h = cubic
    n = len(v)
    aux = list(range(1, n + 1)) + list(range(n, 0, -1))
    out = []
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - kernel_width / 2)
        taps = [left + p for p in range(math.ceil(kernel_width) + 2)]
        w = [h(u - j) for j in taps]
        total = sum(w)
        out.append(sum(wi / total * v[aux[(j - 1) % len(aux)] - 1] for wi, j in zip(w, taps)))
    return np.array(out)


def matlab_imresize(x, scale, out_shape):
    rows = np.stack([matlab_imresize_1d(col, out_shape[0], scale) for col in x.T]).T
    return np.stack([matlab_imresize_1d(row, out_shape[1], scale) for row in rows])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_downsample_matches_transcription(rng, scale):
    x = rng.random((1, 6 * scale, 5 * scale))
    got = D.bicubic_downsample(x, scale)[0]
    ref = matlab_imresize(x[0], 1 / scale, (6, 5))
    np.testing.assert_allclose(got, ref, atol=1e-6)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upsample_matches_transcription(rng, scale):
    x = rng.random((1, 7, 4))
    got = D.bicubic_upsample(x, scale)[0]
    np.testing.assert_allclose(got, matlab_imresize(x[0], scale, (7 * scale, 4 * scale)), atol=1e-6)


def test_x2_known_weights():
    # Interior x2 weights: cubic(t/2)/2 at t = +-0.5, +-1.5, +-2.5, +-3.5, worked out by hand.
    w = np.array([-0.0234375, -0.0703125, 0.2265625, 0.8671875]) / 2
    w = np.concatenate([w, w[::-1]])
    a = D.resize_matrix(40, 20, 0.5)
    np.testing.assert_allclose(a[10, 17:25], w, atol=1e-15)
    assert np.count_nonzero(a[10]) == 8
    # Borders mirror (MATLAB's aux = [1:n n:-1:1]): output 1 is centred at input 1.5 (1-based),
    # its taps at inputs 0, -1, -2 fold back onto 1, 2, 3.
    folded = [w[3] + w[2], w[4] + w[1], w[5] + w[0], w[6], w[7]]
    np.testing.assert_allclose(a[0, :6], folded + [0], atol=1e-15)
    # x2 upsampling, no antialiasing: output 10 (1-based) sits at input 5.25, i.e. 0-based 4.25,
    # so taps 3..6 at distances 1.25, 0.25, 0.75, 1.75.
    u = D.resize_matrix(10, 20, 2.0)
    np.testing.assert_allclose(u[9, 3:7], [-0.0703125, 0.8671875, 0.2265625, -0.0234375])


def test_downsample_matches_pillow_interior(rng):
    Image = pytest.importorskip("PIL.Image")
    x = rng.random((48, 60)).astype(np.float32)
    for s in (2, 3, 4):
        pil = Image.fromarray(x, mode="F").resize((60 // s, 48 // s), Image.Resampling.BICUBIC)
        ref = np.asarray(pil, np.float64)
        got = D.bicubic_downsample(x[None], s)[0]
        b = 2 * s  # Pillow renormalises clipped windows where MATLAB mirrors: compare inside
        np.testing.assert_allclose(got[b:-b, b:-b], ref[b:-b, b:-b], atol=2e-5)


def test_resize_preserves_constants_and_errors():
    x = np.full((3, 12, 12), 0.3)
    for s in (2, 3, 4):
        np.testing.assert_allclose(D.bicubic_downsample(x, s), 0.3, atol=1e-6)
    with pytest.raises(ValueError, match="modcrop"):
        D.bicubic_downsample(np.zeros((1, 13, 12)), 2)
    with pytest.raises(ValueError, match="2, 3 or 4"):
        D.bicubic_downsample(x, 5)
    assert D.modcrop(np.zeros((1, 13, 14)), 3).shape == (1, 12, 12)


# ---------------------------------------------------------------------------- masks
def test_masks(rng):
    m = D.random_pixel_mask((20, 30), 0.5, rng)
    assert m.shape == (1, 20, 30) and m.sum() == 300
    b = D.box_mask((20, 30), 1, 5, rng)
    assert b.sum() == 600 - 25
    x = rng.random((3, 20, 30)).astype(np.float32)
    filled = B.mean_fill(x * m, m)
    keep = m[0] > 0
    np.testing.assert_array_equal(filled[:, keep], x[:, keep])
    for c in range(3):
        assert np.allclose(filled[c][~keep], x[c][keep].mean())
    with pytest.raises(ValueError):
        D.random_pixel_mask((4, 4), 1.0, rng)


def test_masks_are_deterministic_for_a_seed():
    for kind in ("random", "box", "text"):
        a, b, c = (D.inpainting_mask(kind, (48, 64), np.random.default_rng(s)) for s in (1, 1, 2))
        assert a.shape == (1, 48, 64) and a.dtype == np.float32
        assert set(np.unique(a)) <= {0.0, 1.0}
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c), kind
    r = D.inpainting_mask("random", (48, 64), np.random.default_rng(0), ratio=0.3)
    assert (r == 0).sum() == round(0.3 * 48 * 64)
    # box: the missing pixels are the union of the boxes; the default side is 1/8 of the shorter
    one = D.inpainting_mask("box", (48, 64), np.random.default_rng(0), boxes=1)
    assert (one == 0).sum() == 6 * 6
    with pytest.raises(ValueError, match="random, box or text"):
        D.inpainting_mask("stripes", (8, 8), np.random.default_rng(0))


def test_text_mask_is_pillow_bitmap_font_ink():
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default_imagefont()
    m = D.text_mask((27, 100), np.random.default_rng(4), text="pyengine", scale=1)
    ink = m[0] == 0
    rows = np.flatnonzero(ink.any(1))
    r0 = int(np.random.default_rng(4).integers(0, 16))
    assert rows.min() >= r0 and rows.max() < r0 + 16 + 11  # lines every 16 rows from r0
    ref = Image.new("L", (100, 11), 0)
    ImageDraw.Draw(ref).text((0, 0), "pyengine " * 2 + "pyengine", fill=255, font=font)
    np.testing.assert_array_equal(ink[r0 : r0 + 11], np.asarray(ref) > 0)
    # scale s: the scale-1 mask of the canvas with every pixel repeated s x s times
    for s in (2, 3):
        small = D.text_mask((20, 30), np.random.default_rng(7), scale=1)
        big = D.text_mask((20 * s, 30 * s), np.random.default_rng(7), scale=s)
        np.testing.assert_array_equal(big[0], np.kron(small[0], np.ones((s, s))))
    # cropped when the image is not a multiple of the scale: still exactly the replicated canvas
    odd = D.text_mask((41, 59), np.random.default_rng(7), scale=2)
    np.testing.assert_array_equal(odd, D.text_mask((42, 60), np.random.default_rng(7))[:, :41, :59])


def test_text_mask_missing_fraction_as_documented():
    fr = [1 - D.text_mask((256, 256), np.random.default_rng(i)).mean() for i in range(10)]
    assert 0.15 < min(fr) and max(fr) < 0.19, fr
    with pytest.raises(ValueError, match="scale"):
        D.text_mask((8, 8), np.random.default_rng(0), scale=0)
    with pytest.raises(ValueError, match="visible"):
        D.text_mask((8, 8), np.random.default_rng(0), text="  ")


# ---------------------------------------------------------------------------- Wiener
def test_wiener_inverts_reflect_blur(rng):
    x = rng.random((1, 32, 40))
    k = D.gaussian_kernel(1.0)
    y = D.blur(x, k).astype(np.float64)
    got = B.wiener_deconvolve(y, k, 0.0, nsr=1e-10)
    # Exact at the borders too: the mirrored extension turns reflect blur into circular blur.
    np.testing.assert_allclose(got, x, atol=2e-4)


def test_wiener_beats_blurred_input(rng):
    ndimage = pytest.importorskip("scipy.ndimage")
    x = ndimage.gaussian_filter(rng.random((64, 64)), 2)[None]
    x = (x - x.min()) / (x.max() - x.min())
    k = D.gaussian_kernel(1.6)
    y = D.blur_noise(x, k, 2.0, rng)
    err_in = np.mean((y - x) ** 2)
    err_out = np.mean((B.wiener_deconvolve(y, k, 2.0) - x) ** 2)
    assert err_out < 0.5 * err_in
