import math
from collections import OrderedDict

import numpy as np
import pytest

import pyengine as pe
import pyengine.nn as nn
import pyengine.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.act = nn.ReLU()
        self.block = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Tanh())
        self.fc2 = nn.Linear(8, 2, bias=False)
        self.register_buffer("running", pe.zeros(2))
        self.register_buffer("scratch", pe.zeros(1), persistent=False)

    def forward(self, x):
        return self.fc2(self.block(self.act(self.fc1(x)))) + self.running


NAMES = ["fc1.weight", "fc1.bias", "block.0.weight", "block.0.bias", "fc2.weight"]


def test_registration_and_order():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == NAMES
    assert len(list(net.parameters())) == 5
    assert [n for n, _ in net.named_buffers()] == ["running", "scratch"]
    assert list(net.state_dict()) == ["running"] + NAMES  # own entries first, as in torch
    assert [n for n, _ in net.named_modules()][:3] == ["", "fc1", "act"]
    assert net.num_parameters() == 4 * 8 + 8 + 8 * 8 + 8 + 8 * 2
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    net.fc1 = nn.Linear(4, 8, bias=False)  # re-assignment replaces the registration
    assert [n for n, _ in net.named_parameters()][:2] == ["fc1.weight", "block.0.weight"]
    with pytest.raises(TypeError):
        net.fc1 = 3


def test_shared_parameter_listed_once():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2


def test_train_eval_recursion():
    net = Net()
    net.eval()
    assert all(not m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_forward_backward_and_zero_grad():
    net = Net()
    net(pe.randn(5, 4)).sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_state_dict_round_trip():
    a, b = Net(), Net()
    a.running.copy_(pe.tensor([1.0, 2.0]))
    res = b.load_state_dict(a.state_dict())
    assert res.missing_keys == [] and res.unexpected_keys == []
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=n)
    sd = a.state_dict()
    sd["fc1.weight"].numpy()[0, 0] = 123.0  # state_dict shares storage, as in torch
    assert a.fc1.weight.detach().numpy()[0, 0] == 123.0


def test_load_state_dict_errors():
    net = Net()
    sd = net.state_dict()
    del sd["fc1.bias"]
    sd["extra"] = pe.zeros(1)
    with pytest.raises(
        RuntimeError, match=r"missing keys \['fc1.bias'\].*unexpected keys \['extra'\]"
    ):
        net.load_state_dict(sd)
    res = net.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["fc1.bias"] and res.unexpected_keys == ["extra"]
    sd = net.state_dict()
    sd["fc2.weight"] = pe.zeros(3, 8)
    with pytest.raises(RuntimeError, match=r"size mismatch for fc2.weight.*\(3, 8\).*\(2, 8\)"):
        net.load_state_dict(sd)


def test_linear_default_init_bounds(torch):
    pe.manual_seed(0)
    lin = nn.Linear(400, 300)
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    bound = 1 / math.sqrt(400)
    assert w.shape == (300, 400) and np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.99 * bound
    np.testing.assert_allclose(w.std(), bound / math.sqrt(3), rtol=0.02)
    np.testing.assert_allclose(w.mean(), 0, atol=2e-3 * bound * 10)
    tw = torch.nn.Linear(400, 300).weight.detach().numpy()
    np.testing.assert_allclose(w.std(), tw.std(), rtol=0.03)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_and_xavier_std(mode):
    pe.manual_seed(1)
    t = pe.empty(256, 128, 3, 3)
    fan = 128 * 9 if mode == "fan_in" else 256 * 9
    nn.init.kaiming_normal_(t, mode=mode, nonlinearity="relu")
    np.testing.assert_allclose(t.numpy().std(), math.sqrt(2 / fan), rtol=0.02)
    nn.init.kaiming_uniform_(t, mode=mode, nonlinearity="relu")
    np.testing.assert_allclose(t.numpy().std(), math.sqrt(2 / fan), rtol=0.02)
    nn.init.xavier_uniform_(t)
    np.testing.assert_allclose(t.numpy().std(), math.sqrt(2 / (128 * 9 + 256 * 9)), rtol=0.02)
    nn.init.xavier_normal_(t, gain=2.0)
    np.testing.assert_allclose(t.numpy().std(), 2 * math.sqrt(2 / (128 * 9 + 256 * 9)), rtol=0.02)


def test_init_gains_match_torch(torch):
    for nl in ["linear", "relu", "tanh", "sigmoid"]:
        assert nn.init.calculate_gain(nl) == pytest.approx(torch.nn.init.calculate_gain(nl))
    assert nn.init.calculate_gain("leaky_relu", 0.2) == pytest.approx(
        torch.nn.init.calculate_gain("leaky_relu", 0.2)
    )


def test_init_on_parameter_keeps_it_a_leaf():
    lin = nn.Linear(3, 2)
    nn.init.zeros_(lin.bias)
    nn.init.ones_(lin.weight)
    assert lin.bias.is_leaf and lin.bias.requires_grad and lin.bias.tolist() == [0.0, 0.0]
    assert lin(pe.ones(1, 3)).tolist() == [[3.0, 3.0]]


def test_dropout():
    x = pe.ones(1000, 100)
    d = nn.Dropout(0.3)
    pe.manual_seed(5)
    y = d(x).numpy()
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    assert abs(kept.mean() - 0.7) < 0.01
    pe.manual_seed(5)
    np.testing.assert_array_equal(d(x).numpy(), y)
    d.eval()
    assert d(x) is x
    assert F.dropout(x, 1.0).sum().item() == 0.0
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


def test_dropout_gradient_uses_the_mask():
    pe.manual_seed(2)
    x = pe.ones(50, requires_grad=True)
    y = F.dropout(x, 0.5)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.detach().numpy())


def test_dropout2d_zeros_whole_channels():
    pe.manual_seed(0)
    y = F.dropout2d(pe.ones(4, 16, 3, 3), 0.5).numpy()
    per_channel = y.reshape(4, 16, 9)
    assert np.all((per_channel == 0).all(-1) | (per_channel == 2).all(-1))


def test_sequential_indexing_and_containers():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    s = nn.Sequential(a, b, c)
    assert s[0] is a and s[-1] is c and len(s) == 3 and list(s) == [a, b, c]
    assert isinstance(s[1:], nn.Sequential) and len(s[1:]) == 2 and s[1:][0] is b
    named = nn.Sequential(OrderedDict([("first", a), ("second", c)]))
    assert [n for n, _ in named.named_parameters()][0] == "first.weight"
    ml = nn.ModuleList([a, c])
    assert len(ml) == 2 and ml[1] is c and len(list(ml.parameters())) == 4
    assert s(pe.ones(4, 2)).shape == (4, 1)
    assert "Linear(in_features=2, out_features=3, bias=True)" in repr(s)


def test_module_misuse_errors():
    class NoInit(nn.Module):
        def __init__(self):
            self.x = 1

    with pytest.raises(AttributeError, match="super"):
        NoInit()
    with pytest.raises(NotImplementedError):
        nn.Module()(1)
    with pytest.raises(ValueError):
        nn.Linear(0, 3)
