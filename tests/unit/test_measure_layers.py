"""``client_sdk.measure.layers``: torch modules traced into layer lists and descriptors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from client_sdk.measure.builders import build_model, input_resolution
from client_sdk.measure.layers import layers, named_layers, network_descriptors
from client_sdk.spaces import get_space
from client_sdk.spaces.descriptors import descriptors
from client_sdk.spaces.layers import Layer


class Tiny(nn.Module):
    """conv-BN-ReLU, conv-BN, residual add + ReLU, global pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(4), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(4))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = F.relu(self.conv2(x) + x)
        return self.fc(torch.flatten(self.pool(x), 1))


def test_tiny_network_hand_computed() -> None:
    # 8x8 input, area 64. conv1: 3*4*9*64 MACs, 3*4*9 + 2*4 weights, 3*64 + 4*64 traffic;
    # conv2: 4*4*9*64, 144 + 8, 256 + 256; add (+ fused ReLU): reads 2 -> 3*256 traffic,
    # 256 element-wise; global pool: 256 + 4 traffic, 4 element-wise (kernel area 1);
    # linear: 40 MACs, 40 + 10 weights, 4 + 10 traffic.
    want = np.array([6912 + 9216 + 40, 0, 116 + 152 + 50, 448 + 512 + 768 + 260 + 14, 5,
                     256 + 4])
    model = Tiny()
    np.testing.assert_array_equal(network_descriptors(model, (1, 3, 8, 8)), want)
    # per sample: the batch does not change the descriptors
    np.testing.assert_array_equal(network_descriptors(model, (3, 3, 8, 8)), want)
    kinds = [(path, lay.kind) for path, lay in named_layers(model, (1, 3, 8, 8))]
    assert kinds == [("conv1.0", "conv"), ("conv2.0", "conv"), ("", "eltwise"),
                     ("pool", "pool"), ("fc", "linear")]
    got = layers(model, (1, 3, 8, 8))
    assert got[0] == Layer("conv", 3, 4, 64, 64, 9, 1, bn=True, bias=False)
    assert got[2].reads == 2


def test_depthwise_and_grouped() -> None:
    dw = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False),
                       nn.BatchNorm2d(8), nn.ReLU6())
    d = network_descriptors(dw, (1, 8, 16, 16))
    assert d[0] == 0 and d[1] == 8 * 9 * 64  # 8 channels x 9 taps x 8x8 outputs
    assert d[2] == 8 * 9 + 16 and d[4] == 1
    grouped = nn.Conv2d(8, 16, 1, groups=2, bias=True)
    d = network_descriptors(grouped, (1, 8, 4, 4))
    assert d[1] == 0 and d[0] == 8 * 16 / 2 * 16 and d[2] == 64 + 16


