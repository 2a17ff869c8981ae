import os
from collections import OrderedDict

import numpy as np
import pytest

import pyengine as pe


def _nested():
    return {
        "model": OrderedDict(
            [("w", pe.randn(3, 4)), ("b", pe.tensor(2.5)), ("idx", pe.tensor([1, 2]))]
        ),
        "optim": {"state": {0: {"step": 3, "buf": pe.ones(2)}}, "param_groups": [{"lr": 0.1}]},
        "epoch": 7,
        "loss": 0.25,
        "done": False,
        "name": "dncnn",
        "empty": {},
        "nothing": None,
        "arr": np.arange(4, dtype=np.int32),
    }


def test_round_trip_of_nested_dicts(tmp_path):
    obj = _nested()
    path = tmp_path / "ck.npz"
    pe.save(obj, path)
    back = pe.load(path)
    np.testing.assert_array_equal(back["model"]["w"].numpy(), obj["model"]["w"].numpy())
    assert back["model"]["b"].shape == () and back["model"]["b"].item() == 2.5
    assert back["model"]["idx"].dtype == pe.int64
    assert list(back["model"]) == ["w", "b", "idx"]
    assert back["optim"]["state"][0]["step"] == 3 and isinstance(
        back["optim"]["state"][0]["step"], int
    )
    assert back["optim"]["state"][0]["buf"].tolist() == [1.0, 1.0]
    assert back["optim"]["param_groups"] == [{"lr": 0.1}]
    assert back["epoch"] == 7 and back["loss"] == 0.25 and back["done"] is False
    assert back["name"] == "dncnn" and back["empty"] == {} and back["nothing"] is None
    assert back["arr"].dtype == np.int32 and back["arr"].tolist() == [0, 1, 2, 3]


def test_model_state_dict_round_trip(tmp_path):
    net = pe.nn.Sequential(pe.nn.Linear(3, 4), pe.nn.ReLU(), pe.nn.Linear(4, 2))
    pe.save(net.state_dict(), tmp_path / "m.npz")
    net2 = pe.nn.Sequential(pe.nn.Linear(3, 4), pe.nn.ReLU(), pe.nn.Linear(4, 2))
    net2.load_state_dict(pe.load(tmp_path / "m.npz"))
    x = pe.randn(5, 3)
    np.testing.assert_array_equal(net(x).detach().numpy(), net2(x).detach().numpy())


def test_file_is_plain_npz(tmp_path):
    w = pe.randn(2, 3)
    pe.save({"layer": {"weight": w}, "step": 4}, tmp_path / "ck.npz")
    z = np.load(tmp_path / "ck.npz")
    np.testing.assert_array_equal(z["layer/weight"], w.numpy())
    assert int(z["step"]) == 4


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    pe.save({"v": pe.ones(3)}, path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        pe.save({"v": pe.zeros(3)}, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"]
    monkeypatch.undo()
    assert pe.load(path)["v"].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("cut", [0.0, 0.3, 0.6, 0.95])
def test_truncated_file_gives_clear_error(tmp_path, cut):
    path = tmp_path / "ck.npz"
    pe.save({"w": pe.randn(64, 64), "b": pe.randn(64)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ValueError, match="checkpoint"):
        pe.load(path)


def test_corrupt_and_foreign_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip file at all")
    with pytest.raises(ValueError, match="checkpoint"):
        pe.load(bad)
    path = tmp_path / "flip.npz"
    pe.save({"w": pe.randn(64, 64)}, path)
    data = bytearray(path.read_bytes())
    for i in range(100, len(data) - 200, 97):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError):
        pe.load(path)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.ones(2))
    with pytest.raises(ValueError, match="not a pyengine checkpoint"):
        pe.load(foreign)
    with pytest.raises(FileNotFoundError):
        pe.load(tmp_path / "missing.npz")


def test_save_rejects_what_it_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="dict"):
        pe.save([1, 2], tmp_path / "x.npz")
    with pytest.raises(TypeError, match="object"):
        pe.save({"x": object()}, tmp_path / "x.npz")
    with pytest.raises(ValueError, match="/"):
        pe.save({"a/b": 1}, tmp_path / "x.npz")
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())
