"""NAS-Bench-201 CIFAR network (C=16, N=5) built from a 6-gene cell encoding.

Follows the NB201 ``TinyNetwork``/``InferCell`` skeleton: stem conv3x3 + BN, three stages of
five cells (C = 16, 32, 64) with ResNet basic blocks (stride 2) between them, then BN-ReLU,
global average pooling and a linear classifier. Cell ops are ReLU-Conv-BN convolutions,
``none`` (zeros), ``skip_connect`` (identity) and 3x3 average pooling (stride 1, padding 1,
``count_include_pad=False``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from client_sdk.spaces.nasbench201 import EDGES, OPS

STEM_CHANNELS = 16
CELLS_PER_STAGE = 5
DEFAULT_RESOLUTION = 32
NUM_CLASSES = 10


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(op: str, channels: int) -> nn.Module:
    if op == "none":
        return Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1)
    if op == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NAS-Bench-201 op '{op}'")


class InferCell(nn.Module):
    """Node ``i`` = sum of ``op(node j)`` over its incoming edges; the output is node 3."""

    def __init__(self, ops: tuple[str, ...], channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(make_op(op, channels) for op in ops)
        self.sources = tuple(j for _, j in EDGES)
        self.targets = tuple(i for i, _ in EDGES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in (1, 2, 3):
            total = None
            for op, src, dst in zip(self.edges, self.sources, self.targets, strict=True):
                if dst == node:
                    out = op(nodes[src])
                    total = out if total is None else total + out
            nodes.append(total)
        return nodes[-1]


class ResNetBasicBlock(nn.Module):
    """NB201 reduction block: two ReLU-Conv-BN 3x3 (first strided) + avgpool/1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    def __init__(self, ops: tuple[str, ...], num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        c = STEM_CHANNELS
        self.stem = nn.Sequential(
            nn.Conv2d(3, c, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(c)
        )
        layers: list[nn.Module] = []
        for stage in range(3):
            if stage > 0:
                layers.append(ResNetBasicBlock(c, 2 * c))
                c *= 2
            layers.extend(InferCell(ops, c) for _ in range(CELLS_PER_STAGE))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.global_pool(x), 1))


def build(genes: np.ndarray) -> NB201Network:
    """The network of one canonical gene vector ``(6,)``."""
    ops = tuple(OPS[int(v)] for v in np.asarray(genes).reshape(-1))
    if len(ops) != len(EDGES):
        raise ValueError(f"expected {len(EDGES)} genes, got {len(ops)}")
    return NB201Network(ops)
