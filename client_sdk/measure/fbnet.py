"""FBNet 22-block ImageNet network, hand-coded: the reference the served network is checked
against. ``build_model("fbnet", genes)`` builds FBNet from its definition
(``client_sdk.measure.defined``); ``tests/unit/test_space_definitions_equal.py`` checks that
both count the same parameters and MACs. Kept for that check and ``benchmarks/studies/block_lut.py``
(which times these blocks alone).

Layout from ``client_sdk.spaces.fbnet`` (read from the definition): stem conv 3x3/2 to 16
channels (BN, ReLU), 22 blocks in the stages of FBNet Table 1, a 1x1 conv to 1984 (BN,
ReLU), global pooling and a 1000-way linear classifier. Block ``k{K}_e{E}[_g2]``: 1x1
expand (groups g, BN, ReLU), channel shuffle when g > 1, KxK depthwise (stride s, BN, ReLU),
1x1 project (groups g, BN), plus identity residual when the shape is kept. ``skip`` is
identity, or a strided 1x1 conv (BN, ReLU) where the shape changes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from client_sdk.measure.defined import Shuffle as ChannelShuffle
from client_sdk.spaces.fbnet import (
    HEAD_CHANNELS,
    INPUT_RESOLUTION,
    NUM_BLOCKS,
    NUM_CLASSES,
    OPS,
    STEM_CHANNELS,
    block_layout,
    parse_op,
)

DEFAULT_RESOLUTION = INPUT_RESOLUTION


def conv_bn(
    c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class FBNetBlock(nn.Module):
    def __init__(self, op: str, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        spec = parse_op(op)
        self.residual = c_in == c_out and stride == 1
        if spec is None:
            self.body: nn.Module = (
                nn.Identity() if self.residual else conv_bn(c_in, c_out, 1, stride)
            )
            self.residual = False  # skip: the body is the whole block
            return
        kernel, expand, groups = spec
        mid = c_in * expand
        layers: list[nn.Module] = [conv_bn(c_in, mid, 1, groups=groups)]
        if groups > 1:
            layers.append(ChannelShuffle(groups))
        layers.append(conv_bn(mid, mid, kernel, stride, groups=mid))
        layers.append(conv_bn(mid, c_out, 1, groups=groups, relu=False))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out


class FBNetNetwork(nn.Module):
    def __init__(self, ops: tuple[str, ...], num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.stem = conv_bn(3, STEM_CHANNELS, 3, stride=2)
        self.blocks = nn.Sequential(
            *(
                FBNetBlock(op, c_in, c_out, stride)
                for op, (c_in, c_out, stride, _) in zip(ops, block_layout(), strict=True)
            )
        )
        last = block_layout()[-1][1]
        self.head = conv_bn(last, HEAD_CHANNELS, 1)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(self.global_pool(x), 1))


def build(genes: np.ndarray) -> FBNetNetwork:
    """The network of one gene vector ``(22,)``."""
    ops = tuple(OPS[int(v)] for v in np.asarray(genes).reshape(-1))
    if len(ops) != NUM_BLOCKS:
        raise ValueError(f"expected {NUM_BLOCKS} genes, got {len(ops)}")
    return FBNetNetwork(ops)