class SE(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(c, c // 4, 1)
        self.expand = nn.Conv2d(c // 4, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(3, keepdim=True).mean(2, keepdim=True)  # one global pool
        return x * (F.relu6(self.expand(F.relu(self.reduce(s))) + 3.0) / 6.0)  # h-sigmoid


def test_se_gate_multiply_counted() -> None:
    c, side = 16, 8
    body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
                         nn.BatchNorm2d(c), nn.Hardswish(), SE(c))
    got = layers(body, (1, c, side, side))
    assert [lay.kind for lay in got] == ["conv", "pool", "conv", "conv", "eltwise"]
    pool, gate = got[1], got[-1]
    assert (pool.area_in, pool.area_out, pool.kernel_area) == (side * side, 1, 1)
    assert gate.reads == 2 and gate.c_out == c and gate.area_out == side * side
    # the gate multiply: 3 tensors' traffic, c*side*side element-wise work
    np.testing.assert_array_equal(gate.row(), [0, 0, 0, 3 * c * 64, 1, c * 64])


def test_shuffle_cat_and_views() -> None:
    class Shuffle(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a, b = x.chunk(2, dim=1)  # views: nothing
            y = torch.cat((a, torch.sigmoid(b)), 1)  # sigmoid of the input: a layer
            n, c, h, w = y.shape
            y = y.view(n, 2, c // 2, h, w).transpose(1, 2)  # views
            return y.reshape(n, c, h, w).flatten(1)  # the reshape copies; flatten is a view

    got = layers(Shuffle(), (1, 8, 4, 4))
    assert [(lay.kind, lay.reads, lay.c_out * lay.area_out) for lay in got] == [
        ("eltwise", 1, 64), ("eltwise", 1, 128), ("eltwise", 1, 128)]


def _agreement(space: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    sp = get_space(space)
    genes = sp.sample(n, rng=seed)
    want = descriptors(space, genes)[:, :6]
    got = []
    for g in genes:
        r = input_resolution(sp, g)
        got.append(network_descriptors(build_model(sp, g), (1, 3, r, r)))
    return np.array(got), want


@pytest.mark.parametrize("space", ["fbnet", "ofa_mbv3"])
def test_agrees_with_bundled_descriptors(space: str) -> None:
    got, want = _agreement(space, 3, seed=21)
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_nb201_macs_and_weights_agree() -> None:
    """NB-201: MACs and weights exact; traffic / kernels / element-wise differ by the
    documented conventions (a ``none`` edge fused into a conv's epilogue; the reduction
    block's 2x2 average pool counts 4 inputs per output)."""
    got, want = _agreement("nasbench201", 5, seed=3)
    np.testing.assert_allclose(got[:, :3], want[:, :3], rtol=1e-9)
    np.testing.assert_allclose(got[:, 3:], want[:, 3:], rtol=0.25)


def test_unsupported_module_named() -> None:
    model = nn.Module()
    model.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv3d(4, 4, 1))
    model.forward = lambda x: model.features(x)  # type: ignore[method-assign]
    with pytest.raises(ValueError, match=re.escape("unsupported module 'features.2' (Conv3d)")):
        layers(model, (1, 3, 8, 8))
    lstm = nn.Sequential(nn.Flatten(2), nn.LSTM(64, 8))
    with pytest.raises(ValueError, match=re.escape("'1' (LSTM)")):
        layers(lstm, (1, 3, 8, 8))

    class Attention(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ x.transpose(-1, -2)

    with pytest.raises(ValueError, match="unsupported op 'matmul'"):
        layers(nn.Sequential(nn.Conv2d(3, 3, 1), Attention()), (1, 3, 4, 4))


def test_model_unchanged() -> None:
    model = Tiny()
    model.train()
    model.conv2.eval()  # mixed flags are restored module by module
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {name: m.training for name, m in model.named_modules()}
    x = torch.randn(2, 3, 8, 8)
    model.eval()
    with torch.no_grad():
        ref = model(x)
    model.train()
    model.conv2.eval()
    network_descriptors(model, (2, 3, 8, 8))
    assert {name: m.training for name, m in model.named_modules()} == flags
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics untouched
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    assert all(p.requires_grad for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), ref)
    # a failing trace also cleans up
    bad = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv1d(4, 4, 1)).train()
    with pytest.raises(ValueError):
        layers(bad, (1, 3, 4, 4))
    assert bad.training and all(not m._forward_pre_hooks for m in bad.modules())


def test_a_batch_norm_after_a_linear_folds_into_it_once() -> None:
    """Linear -> BatchNorm1d is one linear layer carrying the BN's 2 x C parameters; a second
    BN after it is a standalone norm (it was never folded before: the check was always
    true)."""


    got = layers(nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4)).eval(), (2, 8))
    assert [(x.kind, x.extra_weights) for x in got] == [("linear", 8)]
    twice = layers(nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4), nn.BatchNorm1d(4)).eval(),
                   (2, 8))
    assert [(x.kind, x.extra_weights) for x in twice] == [("linear", 8), ("eltwise", 8)]
