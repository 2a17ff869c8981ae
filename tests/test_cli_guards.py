"""Command-line inputs that used to end in a traceback, a runaway allocation or a NaN result with
exit status 0: each is refused up front with one clear line and exit status 2, before any work."""

import json
import os
import stat

import numpy as np
import pytest
from PIL import Image
from shared_data import shared

import pyengine as pe
from pyengine.cli import common, main
from pyengine.models import DnCNN, UNet

TINY = ["--depth", "3", "--channels", "4", "--patch", "16", "--batch", "4", "--steps", "3"]
TINY += ["--workers", "0", "--seed", "5"]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _refused(capsys, argv, match, absent=()):
    code, out, err = _run(capsys, *argv)
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and match in lines[0], err
    assert "Traceback" not in err
    for path in absent:
        assert not os.path.exists(path), f"{path} was left behind"
    return lines[0]


@pytest.fixture
def gray(tmp_path):
    yy, xx = np.mgrid[:40, :48]
    img = 0.5 + 0.4 * np.sin(xx / 5) * np.cos(yy / 7)
    path = tmp_path / "gray.png"
    Image.fromarray(np.uint8(img * 255)).save(path)
    return path


@pytest.fixture
def color(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    path = tmp_path / "color.png"
    Image.fromarray(rgb, "RGB").save(path)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A (untrained) DnCNN checkpoint as `train` writes it: 1 epoch of the tiny run."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert main(["train", "dncnn", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    return out / "checkpoint.npz"


# ---------------------------------------------------------------- model size and memory
@pytest.mark.parametrize("depth,width,ch", [(3, 4, 1), (5, 7, 3), (17, 64, 1)])
def test_dncnn_size_without_building_matches_the_model(depth, width, ch):
    params, _ = common.model_size("dncnn", depth, width, ch)
    assert params == DnCNN(depth=depth, channels=width, image_channels=ch).num_parameters()


@pytest.mark.parametrize("up", ["transpose", "upsample"])
@pytest.mark.parametrize("depth,width,ch", [(0, 3, 1), (2, 16, 1), (3, 5, 3)])
def test_unet_size_without_building_matches_the_model(depth, width, ch, up):
    params, _ = common.model_size("unet", depth, width, ch, up)
    unet = UNet(ch, ch, depth=depth, base=width, up=up, residual=True)
    assert params == unet.num_parameters()


def test_unet_depth_checked_against_patch(capsys, tmp_path):
    out = tmp_path / "out"
    line = _refused(
        capsys, ["train", "unet", "--depth", "9", "--out", out], "--patch >= 1024", [out]
    )
    assert "at most --depth 4 for --patch 48" in line


def test_too_large_model_refused_before_it_is_built(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(common, "available_memory", lambda: 2**30)
    out = tmp_path / "out"
    argv = ["train", "unet", "--depth", "6", "--channels", "256", "--patch", "128", "--out", out]
    line = _refused(capsys, argv, "GiB is available", [out])
    assert "parameters" in line and "--force" in line


def test_training_prints_parameters_and_memory(capsys, tmp_path):
    code, out, _ = _run(capsys, "train", "dncnn", *TINY, "--epochs", "1", "--out", tmp_path / "r")
    params = DnCNN(depth=3, channels=4).num_parameters()
    assert code == 0 and f"({params:,} parameters, about " in out and "GiB to train" in out


@pytest.mark.parametrize(
    "arch,flags", [("dncnn", ["--channels-in", "3"]), ("unet", ["--rgb", "--channels-in", "3"])]
)
def test_channels_in_is_the_spelled_out_rgb(capsys, tmp_path, color, arch, flags):
    data = tmp_path / "imgs"
    data.mkdir()
    color.rename(data / color.name)
    run = ["train", arch, *TINY, "--epochs", "1", "--data", data, "--val", data]
    assert _run(capsys, *run, *flags, "--out", tmp_path / "c")[0] == 0
    ckpt = pe.load(tmp_path / "c" / "checkpoint.npz")
    cfg, saved = json.loads(ckpt["config"]), json.loads(ckpt["args"])
    assert cfg.get("image_channels", cfg.get("in_channels")) == 3 and saved["rgb"] is True
    assert _run(capsys, *run, "--channels-in", "1", "--out", tmp_path / "g")[0] == 0
    cfg = json.loads(pe.load(tmp_path / "g" / "checkpoint.npz")["config"])
    assert cfg.get("image_channels", cfg.get("in_channels")) == 1
    line = _refused(capsys, [*run, "--rgb", "--channels-in", "1", "--out", tmp_path / "x"], "--rgb")
    assert "--channels-in is 1" in line and not (tmp_path / "x").exists()


# ---------------------------------------------------------------- output locations
def _bad_outs(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    outs = [(afile, "is a file"), (afile / "sub", "is a file")]
    if os.path.isdir("/proc"):
        outs.append(("/proc/pyengine-x", "cannot be written"))
    return outs


def test_bad_out_refused_before_work_in_every_command(capsys, tmp_path, gray, model):
    for out, match in _bad_outs(tmp_path):
        _refused(capsys, ["train", "dncnn", *TINY, "--out", out], match)
        _refused(capsys, ["train", "mlp", "--out", out], match)
        _refused(capsys, ["denoise", gray, "--model", model, "--out", out], match)
        _refused(capsys, ["dip", gray, "--iters", "1", "--out", out], match)


# ---------------------------------------------------------------- dip
def test_dip_bad_inputs(capsys, tmp_path, gray):
    out = tmp_path / "out"
    _refused(capsys, ["dip", gray, "--crop", "24", "--out", out], "needs at least 32x32", [out])
    _refused(capsys, ["dip", gray, "--depth", "-1", "--out", out], "--depth must be >= 0", [out])
    _refused(capsys, ["dip", gray, "--lr", "nan", "--out", out], "--lr must be", [out])
    _refused(capsys, ["dip", gray, "--input-noise", "inf", "--out", out], "--input-noise", [out])
    # a small image works with a shallower U-Net
    code, _, _ = _run(
        capsys, "dip", gray, "--crop", "24", "--depth", "2", "--iters", "2", "--out", out
    )
    assert code == 0 and (out / "gray_dip.png").is_file()


# ---------------------------------------------------------------- non-finite values
def test_non_finite_or_meaningless_hyperparameters(capsys, tmp_path):
    out = tmp_path / "out"
    for flag, value in [("--lr", "nan"), ("--lr", "inf"), ("--lr-gamma", "nan"), ("--lr", "0")]:
        _refused(capsys, ["train", "dncnn", *TINY, flag, value, "--out", out], flag, [out])
    _refused(capsys, ["train", "dncnn", *TINY, "--sigma", "0", "--out", out], "needs noise", [out])
    _refused(capsys, ["train", "dncnn", *TINY, "--sigma", "nan", "--out", out], "sigma", [out])
    argv = ["train", "unet", "--sigma-range", "0", "0", "--out", out]
    _refused(capsys, argv, "needs noise", [out])
    _refused(capsys, ["train", "cnn", "--lr", "nan", "--out", out], "--lr must be", [out])


def test_diverging_training_stops_with_an_error(capsys, tmp_path):
    out = tmp_path / "out"
    line = _refused(capsys, ["train", "dncnn", *TINY, "--lr", "1e30", "--out", out], "diverged")
    assert "epoch 1" in line and not (out / "checkpoint.npz").exists()


def test_model_with_nan_weights_refused(capsys, tmp_path, gray, model):
    ckpt = pe.load(model)
    w = ckpt["model"]["layers.0.weight"].numpy().copy()
    w[0, 0, 0, 0] = np.nan
    ckpt["model"]["layers.0.weight"] = w
    bad = tmp_path / "nan.npz"
    pe.save(ckpt, bad)
    out = tmp_path / "out"
    _refused(capsys, ["denoise", gray, "--model", bad, "--out", out], "non-finite", [out])


# ---------------------------------------------------------------- colour, tiles, progress
def test_colour_image_denoised_per_channel(capsys, tmp_path, color, model):
    out = tmp_path / "out"
    code, stdout, err = _run(
        capsys, "denoise", color, "--model", model, "--sigma", "25", "--out", out
    )
    assert code == 0 and "colour image" in err and "PSNR noisy" in stdout
    assert Image.open(out / "color_denoised.png").mode == "RGB"


def test_dip_says_when_it_converts_colour_to_grey(capsys, tmp_path, color):
    code, _, err = _run(capsys, "dip", color, "--iters", "1", "--out", tmp_path / "o")
    assert code == 0 and "converted to grey" in err


def test_tile_below_the_receptive_field_refused(capsys, tmp_path, gray, model):
    out = tmp_path / "out"
    for tile in ("1", "-3"):
        _refused(capsys, ["denoise", gray, "--model", model, "--tile", tile, "--out", out], ">= 16")
    folder = tmp_path / "set"
    folder.mkdir()
    os.link(gray, folder / "a.png")
    _refused(capsys, ["eval", "--model", model, "--set", folder, "--tile", "4"], "--tile")


def test_progress_shown_on_a_terminal(capsys, tmp_path, gray, model, monkeypatch):
    monkeypatch.setenv("PYENGINE_PROGRESS", "1")
    code, _, err = _run(capsys, "denoise", gray, "--model", model, "--out", tmp_path / "o")
    assert code == 0 and "1/1" in err and "image" in err


# ---------------------------------------------------------------- resume
def test_resume_refuses_changed_settings_and_cleans_temp_files(capsys, tmp_path):
    out = tmp_path / "run"
    assert _run(capsys, "train", "dncnn", *TINY, "--epochs", "1", "--out", out)[0] == 0
    stale = out / ".tmp-abc.npz"
    stale.write_bytes(b"half a checkpoint")
    argv = ["train", "dncnn", "--epochs", "2", "--out", out, "--resume"]
    line = _refused(capsys, [*argv, "--sigma", "50"], "--sigma 50.0 (checkpoint: 25.0)")
    assert "--lr" not in line
    _refused(capsys, [*argv, "--lr", "0.01"], "--lr 0.01 (checkpoint: 0.001)")
    assert stale.exists()  # nothing happens on a refused command
    code, _, _ = _run(capsys, *argv)
    assert code == 0 and not stale.exists()
    assert json.loads((out / "history.json").read_text())["loss"].__len__() == 6


# ---------------------------------------------------------------- files and help
def test_output_files_follow_the_umask(capsys, tmp_path, gray, model):
    old = os.umask(0o022)
    try:
        run = tmp_path / "run"
        assert _run(capsys, "train", "dncnn", *TINY, "--epochs", "1", "--out", run)[0] == 0
        assert _run(capsys, "denoise", gray, "--model", model, "--out", tmp_path / "d")[0] == 0
    finally:
        os.umask(old)
    files = [*run.iterdir(), *(tmp_path / "d").iterdir()]
    assert len(files) >= 5
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f


def test_help_texts(capsys):
    for argv in (["eval", "-h"], ["dip", "-h"], ["--version"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    out = capsys.readouterr().out
    assert "noise level added to each image" in out
    assert "``" not in out and "0.0333" not in out and "default: 1/30" in out
    text = " ".join(out.split())
    for option in (
        "iterations (default: 3000",
        "rate (default: 0.001 denoise",
        "evaluations (default: 25)",
    ):
        assert option in text
    assert f"pyengine {pe.__version__}" in out


def test_not_a_model_file(capsys, tmp_path, gray):
    out = tmp_path / "out"
    line = _refused(capsys, ["denoise", gray, "--model", gray, "--out", out], "is not a model file")
    assert "pickle" not in line
    _refused(
        capsys, ["denoise", gray, "--model", tmp_path, "--out", out], "is a folder, not a model"
    )


def test_pretrained_weights_still_load(capsys, tmp_path, gray):
    weights = shared("weights", "dncnn_s25.npz")
    code, stdout, _ = _run(capsys, "denoise", gray, "--model", weights, "--out", tmp_path / "o")
    assert code == 0 and "gray_denoised.png" in stdout
