"""`pyengine train mlp` / `inpaint`: the issue's accuracy targets, outputs, and argument errors."""

import os

import numpy as np
import pytest

import pyengine as pe
from pyengine.cli import main


def test_train_mlp_reaches_targets(tmp_path, capsys):
    assert main(["train", "mlp", "--out", str(tmp_path)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    acc_lin = float(line.split("linear:")[1].split()[0])
    acc_mlp = float(line.split("mlp:")[1].split()[0])
    assert acc_lin >= 0.94 and acc_mlp >= 0.97, line
    for name in ("linear.npz", "mlp.npz", "linear_filters.png", "mlp_filters.png"):
        assert os.path.getsize(tmp_path / name) > 0
    state = pe.load(tmp_path / "mlp.npz")
    assert state["0.weight"].shape == (100, 64)
    # the checkpoint is a plain .npz that NumPy reads without pyengine
    assert np.load(tmp_path / "mlp.npz")["2.bias"].shape == (10,)


def test_train_inpaint_beats_masked_input(tmp_path, capsys):
    assert main(["train", "inpaint", "--epochs", "8", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    masked = float(out.split("masked input:")[1].split()[0])
    inpainted = float(out.split("inpainted:")[1].split()[0])
    assert inpainted < 0.5 * masked
    assert os.path.getsize(tmp_path / "inpaint.png") > 0


@pytest.mark.parametrize("flag", ["--epochs", "--batch", "--hidden"])
def test_bad_arguments_exit_cleanly(tmp_path, capsys, flag):
    assert main(["train", "mlp", flag, "0", "--out", str(tmp_path)]) == 2
    assert "must be positive" in capsys.readouterr().err
