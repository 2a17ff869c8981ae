"""Reproducible runs: pe.use_deterministic_algorithms, two processes giving bit-identical losses,
and a run killed with SIGKILL then resumed giving exactly the uninterrupted run's results."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from pyrun import run_python

import pyengine as pe
import pyengine.nn.functional as F
from pyengine.ops import conv

RUN = ["--depth", "4", "--channels", "8", "--patch", "24", "--batch", "4", "--workers", "0"]
RUN += ["--seed", "3", "--lr", "3e-3"]
THREADS = {"OMP_NUM_THREADS": "2", "PYENGINE_PROGRESS": "0"}


def test_use_deterministic_algorithms_switch(monkeypatch):
    assert not pe.are_deterministic_algorithms_enabled()
    monkeypatch.setattr(conv, "_tuned", {})
    monkeypatch.setattr(pe.backends, "conv_benchmark", True)
    x, w = pe.randn(2, 8, 12, 12), pe.randn(8, 8, 3, 3)
    pe.use_deterministic_algorithms(True)
    try:
        assert pe.are_deterministic_algorithms_enabled()
        F.conv2d(x, w, padding=1)
        assert conv._tuned == {}  # chosen by rule: nothing timed
    finally:
        pe.use_deterministic_algorithms(False)
    F.conv2d(x, w, padding=1)
    assert conv._tuned  # the benchmark is back
    with pytest.raises(TypeError):
        pe.use_deterministic_algorithms(1)


def test_cuda_atomic_backward_alerts_in_deterministic_mode():
    pe.use_deterministic_algorithms(True)
    try:
        pe.backends.alert_not_deterministic("max_pool2d backward", pe.device("cpu"))
        with pytest.raises(RuntimeError, match="max_pool2d backward on CUDA"):
            pe.backends.alert_not_deterministic("max_pool2d backward", pe.device("cuda"))
        pe.use_deterministic_algorithms(True, warn_only=True)
        with pytest.warns(UserWarning, match="atomicAdd"):
            pe.backends.alert_not_deterministic("max_pool2d backward", pe.device("cuda"))
        x = pe.randn(1, 2, 4, 4, requires_grad=True)
        F.max_pool2d(x, 2).sum().backward()  # the CPU kernels are deterministic
    finally:
        pe.use_deterministic_algorithms(False)
    pe.backends.alert_not_deterministic("max_pool2d backward", pe.device("cuda"))


def test_full_sum_is_the_same_for_every_thread_count():
    x = pe.from_numpy(np.random.default_rng(0).standard_normal(1 << 20).astype(np.float32))
    old = pe.get_num_threads()
    sums = []
    try:
        for n in (1, 2, 3, 5):
            pe.set_num_threads(n)
            sums.append(x.sum().item())
    finally:
        pe.set_num_threads(old)
    assert len({np.float32(s).tobytes() for s in sums}) == 1, sums


def _train(out, *extra, **kw):
    argv = ["-m", "pyengine", "train", "dncnn", *RUN, "--out", str(out), *extra]
    return run_python(argv, env=THREADS, capture_output=True, text=True, timeout=600, **kw)


def _history(out):
    return json.loads((out / "history.json").read_text())


def _weights(out):
    return {k: v.numpy() for k, v in pe.load(out / "checkpoint.npz")["model"].items()}


def test_two_processes_give_bit_identical_losses(tmp_path):
    for name in ("a", "b"):
        r = _train(tmp_path / name, "--epochs", "2", "--steps", "6")
        assert r.returncode == 0, r.stderr
    a, b = _history(tmp_path / "a"), _history(tmp_path / "b")
    assert a["loss"] == b["loss"] and a["val_psnr"] == b["val_psnr"]
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)


def test_resume_after_kill_is_bit_identical(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    args = ("--epochs", "3", "--steps", "40")
    r = _train(full, *args)
    assert r.returncode == 0, r.stderr
    # kill -9 as soon as epoch 1's checkpoint is on disk, in the middle of epoch 2
    root = os.path.dirname(os.path.dirname(pe.__file__))
    env = {**os.environ, **THREADS, "PYTHONPATH": root}
    cmd = [sys.executable, "-m", "pyengine", "train", "dncnn", *RUN, "--out", str(part), *args]
    proc = subprocess.Popen(cmd, env=env, cwd="/", stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (part / "checkpoint.npz").exists() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = int(pe.load(part / "checkpoint.npz")["epoch"])
    assert killed_at < 3
    r = _train(part, "--epochs", "3", "--resume")
    assert r.returncode == 0, r.stderr
    assert not list(part.glob(".tmp-*"))
    a, b = _history(full), _history(part)
    assert a["loss"] == b["loss"] and a["val_psnr"] == b["val_psnr"]
    wa, wb = _weights(full), _weights(part)
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)


def test_winograd_runs_are_bit_identical_and_no_winograd_differs(tmp_path):
    """With 16 channels the heuristic runs Winograd (pyengine/ops/conv.py): still the same
    losses in two processes; --no-winograd runs im2col, so the losses differ in the last bits
    and the choice is kept in the checkpoint for --resume."""
    wide = ("--channels", "16", "--epochs", "1", "--steps", "6")
    for name, extra in (("a", ()), ("b", ()), ("c", ("--no-winograd",))):
        r = _train(tmp_path / name, *wide, *extra)
        assert r.returncode == 0, r.stderr
    a, b, c = (_history(tmp_path / n) for n in "abc")
    assert a["loss"] == b["loss"] and a["val_psnr"] == b["val_psnr"]
    assert a["loss"] != c["loss"]
    np.testing.assert_allclose(a["loss"], c["loss"], rtol=1e-3)
    saved = json.loads(str(pe.load(tmp_path / "c" / "checkpoint.npz")["args"]))
    assert saved["no_winograd"] is True
