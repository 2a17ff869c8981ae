from fractions import Fraction

import numpy as np
import pytest

import pyengine.nn as nn
from pyengine.nn import Conv2d, ConvTranspose2d, MaxPool2d, Upsample


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
        Upsample(scale_factor=2),
        Upsample(scale_factor=2, mode="bilinear"),
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
    up = Upsample(size=(9, 9), mode="bilinear")
    r = nn.summary(nn.Sequential(Conv2d(1, 1, 3), up), (1, 1, 5, 5), verbose=False)
    assert r.rows[-1].jump == (Fraction(1, 3),) * 2
    assert r.rows[-1].receptive_field == (4, 4)
    assert r.rows[-1].output_shape == (1, 1, 9, 9)


def test_three_convs_with_a_stride_two_pool_in_between():
    def conv():
        return Conv2d(1, 1, 3, padding=1)

    r = nn.summary(nn.Sequential(conv(), conv(), conv()), (1, 1, 16, 16), verbose=False)
    assert r.receptive_field == (7, 7)
    pooled = nn.Sequential(conv(), MaxPool2d(2), conv(), conv())
    r = nn.summary(pooled, (1, 1, 16, 16), verbose=False)
    # 3 -> pool k=2: 3+1=4, jump 2 -> 4+2*2=8 -> 8+2*2=12
    assert [row.receptive_field for row in r.rows] == [(3, 3), (4, 4), (8, 8), (12, 12)]
    assert r.rows[-1].jump == (2, 2)


def real_net(nn):
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, groups=2),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.ConvTranspose2d(16, 8, 2, stride=2),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(8, 4, 5, stride=2, padding=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),
    )


def test_real_conv_net_matches_pytorch(torch):
    model, tmodel = real_net(nn), real_net(torch.nn)
    r = nn.summary(model, (2, 3, 16, 16), verbose=False)
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape))) for m in tmodel]
    with torch.no_grad():
        tmodel.eval()(torch.zeros(2, 3, 16, 16))
    for h in hooks:
        h.remove()
    assert [row.output_shape for row in r.rows] == shapes
    assert [row.params for row in r.rows] == [
        sum(p.numel() for p in m.parameters()) for m in tmodel
    ]
    assert r.total_params == r.trainable_params == sum(p.numel() for p in tmodel.parameters())
    assert [row.type for row in r.rows] == [type(m).__name__ for m in tmodel]

    def conv_flops(cin, cout, k, out_hw, groups=1, n=2):
        return n * 2 * cin * cout * k * k * out_hw * out_hw // groups

    flops = [row.flops for row in r.rows]
    assert flops[0] == conv_flops(3, 8, 3, 16)
    assert flops[4] == conv_flops(8, 16, 3, 8, groups=2)
    assert flops[7] == 2 * (2 * 16 * 8 * 8) * 8 * 2 * 2  # per input pixel x tap x C_out
    assert flops[9] == conv_flops(8, 4, 5, 16)
    assert flops[10] == 2 * 4 * 16 * 16  # global average: one addition per input element
    assert flops[12] == 2 * 2 * 4 * 10
    rf = [row.receptive_field for row in r.rows]
    # 3, BN/ReLU keep it, pool 4 (jump 2), conv 8, transpose k=2 at jump 1: 9, nearest keeps 9
    # (jump 1/2), 5x5 conv: 9 + 4/2 = 11 (jump 1), then global pooling and the head see it all.
    assert rf[:10] == [(3, 3)] * 3 + [(4, 4), (8, 8), (8, 8), (8, 8), (9, 9), (9, 9), (11, 11)]
    assert rf[10:] == [None, None, None]
    assert r.output_shape == (2, 10)


def test_adaptive_pool_windows():
    model = nn.Sequential(Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(5))
    r = nn.summary(model, (1, 1, 16, 16), verbose=False)
    # 14 -> 5: PyTorch's windows have sizes 3, 4, 4, 4, 3 (they overlap), stride 14/5
    assert r.rows[1].flops == 2 * 18 * 18
    assert r.rows[1].receptive_field == (6, 6)
    assert r.rows[1].jump == (Fraction(14, 5),) * 2
