import json
import os

import numpy as np
import pytest
from PIL import Image
from pyrun import run_python
from shared_data import shared

import pyengine as pe
from pyengine.cli import main

TINY = [
    "--depth",
    "3",
    "--channels",
    "4",
    "--patch",
    "16",
    "--batch",
    "4",
    "--steps",
    "3",
    "--workers",
    "1",
    "--seed",
    "5",
]


@pytest.fixture
def images(tmp_path, rng):
    d = tmp_path / "imgs"
    d.mkdir()
    yy, xx = np.mgrid[:40, :48]
    for i in range(3):
        smooth = 0.5 + 0.4 * np.sin(xx / (5 + i)) * np.cos(yy / 7)
        Image.fromarray(np.uint8(np.clip(smooth, 0, 1) * 255)).save(d / f"im{i}.png")
    return d


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_user_error(capsys, argv, match, absent=()):
    code, out, err = _run(capsys, *argv)
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and match in lines[0], err
    assert "Traceback" not in err
    for path in absent:
        assert not os.path.exists(path), f"{path} was left behind"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny DnCNN trained for 2 epochs, and one trained 1 epoch then resumed to 2."""
    root = tmp_path_factory.mktemp("runs")
    full, part = root / "full", root / "part"
    assert main(["train", "dncnn", *TINY, "--epochs", "2", "--out", str(full)]) == 0
    assert main(["train", "dncnn", *TINY, "--epochs", "1", "--out", str(part)]) == 0
    first = json.loads(pe.load(part / "checkpoint.npz")["history"])
    assert main(["train", "dncnn", "--epochs", "2", "--out", str(part), "--resume"]) == 0
    return full, part, first


def test_train_writes_run_folder(trained):
    full, _, _ = trained
    names = sorted(p.name for p in full.iterdir())
    assert names == ["checkpoint.npz", "comparison.png", "curves.png", "history.json"]
    ckpt = pe.load(full / "checkpoint.npz")
    assert ckpt["epoch"] == 2 and ckpt["arch"] == "dncnn"
    assert set(ckpt) >= {"model", "optimizer", "scheduler", "rng", "history", "config"}
    hist = json.loads((full / "history.json").read_text())
    assert len(hist["loss"]) == 6 and len(hist["val_psnr"]) == 2
    assert Image.open(full / "curves.png").size[0] > 100


def test_resume_continues_with_identical_losses(trained):
    full, part, first = trained
    a = json.loads((full / "history.json").read_text())
    b = json.loads((part / "history.json").read_text())
    assert len(first["loss"]) == 3
    assert b["loss"][:3] == first["loss"]
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-6, atol=0)
    np.testing.assert_allclose(b["val_psnr"], a["val_psnr"], rtol=1e-6)
    ma, mb = pe.load(full / "checkpoint.npz")["model"], pe.load(part / "checkpoint.npz")["model"]
    for k in ma:
        np.testing.assert_allclose(mb[k].numpy(), ma[k].numpy(), rtol=1e-5, atol=1e-7)


def test_denoise_and_eval_with_checkpoint(trained, images, tmp_path, capsys):
    full, _, _ = trained
    out = tmp_path / "den"
    code, stdout, _ = _run(
        capsys,
        "denoise",
        images / "im0.png",
        images / "im1.png",
        "--model",
        full / "checkpoint.npz",
        "--sigma",
        "25",
        "--out",
        out,
        "--tile",
        "24",
    )
    assert code == 0 and stdout.count("PSNR noisy") == 2
    assert sorted(p.name for p in out.iterdir()) == [
        "im0_denoised.png",
        "im0_noisy.png",
        "im1_denoised.png",
        "im1_noisy.png",
    ]
    assert Image.open(out / "im0_denoised.png").size == (48, 40)
    code, stdout, _ = _run(
        capsys,
        "denoise",
        out / "im0_noisy.png",
        "--model",
        full / "checkpoint.npz",
        "--clean",
        images / "im0.png",
        "--out",
        out,
    )
    assert code == 0 and "PSNR" in stdout
    code, stdout, _ = _run(
        capsys, "eval", "--model", full / "checkpoint.npz", "--set", images, "--sigma", "15"
    )
    assert code == 0
    lines = stdout.strip().splitlines()
    assert lines[-1].startswith("mean") and sum(".png" in ln for ln in lines) == 3


def test_eval_pretrained_npz_protocol(capsys, tmp_path):
    """The noise protocol and the pretrained network on Set12's first image, against the
    PyTorch reference run."""
    one = tmp_path / "one"
    one.mkdir()
    (one / "01.png").write_bytes(shared("testsets", "Set12", "01.png").read_bytes())
    code, stdout, _ = _run(
        capsys,
        "eval",
        "--model",
        shared("weights", "dncnn_s25.npz"),
        "--set",
        one,
        "--sigma",
        "25",
        "--tile",
        "0",
    )
    assert code == 0
    name, noisy, denoised, _ = stdout.strip().splitlines()[-2].split()
    # dncnn_reference_results.txt: "01.png  256x256  20.624  30.213"
    assert name == "01.png"
    assert float(noisy) == pytest.approx(20.624, abs=1.5e-3)
    assert float(denoised) == pytest.approx(30.213, abs=1.5e-3)


def test_dip_runs(images, tmp_path, capsys):
    out = tmp_path / "dip"
    code, stdout, _ = _run(
        capsys,
        "dip",
        images / "im0.png",
        "--iters",
        "4",
        "--log-every",
        "2",
        "--depth",
        "2",
        "--channels",
        "4",
        "--code",
        "4",
        "--crop",
        "24",
        "--out",
        out,
    )
    assert code == 0 and "PSNR" in stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "im0_comparison.png",
        "im0_dip.png",
        "im0_dip_psnr.json",
        "im0_dip_psnr.png",
        "im0_noisy.png",
    ]


def test_bad_inputs(images, tmp_path, capsys, trained):
    full, _, _ = trained
    out = tmp_path / "out"
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    empty = tmp_path / "empty"
    empty.mkdir()
    model = full / "checkpoint.npz"
    _assert_user_error(
        capsys, ["denoise", corrupt, "--model", model, "--out", out], "cannot read image", [out]
    )
    _assert_user_error(
        capsys,
        ["denoise", images / "nope.png", "--model", model, "--out", out],
        "does not exist",
        [out],
    )
    _assert_user_error(
        capsys, ["train", "dncnn", *TINY, "--data", empty, "--out", out], "no images in", [out]
    )
    _assert_user_error(
        capsys,
        ["train", "dncnn", *TINY, "--patch", "64", "--data", images, "--out", out],
        "larger than an image",
        [out],
    )
    _assert_user_error(
        capsys,
        ["denoise", images / "im0.png", "--model", model, "--sigma", "-5", "--out", out],
        "sigma must be >= 0",
        [out],
    )
    _assert_user_error(
        capsys,
        ["train", "dncnn", *TINY, "--sigma", "-1", "--out", out],
        "sigma must be >= 0",
        [out],
    )
    _assert_user_error(capsys, ["eval", "--model", model, "--set", empty], "no images in")
    if not pe.cuda.is_available():
        _assert_user_error(
            capsys, ["train", "dncnn", *TINY, "--device", "cuda", "--out", out], "CUDA", [out]
        )
    # truncated checkpoint, a non-model file, and a checkpoint of another architecture
    cut = tmp_path / "cut.npz"
    cut.write_bytes(model.read_bytes()[:2000])
    _assert_user_error(
        capsys, ["denoise", images / "im0.png", "--model", cut, "--out", out], "cut.npz", [out]
    )
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    _assert_user_error(
        capsys, ["denoise", images / "im0.png", "--model", other, "--out", out], "other.npz", [out]
    )
    _assert_user_error(capsys, ["train", "unet", "--out", full, "--resume"], "not a unet")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    ckpt = pe.load(model)
    ckpt["config"] = json.dumps({**json.loads(ckpt["config"]), "channels": 8})
    pe.save(ckpt, wrong / "checkpoint.npz")
    _assert_user_error(
        capsys,
        ["denoise", images / "im0.png", "--model", wrong / "checkpoint.npz", "--out", out],
        "does not match",
        [out],
    )
    _assert_user_error(
        capsys, ["train", "dncnn", *TINY, "--out", full], "already holds a checkpoint"
    )


def test_console_entry_point_exits_cleanly(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("no image")
    r = run_python(
        ["-m", "pyengine", "denoise", str(bad), "--model", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
