"""Once-for-All MobileNetV3 (w1.0) sub-network built from a 46-gene encoding.

Matches ``client_sdk.spaces.ofa_mbv3`` and OFA's ``MobileNetV3`` sub-network export:
first conv 3x3/2 to 16 (BN, h-swish), a fixed MBConv (expand 1, 3x3 depthwise, ReLU) with
identity shortcut, the *active* blocks only (``b < depth_s``) of 5 stages (widths 24, 40,
80, 112, 160; strides 2, 2, 2, 1, 2; activations ReLU, ReLU, h-swish, h-swish, h-swish;
squeeze-excite in stages 1, 3, 4), final 1x1 expand to 960 (BN, h-swish), global pooling,
1x1 feature mix to 1280 (no BN, h-swish) and a 1000-way linear classifier. h-swish and
h-sigmoid use OFA's ``relu6(x + 3) / 6`` formulation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from client_sdk.spaces.ofa_mbv3 import (
    DEPTH_GENES,
    DEPTHS,
    EXPAND_GENES,
    EXPANDS,
    FEATURE_MIX,
    FINAL_EXPAND,
    FIRST_CHANNELS,
    KERNEL_GENES,
    KERNELS,
    MAX_DEPTH,
    NUM_CLASSES,
    NUM_STAGES,
    RES_GENE,
    RESOLUTIONS,
    STRIDES,
    USE_SE,
    WIDTHS,
    make_divisible,
)

STAGE_ACTS = ("relu", "relu", "h_swish", "h_swish", "h_swish")


class HSwish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.relu6(x + 3.0) / 6.0


class HSigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


def activation(name: str) -> nn.Module:
    return HSwish() if name == "h_swish" else nn.ReLU(inplace=True)


class SEModule(nn.Module):
    """OFA squeeze-excite: mean pool, 1x1 reduce (bias), ReLU, 1x1 expand (bias), h-sigmoid."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        mid = make_divisible(channels // reduction)
        self.fc = nn.Sequential(
            nn.Conv2d(channels, mid, 1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, channels, 1, bias=True),
            HSigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean(3, keepdim=True).mean(2, keepdim=True)
        return x * self.fc(y)


def conv_bn_act(
    c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = None
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act is not None:
        layers.append(activation(act))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    def __init__(
        self, c_in: int, c_out: int, kernel: int, expand: int, stride: int, act: str, se: bool
    ) -> None:
        super().__init__()
        mid = make_divisible(round(c_in * expand))
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_act(c_in, mid, 1, act=act))
        layers.append(conv_bn_act(mid, mid, kernel, stride, groups=mid, act=act))
        if se:
            layers.append(SEModule(mid))
        layers.append(conv_bn_act(mid, c_out, 1))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out


class OFAMobileNetV3Network(nn.Module):
    def __init__(
        self,
        depths: tuple[int, ...],
        kernels: tuple[int, ...],
        expands: tuple[int, ...],
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        self.first_conv = conv_bn_act(3, FIRST_CHANNELS, 3, stride=2, act="h_swish")
        blocks: list[nn.Module] = [
            MBConv(FIRST_CHANNELS, FIRST_CHANNELS, 3, 1, 1, act="relu", se=False)
        ]
        c_in = FIRST_CHANNELS
        for s in range(NUM_STAGES):
            for b in range(depths[s]):
                j = MAX_DEPTH * s + b
                stride = STRIDES[s] if b == 0 else 1
                act, se = STAGE_ACTS[s], USE_SE[s]
                blocks.append(MBConv(c_in, WIDTHS[s], kernels[j], expands[j], stride, act, se))
                c_in = WIDTHS[s]
        self.blocks = nn.Sequential(*blocks)
        self.final_expand = conv_bn_act(c_in, FINAL_EXPAND, 1, act="h_swish")
        self.feature_mix = nn.Sequential(
            nn.Conv2d(FINAL_EXPAND, FEATURE_MIX, 1, bias=False), HSwish()
        )
        self.classifier = nn.Linear(FEATURE_MIX, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_expand(self.blocks(self.first_conv(x)))
        x = x.mean(3, keepdim=True).mean(2, keepdim=True)
        x = self.feature_mix(x)
        return self.classifier(torch.flatten(x, 1))


def decode(genes: np.ndarray) -> tuple[int, tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Gene vector ``(46,)`` -> (resolution, depths, kernels, expands) in real values."""
    g = [int(v) for v in np.asarray(genes).reshape(-1)]
    return (
        RESOLUTIONS[g[RES_GENE]],
        tuple(DEPTHS[v] for v in g[DEPTH_GENES]),
        tuple(KERNELS[v] for v in g[KERNEL_GENES]),
        tuple(EXPANDS[v] for v in g[EXPAND_GENES]),
    )


def build(genes: np.ndarray) -> OFAMobileNetV3Network:
    """The sub-network of one gene vector (its resolution is the input's, see ``decode``)."""
    _, depths, kernels, expands = decode(genes)
    return OFAMobileNetV3Network(depths, kernels, expands)
