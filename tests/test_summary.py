from fractions import Fraction

import numpy as np
import pytest

import pyengine as pe
import pyengine.nn as nn


def _out(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


# Stand-ins with PyTorch's attribute names: summary dispatches on the class name and attributes.
class Conv2d(nn.Module):
    def __init__(self, cin, cout, kernel_size, stride=1, padding=0, dilation=1):
        super().__init__()
        self.in_channels, self.out_channels = cin, cout
        self.kernel_size, self.stride, self.padding, self.dilation = (
            kernel_size,
            stride,
            padding,
            dilation,
        )
        self.groups = 1
        self.weight = nn.Parameter(pe.zeros(cout, cin, kernel_size, kernel_size))
        self.bias = nn.Parameter(pe.zeros(cout))

    def forward(self, x):
        n, _, h, w = x.shape
        k, s, p, d = self.kernel_size, self.stride, self.padding, self.dilation
        return pe.zeros(n, self.out_channels, _out(h, k, s, p, d), _out(w, k, s, p, d))


class ConvTranspose2d(Conv2d):
    def forward(self, x):
        n, _, h, w = x.shape
        k, s = self.kernel_size, self.stride
        return pe.zeros(n, self.out_channels, (h - 1) * s + k, (w - 1) * s + k)


class MaxPool2d(nn.Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.dilation = (
            kernel_size,
            stride,
            padding,
            dilation,
        )

    def forward(self, x):
        n, c, h, w = x.shape
        k = self.kernel_size
        s = self.stride or k
        return pe.zeros(n, c, _out(h, k, s, 0, 1), _out(w, k, s, 0, 1))


class Upsample(nn.Module):
    def __init__(self, scale_factor, mode="nearest"):
        super().__init__()
        self.scale_factor, self.mode = scale_factor, mode

    def forward(self, x):
        n, c, h, w = x.shape
        f = self.scale_factor
        return pe.zeros(n, c, h * f, w * f)


def test_mlp_rows_and_totals(capsys):
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    r = nn.summary(model, (3, 8))
    assert [row.name for row in r.rows] == ["0", "1", "2"]
    assert [row.type for row in r.rows] == ["Linear", "ReLU", "Linear"]
    assert [row.output_shape for row in r.rows] == [(3, 16), (3, 16), (3, 2)]
    assert [row.params for row in r.rows] == [8 * 16 + 16, 0, 16 * 2 + 2]
    assert [row.flops for row in r.rows] == [2 * 3 * 8 * 16, 3 * 16, 2 * 3 * 16 * 2]
    assert r.total_params == r.trainable_params == 144 + 34
    assert r.total_flops == 768 + 48 + 192
    assert r.output_shape == (3, 2)
    assert r.rows[0].receptive_field is None
    printed = capsys.readouterr().out
    assert "Total params: 178" in printed and "ReLU" in printed


def test_stacked_convs_receptive_field():
    convs = nn.Sequential(
        Conv2d(1, 4, 3, padding=1), Conv2d(4, 4, 3, padding=1), Conv2d(4, 4, 3, padding=1)
    )
    r = nn.summary(convs, (1, 1, 16, 16), verbose=False)
    assert [row.receptive_field for row in r.rows] == [(3, 3), (5, 5), (7, 7)]
    assert r.receptive_field == (7, 7)
    assert r.rows[0].flops == 2 * 4 * 16 * 16 * 1 * 9
    assert r.rows[1].params == 4 * 4 * 9 + 4


def test_pool_stride_and_dilation():
    model = nn.Sequential(
        Conv2d(1, 2, 3, padding=1),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        MaxPool2d(2),
        Conv2d(2, 2, 3, padding=1),
        Conv2d(2, 2, 3, padding=2, dilation=2),
    )
    r = nn.summary(model, (2, 1, 8, 8), verbose=False)
    rf = [row.receptive_field for row in r.rows]
    # 3 -> (BN, ReLU keep it) -> pool k=2: 3+1=4, jump 2 -> 4+2*2=8 -> k_eff 5: 8+4*2=16
    assert rf == [(3, 3), (3, 3), (3, 3), (4, 4), (8, 8), (16, 16)]
    assert [row.jump for row in r.rows][-1] == (2, 2)
    bn = r.rows[1]
    assert bn.type == "BatchNorm2d" and bn.flops == 2 * 2 * 2 * 8 * 8 and bn.params == 4
    assert r.rows[3].flops == 4 * 2 * 2 * 4 * 4
    assert r.rows[3].output_shape == (2, 2, 4, 4)


def test_transpose_and_upsample_divide_the_jump():
    model = nn.Sequential(
        Conv2d(1, 1, 3, stride=2),
        ConvTranspose2d(1, 1, 2, stride=2),
        Upsample(2),
        Upsample(2, mode="bilinear"),
    )
    r = nn.summary(model, (1, 1, 9, 9), verbose=False)
    assert [row.jump for row in r.rows] == [
        (2, 2),
        (1, 1),
        (Fraction(1, 2),) * 2,
        (Fraction(1, 4),) * 2,
    ]
    # conv: 3; transpose k=2 at the new jump 1: 3+1=4; nearest keeps 4; bilinear adds a jump.
    assert [row.receptive_field for row in r.rows] == [
        (3, 3),
        (4, 4),
        (4, 4),
        (Fraction(9, 2),) * 2,
    ]
    assert r.rows[1].flops == 2 * (1 * 1 * 4 * 4) * 1 * 4
    assert "4.5" in str(r)


def test_skip_connection_follows_inputs():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = Conv2d(1, 1, 3, padding=1)
            self.b = Conv2d(1, 1, 3, padding=1)
            self.c = Conv2d(1, 1, 1)

        def forward(self, x):
            h = self.a(x)
            self.b(h)
            return self.c(h)  # reads a's output, not b's

    r = nn.summary(Net(), (1, 1, 5, 5), verbose=False)
    assert [row.name for row in r.rows] == ["a", "b", "c"]
    assert r.rows[-1].receptive_field == (3, 3)


def test_restores_forward_modes_and_buffers():
    bn = nn.BatchNorm2d(2)
    model = nn.Sequential(Conv2d(1, 2, 3), bn, nn.ReLU())
    model.train()
    nn.summary(model, (2, 1, 6, 6), verbose=False)
    assert all(m.training for m in model.modules())
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert bn.num_batches_tracked.item() == 0
    np.testing.assert_array_equal(bn.running_mean.numpy(), 0)


def test_restores_forward_on_error():
    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = nn.Sequential(nn.Linear(4, 4), Boom())
    model.train()
    with pytest.raises(RuntimeError, match="boom"):
        nn.summary(model, (2, 4), verbose=False)
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert model.training


def test_reused_module_appears_each_call():
    act = nn.ReLU()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.act = act

        def forward(self, x):
            return self.act(self.fc(self.act(x)))

    r = nn.summary(Net(), (2, 3), verbose=False)
    assert [row.name for row in r.rows] == ["act", "fc", "act"]
    assert r.total_params == 12


def test_upsample_by_size():
    up = Upsample(2, mode="bicubic")
    up.scale_factor = None
    up.forward = lambda x: pe.zeros(x.shape[0], x.shape[1], 3 * x.shape[2], 3 * x.shape[3])
    r = nn.summary(nn.Sequential(Conv2d(1, 1, 3), up), (1, 1, 5, 5), verbose=False)
    assert r.rows[-1].jump == (Fraction(1, 3),) * 2
    assert r.rows[-1].receptive_field == (6, 6)
    assert r.rows[-1].output_shape == (1, 1, 9, 9)
