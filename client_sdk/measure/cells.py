"""Torch networks of a cell space (``spaces.cells.CellSpace``; NAS-Bench-201's CIFAR network).

Follows the NB201 ``TinyNetwork``/``InferCell`` skeleton, read from the definition: the
stem (conv + BN), per stage a ``resnet`` reduction block (ResNet basic block, stride 2) where
the stage has one, then its cells, then the head's convs / norms (``lastact``: BN-ReLU for
NB-201), global average pooling and the linear classifier. Cell ops are act-Conv-BN
convolutions, ``zero`` (``x * 0``), ``skip`` (identity) and average pooling (stride 1,
'same' padding, ``count_include_pad=False``); a node sums its incoming edges.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from client_sdk.spaces.cells import CellSpace
from client_sdk.spaces.language import Block
from client_sdk.spaces.language_cells import CellOp

_ACTS = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hswish": nn.Hardswish,
    "swish": nn.SiLU,
    "sigmoid": nn.Sigmoid,
}


def _act(act: str, inplace: bool = False) -> list[nn.Module]:
    if act == "none":
        return []
    if act == "relu":
        return [nn.ReLU(inplace=inplace)]
    return [_ACTS[act]()]


class ReLUConvBN(nn.Sequential):
    """act-Conv-BN (the activation first: NB-201's ``ReLUConvBN``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, act: str = "relu") -> None:
        super().__init__(
            *_act(act),
            nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(op: CellOp, channels: int) -> nn.Module:
    if op.op == "zero":
        return Zero()
    if op.op == "skip":
        return nn.Identity()
    if op.op == "conv":
        return ReLUConvBN(channels, channels, op.kernel, 1, op.act)
    return nn.AvgPool2d(op.kernel, stride=1, padding=op.kernel // 2, count_include_pad=False)


class InferCell(nn.Module):
    """Node ``i`` = sum of ``op(node j)`` over its incoming edges; the output is the last."""

    def __init__(
        self, ops: Sequence[CellOp], edges: Sequence[tuple[int, int]], channels: int
    ) -> None:
        super().__init__()
        self.edges = nn.ModuleList(make_op(op, channels) for op in ops)
        self.sources = tuple(j for _, j in edges)
        self.targets = tuple(i for i, _ in edges)
        self.nodes = max(self.targets) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in range(1, self.nodes):
            total = None
            for op, src, dst in zip(self.edges, self.sources, self.targets, strict=True):
                if dst == node:
                    out = op(nodes[src])
                    total = out if total is None else total + out
            nodes.append(total)
        return nodes[-1]


class ResNetBasicBlock(nn.Module):
    """The ``resnet`` reduction: two ReLU-Conv-BN 3x3 (first strided) + avgpool/1x1 shortcut."""

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


def _fixed(b: Block, c_in: int) -> list[nn.Module]:
    """Modules of a stem/head conv (conv-BN-act) or norm (BN-act, in place)."""
    if b.op == "norm":
        return [nn.BatchNorm2d(c_in), *_act(b.act, inplace=True)]
    return [
        nn.Conv2d(
            c_in, b.out, b.kernel, b.stride, padding=b.kernel // 2, groups=b.groups, bias=False
        ),
        nn.BatchNorm2d(b.out),
        *_act(b.act),
    ]


class CellNetwork(nn.Module):
    def __init__(self, space: CellSpace, genes: Sequence[int]) -> None:
        super().__init__()
        d, cell = space.definition, space.definition.cell
        assert cell is not None
        self.resolution = d.resolutions[0]
        ops = tuple(cell.ops[int(v)] for v in genes)
        c = d.channels
        stem: list[nn.Module] = []
        for b in d.stem:
            stem += _fixed(b, c)
            c = c if b.op == "norm" else b.out
        self.stem = nn.Sequential(*stem)
        layers: list[nn.Module] = []
        for st in d.stages:
            if st.reduction is not None:
                layers.append(ResNetBasicBlock(c, st.out))
                c = st.out
            layers.extend(InferCell(ops, cell.edges, c) for _ in range(st.depths[0]))
        self.cells = nn.Sequential(*layers)
        pool = next(i for i, b in enumerate(d.head) if b.op == "pool")
        last: list[nn.Module] = []
        for b in d.head[:pool]:
            last += _fixed(b, c)
            c = c if b.op == "norm" else b.out
        self.lastact = nn.Sequential(*last)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        head: list[nn.Module] = []
        for b in d.head[pool + 1 :]:
            head += [nn.Linear(c, b.out, bias=b.bias), *_act(b.act)]
            c = b.out
        self.classifier = head[0] if len(head) == 1 else nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.global_pool(x), 1))


def build(space: CellSpace, genes: Sequence[int]) -> CellNetwork:
    """The network of one canonical gene vector (one op per edge)."""
    if len(genes) != space.num_genes:
        raise ValueError(f"expected {space.num_genes} genes, got {len(genes)}")
    return CellNetwork(space, genes)
