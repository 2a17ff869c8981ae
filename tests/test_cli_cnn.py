"""`pyengine train cnn` with its defaults: the accuracy target, the outputs, and a checkpoint that
loads back into ``small_vgg()``. The default run takes ~10 s of CPU time (single thread), so it
is not marked slow and needs no reduced variant."""

import os

import pytest

import pyengine as pe
from pyengine.cli import main
from pyengine.cli.classify import accuracy, load_digits_split, small_vgg


def test_train_cnn_defaults_reach_target(tmp_path, capsys):
    assert main(["train", "cnn", "--out", str(tmp_path)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    acc = float(line.split("cnn:")[1].split()[0])
    assert acc >= 0.985, line
    for name in ("cnn.npz", "cnn_filters.png"):
        assert os.path.getsize(tmp_path / name) > 0
    model = small_vgg()
    model.load_state_dict(pe.load(tmp_path / "cnn.npz"))
    _, xte, _, yte = load_digits_split(0)
    # the reloaded model reproduces the printed accuracy (batch-norm statistics included)
    assert accuracy(model, xte.reshape(-1, 1, 8, 8), yte) == pytest.approx(acc, abs=1e-4)


def test_train_cnn_bad_width(tmp_path, capsys):
    assert main(["train", "cnn", "--hidden", "0", "--out", str(tmp_path)]) == 2
    assert "must be positive" in capsys.readouterr().err
