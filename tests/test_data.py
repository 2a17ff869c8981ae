import threading

import numpy as np
import pytest
from PIL import Image

import pyengine as pe
from pyengine.data import (
    DataLoader,
    ImageError,
    ImageFolder,
    PatchDataset,
    add_gaussian_noise,
    bundled_images,
    dihedral,
    inverse_dihedral,
    list_images,
    load_image,
    protocol_noise,
    save_image,
)


@pytest.fixture
def folder(tmp_path, rng):
    """Gray 8-bit PNG, RGB JPEG, 16-bit PNG and 16-bit TIFF, plus a non-image file."""
    g8 = rng.integers(0, 256, (30, 41), dtype=np.uint8)
    Image.fromarray(g8).save(tmp_path / "a_gray8.png")
    rgb = rng.integers(0, 256, (20, 25, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "b_rgb.jpg", quality=95)
    g16 = rng.integers(0, 65536, (17, 19), dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "c_gray16.png")
    Image.fromarray(g16).save(tmp_path / "d_gray16.tif")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path, g8, rgb, g16


def test_load_formats_and_bit_depths(folder):
    root, g8, rgb, g16 = folder
    assert [p.name for p in list_images(root)] == [
        "a_gray8.png",
        "b_rgb.jpg",
        "c_gray16.png",
        "d_gray16.tif",
    ]
    a = load_image(root / "a_gray8.png")
    assert a.shape == (1, 30, 41) and a.dtype == np.float32
    np.testing.assert_array_equal(a[0], g8 / np.float32(255))
    b = load_image(root / "b_rgb.jpg")
    assert b.shape == (3, 20, 25)
    decoded = np.asarray(Image.open(root / "b_rgb.jpg"))  # JPEG is lossy: compare to Pillow's
    np.testing.assert_array_equal(b.transpose(1, 2, 0), decoded / np.float32(255))
    for name in ("c_gray16.png", "d_gray16.tif"):
        c = load_image(root / name)
        assert c.shape == (1, 17, 19)
        np.testing.assert_allclose(c[0], g16 / 65535.0, atol=1e-7)
    gray = load_image(root / "b_rgb.jpg", channels=1)
    assert gray.shape == (1, 20, 25)
    np.testing.assert_allclose(gray[0], np.tensordot([0.299, 0.587, 0.114], b, 1), atol=1e-6)
    assert load_image(root / "a_gray8.png", channels=3).shape == (3, 30, 41)


def test_save_roundtrip(tmp_path, rng):
    x = rng.random((1, 9, 11)).astype(np.float32)
    save_image(tmp_path / "x.png", x)
    y = load_image(tmp_path / "x.png")
    np.testing.assert_allclose(y, np.round(x * 255) / 255, atol=1e-7)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # no temp file left behind


def test_bad_images(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageError, match="cannot read image"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageError, match="no images in"):
        ImageFolder(empty)
    with pytest.raises(ImageError, match="not a folder"):
        ImageFolder(tmp_path / "nope")


def test_bundled_images_load_offline():
    train, val = bundled_images("train"), bundled_images("val", size=64)
    assert len(train) >= 8 and len(val) == 2
    assert not set(train.names()) & set(val.names())
    for a in train.load_all() + val.load_all():
        assert a.ndim == 3 and a.shape[0] == 1 and a.dtype == np.float32
        assert 0.0 <= a.min() and a.max() <= 1.0 and a.std() > 0.02
    assert all(a.shape == (1, 64, 64) for a in val.load_all())
    assert bundled_images("val", channels=3)[0].shape[0] == 3


def test_dihedral_group():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    outs = [dihedral(x, m) for m in range(8)]
    # eight distinct symmetries (a bijection onto the dihedral group D4), each invertible
    assert len({o.tobytes() + bytes(o.shape) for o in outs}) == 8
    for m, o in enumerate(outs):
        np.testing.assert_array_equal(inverse_dihedral(o, m), x)
    # the modes of DnCNN's data_augmentation()
    np.testing.assert_array_equal(outs[1], x[:, ::-1])
    np.testing.assert_array_equal(outs[2], np.rot90(x, 1, (1, 2)))
    np.testing.assert_array_equal(outs[7], np.flip(np.rot90(x, 3, (1, 2)), 1))
    # closure: composing two symmetries gives one of the eight
    sq = np.arange(16.0).reshape(1, 4, 4)
    group = {dihedral(sq, m).tobytes() for m in range(8)}
    for a in range(8):
        for b in range(8):
            assert dihedral(dihedral(sq, a), b).tobytes() in group
    with pytest.raises(ValueError):
        dihedral(x, 8)


def test_noise_statistics():
    clean = np.full((1, 200, 200), 0.5, np.float32)
    noisy = add_gaussian_noise(clean, 25.0, np.random.default_rng(0))
    n = (noisy - clean).ravel()
    assert noisy.dtype == np.float32
    assert abs(n.mean()) < 3 * (25 / 255) / 200
    assert abs(n.std() / (25 / 255) - 1) < 0.01
    assert np.array_equal(add_gaussian_noise(clean, 0.0, np.random.default_rng(0)), clean)
    with pytest.raises(ValueError, match=">= 0"):
        add_gaussian_noise(clean, -1.0, np.random.default_rng(0))


def test_protocol_noise_matches_reference_script():
    clean = np.random.default_rng(3).random((2, 8, 9)).astype(np.float32)
    state = np.random.RandomState(0)
    got = [protocol_noise(c, 25, state) for c in clean]
    np.random.seed(0)
    ref = [(c + np.random.normal(0, 25 / 255, c.shape)).astype(np.float32) for c in clean]
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)


