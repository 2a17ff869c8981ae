"""The deblurring / super-resolution / DIP commands end to end on tiny settings: training writes
a checkpoint, curves and a comparison; the apply commands and `eval` report the method beside
its baseline; colour/grey mismatches are one-line user errors."""

import json

import numpy as np
import pytest
from PIL import Image

import pyengine as pe
from pyengine.cli import main

TINY = ["--epochs", "1", "--steps", "2", "--batch", "2", "--channels", "4", "--workers", "1"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    yy, xx = np.mgrid[:48, :60]
    for i in range(2):
        smooth = 0.5 + 0.4 * np.sin(xx / (4 + i)) * np.cos(yy / 6)
        Image.fromarray(np.uint8(np.clip(smooth, 0, 1) * 255)).save(d / f"im{i}.png")
    rgb = np.stack([xx / 60, yy / 48, 0.5 + 0 * xx], -1)
    Image.fromarray(np.uint8(rgb * 255)).save(d.parent / "colour.png")
    return d


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(images, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    common = ["--data", images, "--val", images, *TINY]
    runs = {
        "sr": ["train", "sr", "--depth", "3", "--patch", "24", "--out", root / "sr"],
        "subpixel": [
            "train", "sr", "--arch", "subpixel", "--scale", "3", "--depth", "3", "--patch", "24",
            "--out", root / "subpixel",
        ],
        "deblur": [
            "train", "deblur", "--depth", "1", "--patch", "16", "--kernel", "motion",
            "--motion-length", "5", "--out", root / "deblur",
        ],
    }  # fmt: skip
    for name, argv in runs.items():
        assert main([str(a) for a in argv + common]) == 0, name
    return root


def test_training_outputs(trained):
    for name, arch in (("sr", "vdsr"), ("subpixel", "subpixel"), ("deblur", "msdeblur")):
        run = trained / name
        assert {"checkpoint.npz", "history.json", "curves.png", "comparison.png"} <= {
            p.name for p in run.iterdir()
        }
        ckpt = pe.load(run / "checkpoint.npz")
        assert ckpt["arch"] == arch
        hist = json.loads((run / "history.json").read_text())
        assert len(hist["loss"]) == 2 and len(hist["val_psnr"]) == 1
        assert np.isfinite(hist["baseline_psnr"])


def test_apply_and_eval(trained, images, tmp_path, capsys):
    for name, model in (("sr", "sr"), ("sr", "subpixel"), ("deblur", "deblur")):
        out = tmp_path / model
        ckpt = trained / model / "checkpoint.npz"
        code, stdout, _ = _run(capsys, name, images / "im0.png", "--model", ckpt, "--out", out)
        assert code == 0 and "PSNR" in stdout, stdout
        assert (out / "im0_comparison.png").is_file() and (out / f"im0_{name}.png").is_file()
        code, stdout, _ = _run(capsys, "eval", "--model", ckpt, "--set", images)
        assert code == 0
        base = "Wiener" if name == "deblur" else "bicubic"
        assert base in stdout and "mean" in stdout
    # the sub-pixel model was trained for x3: its output is 3 times the (cropped) input
    sr = np.asarray(Image.open(tmp_path / "subpixel" / "im0_sr.png"))
    assert sr.shape == (48, 60)
    code, stdout, _ = _run(
        capsys, "sr", images / "im1.png", "--observed", "--scale", "4", "--out", tmp_path / "b"
    )
    assert code == 0 and "baseline only" in stdout
    assert np.asarray(Image.open(tmp_path / "b" / "im1_sr.png")).shape == (192, 240)


def test_user_errors(trained, images, tmp_path, capsys):
    colour = images.parent / "colour.png"
    ckpt = trained / "sr" / "checkpoint.npz"
    for argv, match in (
        (["sr", colour, "--model", ckpt], "colour image"),
        (["sr", images / "im0.png", "--model", ckpt, "--scale", "3"], "trained for x2"),
        (["deblur", images / "im0.png", "--model", ckpt], "not a deblur model"),
        (["train", "sr", "--patch", "25", "--data", images, "--out", tmp_path / "x"], "multiple"),
        (["train", "deblur", "--sigma", "-1", "--out", tmp_path / "x"], "sigma must be >= 0"),
        (["train", "sr", "--rgb", "--channels-in", "1", "--out", tmp_path / "x"], "--rgb means"),
    ):
        code, _, err = _run(capsys, *argv)
        assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_grey_denoiser_takes_colour_per_channel(images, tmp_path, capsys):
    from pyengine.models import DnCNN

    model = DnCNN(depth=3, channels=4)
    path = tmp_path / "dncnn.npz"
    pe.save(
        {
            "format": "pyengine-restore-1",
            "arch": "dncnn",
            "config": json.dumps(model.config()),
            "model": model.state_dict(),
        },
        path,
    )
    colour = images.parent / "colour.png"
    code, _, err = _run(capsys, "denoise", colour, "--model", path, "--out", tmp_path / "d")
    # A grey model denoises each channel of a colour image and says so (issue 14's choice).
    assert code == 0 and "each of its channels denoised separately" in err
    code, stdout, _ = _run(
        capsys, "denoise", images / "im0.png", "--model", path, "--out", tmp_path / "d"
    )
    assert code == 0


@pytest.mark.parametrize("task,baseline", [("inpaint", "mean fill"), ("sr", "bicubic")])
def test_dip_tasks(images, tmp_path, capsys, task, baseline):
    out = tmp_path / task
    code, stdout, _ = _run(
        capsys, "dip", images / "im0.png", "--task", task, "--iters", "3", "--log-every", "1",
        "--depth", "2", "--channels", "4", "--code", "4", "--crop", "32", "--out", out,
    )  # fmt: skip
    assert code == 0 and baseline in stdout, stdout
    hist = json.loads((out / "im0_dip_psnr.json").read_text())
    assert hist["iteration"] == [1, 2, 3] and (out / "im0_comparison.png").is_file()


@pytest.mark.parametrize(
    "mask,extra,missing",
    [
        ("random", ["--mask-ratio", "0.25"], 0.25),
        ("box", ["--boxes", "1", "--box-size", "8"], 0.0625),
    ],
)
def test_dip_inpaint_masks(images, tmp_path, capsys, mask, extra, missing):
    out = tmp_path / mask
    code, stdout, _ = _run(
        capsys, "dip", images / "im0.png", "--task", "inpaint", "--mask", mask, *extra,
        "--iters", "2", "--depth", "2", "--channels", "4", "--code", "4", "--crop", "32",
        "--out", out,
    )  # fmt: skip
    assert code == 0 and f"{mask} mask: {missing:.1%} of the pixels missing" in stdout, stdout
    observed = np.asarray(Image.open(out / "im0_observed.png"))
    assert (observed == 0).mean() >= missing  # the missing pixels are black in the observation


def test_dip_text_mask_and_mask_errors(images, tmp_path, capsys):
    from pyengine.data import text_mask

    base = ["dip", images / "im0.png", "--task", "inpaint", "--iters", "1", "--depth", "2"]
    base += ["--channels", "4", "--code", "4", "--crop", "32", "--out", tmp_path / "t"]
    code, stdout, _ = _run(capsys, *base, "--mask", "text", "--seed", "3")
    expect = 1 - text_mask((32, 32), np.random.default_rng(3)).mean()
    assert code == 0 and f"text mask: {expect:.1%} of the pixels missing" in stdout, stdout
    for extra, match in (
        (["--mask", "text", "--mask-ratio", "0.3"], "applies to --mask random"),
        (["--mask", "box", "--box-size", "40"], "--mask box"),
        (["--mask-ratio", "1.5"], "(0, 1)"),
    ):
        code, _, err = _run(capsys, *base, *extra)
        assert code == 2 and match in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "name,extra",
    [
        ("sr", ["--arch", "subpixel", "--depth", "3", "--patch", "24"]),
        ("deblur", ["--depth", "1", "--patch", "16", "--scales", "2"]),
    ],
)
def test_resume_equals_an_uninterrupted_run(images, tmp_path, capsys, name, extra):
    common = ["--data", images, "--val", images, "--steps", "3", "--batch", "2"]
    common += ["--channels", "4", "--workers", "1", "--seed", "7", *extra]
    full, first = tmp_path / "full", tmp_path / "first"
    assert _run(capsys, "train", name, *common, "--epochs", "3", "--out", full)[0] == 0
    # interrupted after epoch 1 (what the checkpoint of a run killed in epoch 2 holds); the full
    # run's default --lr-step is --epochs - 1 = 2
    assert (
        _run(capsys, "train", name, *common, "--epochs", "1", "--lr-step", "2", "--out", first)[0]
        == 0
    )
    code, stdout, _ = _run(capsys, "train", name, "--epochs", "3", "--out", first, "--resume")
    assert code == 0 and "epoch 2/3" in stdout and "epoch 1/3" not in stdout, stdout
    a, b = (json.loads((r / "history.json").read_text()) for r in (full, first))
    assert len(a["loss"]) == 9 and a["loss"] == b["loss"] and a["val_psnr"] == b["val_psnr"]
    ca, cb = (pe.load(r / "checkpoint.npz") for r in (full, first))
    for k in ca["model"]:
        assert np.array_equal(ca["model"][k].numpy(), cb["model"][k].numpy()), k
    assert ca["task"] == cb["task"] and json.loads(ca["args"]) == json.loads(cb["args"])
    # settings that differ from the checkpoint's are refused; a finished run says so
    code, _, err = _run(capsys, "train", name, "--out", first, "--resume", "--batch", "4")
    assert code == 2 and "--batch 4 (checkpoint: 2)" in err, err
    code, stdout, _ = _run(capsys, "train", name, "--epochs", "3", "--out", first, "--resume")
    assert code == 0 and "already trained 3 epochs" in stdout
    code, _, err = _run(capsys, "train", name, *common, "--out", full)
    assert code == 2 and "pass --resume" in err
