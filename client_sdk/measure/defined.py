"""Torch networks of a ``DefinedSpace`` architecture (the space language's builder).

One module per layer group of ``DefinedSpace.walk``, so the executed layers are the ones
``DefinedSpace.layers`` lists (checked by ``tests/unit/test_space_language.py``): convs with
folded BN and a fused activation, inverted residuals with an optional squeeze-excite (pool,
two linears, a gate multiply) and a channel shuffle for grouped 1x1 convs, skips, global
pooling and linears (``bias`` and ``act`` as defined: a bias-free "feature mix" linear with
an activation before the classifier, as OFA-MobileNetV3 has). A ``skip`` that changes the
shape is a strided 1x1 conv with BN and the block's activation (as FBNet's).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from client_sdk.spaces.defined import DefinedSpace, make_divisible, mid_channels
from client_sdk.spaces.language import Block

_ACTS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish, "swish": nn.SiLU,
         "sigmoid": nn.Sigmoid, "none": nn.Identity}


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1,
            act: str = "none") -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out), _ACTS[act]())


class Shuffle(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        red = make_divisible(channels // 4)
        self.reduce = nn.Linear(channels, red)
        self.expand = nn.Linear(red, channels)
        self.act, self.gate = nn.ReLU(), nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gate(self.expand(self.act(self.reduce(x.mean((2, 3))))))
        return x * s[:, :, None, None]


class MBConv(nn.Module):
    def __init__(self, b: Block, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        mid = mid_channels(b, c_in)
        layers: list[nn.Module] = []
        if b.expand != 1.0 or b.expand_conv == "always":
            layers.append(conv_bn(c_in, mid, 1, 1, b.groups, b.act))
            if b.groups > 1:
                layers.append(Shuffle(b.groups))
        layers.append(conv_bn(mid, mid, b.kernel, stride, mid, b.act))
        if b.se:
            layers.append(SqueezeExcite(mid))
        layers.append(conv_bn(mid, c_out, 1, 1, b.groups))
        self.body = nn.Sequential(*layers)
        self.residual = c_in == c_out and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def layer_group(b: Block, c_in: int, c_out: int, stride: int) -> nn.Module:
    if b.op == "pool":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if b.op == "norm":
        return nn.Sequential(nn.BatchNorm2d(c_in), _ACTS[b.act]())
    if b.op == "linear":
        lin = nn.Linear(c_in, c_out, bias=b.bias)
        return lin if b.act == "none" else nn.Sequential(lin, _ACTS[b.act]())
    if b.op == "skip":
        if c_in == c_out and stride == 1:
            return nn.Identity()
        return conv_bn(c_in, c_out, 1, stride, act=b.act)
    if b.op == "conv":
        return conv_bn(c_in, c_out, b.kernel, stride, b.groups, b.act)
    return MBConv(b, c_in, c_out, stride)


class DefinedNetwork(nn.Module):
    def __init__(self, space: DefinedSpace, genes: Sequence[int]) -> None:
        super().__init__()
        self.resolution = space.globals_of(genes)[0]
        self.layers = nn.Sequential(*(layer_group(b, c_in, c_out, stride)
                                      for _, b, c_in, c_out, stride, _ in space.walk(genes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def build(space: DefinedSpace, genes: Sequence[int]) -> nn.Module:
    """The network of one gene vector (a cell space's: ``measure.cells``)."""
    if space.definition.cell is not None:
        from client_sdk.measure import cells

        return cells.build(space, genes)  # type: ignore[arg-type]
    return DefinedNetwork(space, genes)