def _images(rng):
    return [rng.random((1, 50, 60)).astype(np.float32), rng.random((1, 45, 45)).astype(np.float32)]


def test_patch_dataset_shapes_and_seeding(rng):
    ims = _images(rng)
    ds = PatchDataset(ims, patch=16, length=10, sigma=25, seed=3)
    noisy, clean = ds[4]
    assert noisy.shape == clean.shape == (1, 16, 16) and noisy.dtype == np.float32
    again = PatchDataset(ims, patch=16, length=10, sigma=25, seed=3)
    np.testing.assert_array_equal(again[4][0], noisy)
    ds.set_epoch(1)
    assert not np.array_equal(ds[4][0], noisy)
    # each clean patch is a dihedral image of a window of a source image
    found = False
    for img in ims:
        for m in range(8):
            win = inverse_dihedral(clean, m)[0]
            h, w = img.shape[1:]
            for i in range(h - 15):
                for j in range(w - 15):
                    if np.array_equal(img[0, i : i + 16, j : j + 16], win):
                        found = True
    assert found


def test_blind_noise_varies_per_patch(rng):
    ds = PatchDataset(
        [np.full((1, 64, 64), 0.5, np.float32)], patch=32, length=40, sigma_range=(0, 55), seed=0
    )
    stds = np.array([(n - c).std() * 255 for n, c in (ds[i] for i in range(40))])
    assert stds.min() < 15 and stds.max() > 40 and stds.max() < 57


def test_patch_dataset_bad_input(rng):
    with pytest.raises(ValueError, match="larger than an image of 45x45"):
        PatchDataset(_images(rng), patch=48)
    with pytest.raises(ValueError, match=">= 0"):
        PatchDataset(_images(rng), patch=8, sigma=-5)
    with pytest.raises(ValueError, match="sigma range"):
        PatchDataset(_images(rng), patch=8, sigma_range=(30, 10))


@pytest.mark.parametrize("workers", [0, 3])
def test_loader_batches_shuffle_and_reproducibility(workers):
    data = [np.full((2,), i, np.float32) for i in range(10)]
    dl = DataLoader(data, batch_size=4, shuffle=True, seed=7, num_workers=workers)
    assert len(dl) == 3
    e0 = [b.numpy()[:, 0].astype(int).tolist() for b in dl]
    e1 = [b.numpy()[:, 0].astype(int).tolist() for b in dl]
    assert [len(b) for b in e0] == [4, 4, 2]
    assert sorted(sum(e0, [])) == list(range(10)) and e0 != e1
    dl2 = DataLoader(data, batch_size=4, shuffle=True, seed=7, num_workers=workers)
    dl2.set_epoch(1)
    assert [b.numpy()[:, 0].astype(int).tolist() for b in dl2] == e1
    assert isinstance(next(iter(dl2)), pe.Tensor)
    dl3 = DataLoader(data, batch_size=4, drop_last=True)
    assert len(dl3) == 2 and len(list(dl3)) == 2


def test_loader_threads_match_serial_and_run_in_background(rng):
    ds = PatchDataset(_images(rng), patch=8, length=24, sigma=25, seed=1)
    serial = [(n.numpy(), c.numpy()) for n, c in DataLoader(ds, 4, num_workers=0)]
    seen = set()

    class Spy:
        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            seen.add(threading.current_thread().name)
            return ds[i]

    threaded = [(n.numpy(), c.numpy()) for n, c in DataLoader(Spy(), 4, num_workers=2)]
    assert len(serial) == len(threaded) == 6
    for (a, b), (c, d) in zip(serial, threaded):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    assert all(name.startswith("pyengine-data") for name in seen)


def test_loader_abandoned_iteration_and_errors():
    dl = DataLoader(list(range(100)), batch_size=2, num_workers=2)
    it = iter(dl)
    next(it)
    it.close()  # stops the worker pool without hanging
    with pytest.raises(ValueError):
        DataLoader([1], batch_size=0)

    class Boom:
        def __len__(self):
            return 4

        def __getitem__(self, i):
            raise RuntimeError("broken sample")

    with pytest.raises(RuntimeError, match="broken sample"):
        list(DataLoader(Boom(), 2, num_workers=2))
