"""Thirty plain-torch ImageNet networks of different families (issue 26, "any architecture").

Hand-written as a user would write them (no torchvision): ResNet-like (basic and
bottleneck blocks), VGG-like, MobileNet-V1/V2-like, ShuffleNet-V1/V2-like, SqueezeNet-,
AlexNet-, MnasNet-like (SE, h-swish) and a few simple CNNs, at different widths, depths and
input resolutions (128-224), 1000 classes. ``ZOO`` maps a stable name to a ``ZooNet`` (a
builder returning an ``nn.Module`` in eval mode, with deterministic weights, and the input
resolution). Used by ``benchmarks.networks_onboarding``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 1000


def _div8(v: float) -> int:
    return max(8, int(v + 4) // 8 * 8)


def conv_bn(
    c_in: int,
    c_out: int,
    k: int,
    stride: int = 1,
    groups: int = 1,
    act: type[nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    mods: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act is not None:
        mods.append(act(inplace=True) if act in (nn.ReLU, nn.ReLU6, nn.Hardswish) else act())
    return nn.Sequential(*mods)


def _head(c: int, num_classes: int = NUM_CLASSES) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))


# ---------------------------------------------------------------------- ResNet
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, c: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(c_in, c, 3, stride)
        self.conv2 = conv_bn(c, c, 3, act=None)
        self.down = (
            conv_bn(c_in, c, 1, stride, act=None) if stride != 1 or c_in != c else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.down(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, c: int, stride: int) -> None:
        super().__init__()
        out = 4 * c
        self.body = nn.Sequential(
            conv_bn(c_in, c, 1), conv_bn(c, c, 3, stride), conv_bn(c, out, 1, act=None)
        )
        self.down = (
            conv_bn(c_in, out, 1, stride, act=None) if stride != 1 or c_in != out else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        out += self.down(x)
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(
        self, block: type[BasicBlock] | type[Bottleneck], depths: tuple[int, ...], width: int = 64
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, width, 7, 2), nn.MaxPool2d(3, 2, 1))
        stages: list[nn.Module] = []
        c_in = width
        for i, n in enumerate(depths):
            c = width * 2**i
            for b in range(n):
                stages.append(block(c_in, c, 2 if (b == 0 and i > 0) else 1))
                c_in = c * block.expansion
        self.stages = nn.Sequential(*stages)
        self.head = _head(c_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


# ------------------------------------------------------------------------- VGG
class VGG(nn.Module):
    def __init__(
        self, cfg: tuple[int | str, ...], width: float = 1.0, bn: bool = True, fc: int = 0
    ) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        c_in = 3
        for v in cfg:
            if v == "M":
                mods.append(nn.MaxPool2d(2, 2))
                continue
            c = _div8(int(v) * width)
            if bn:
                mods.append(conv_bn(c_in, c, 3))
            else:
                mods += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*mods)
        if fc:
            self.classifier: nn.Module = nn.Sequential(
                nn.AdaptiveAvgPool2d(2),
                nn.Flatten(),
                nn.Linear(4 * c_in, fc),
                nn.ReLU(inplace=True),
                nn.Dropout(0.5),
                nn.Linear(fc, NUM_CLASSES),
            )
        else:
            self.classifier = _head(c_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
VGG13 = (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
VGG8 = (32, "M", 64, "M", 128, 128, "M", 256, "M", 256, "M")


# ---------------------------------------------------------------- MobileNet V1
class MobileNetV1(nn.Module):
    CFG = (
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (1024, 2),
        (1024, 1),
    )

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        c_in = _div8(32 * width)
        mods: list[nn.Module] = [conv_bn(3, c_in, 3, 2)]
        for c, s in self.CFG:
            c = _div8(c * width)
            mods += [conv_bn(c_in, c_in, 3, s, groups=c_in), conv_bn(c_in, c, 1)]
            c_in = c
        self.features = nn.Sequential(*mods)
        self.head = _head(c_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---------------------------------------------------------------- MobileNet V2
class InvertedResidual(nn.Module):
    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int,
        expand: int,
        kernel: int = 3,
        act: type[nn.Module] = nn.ReLU6,
        se: bool = False,
    ) -> None:
        super().__init__()
        mid = c_in * expand
        mods: list[nn.Module] = []
        if expand != 1:
            mods.append(conv_bn(c_in, mid, 1, act=act))
        mods.append(conv_bn(mid, mid, kernel, stride, groups=mid, act=act))
        if se:
            mods.append(SqueezeExcite(mid))
        mods.append(conv_bn(mid, c_out, 1, act=None))
        self.body = nn.Sequential(*mods)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class SqueezeExcite(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        mid = _div8(c / 4)
        self.reduce = nn.Conv2d(c, mid, 1)
        self.expand = nn.Conv2d(mid, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * F.hardsigmoid(self.expand(F.relu(self.reduce(s))))


class MobileNetV2(nn.Module):
    CFG = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        c_in = _div8(32 * width)
        mods: list[nn.Module] = [conv_bn(3, c_in, 3, 2, act=nn.ReLU6)]
        for t, c, n, s in self.CFG:
            c = _div8(c * width)
            for i in range(n):
                mods.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                c_in = c
        last = _div8(1280 * max(1.0, width))
        mods.append(conv_bn(c_in, last, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*mods)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class MnasLike(nn.Module):
    """MBConv stages with squeeze-excite and h-swish (MobileNet-V3 / MnasNet flavour)."""

    CFG = (
        (3, 1, 16, 1, 1, False),
        (3, 4, 24, 2, 2, False),
        (5, 3, 40, 3, 2, True),
        (3, 6, 80, 3, 2, False),
        (3, 6, 112, 2, 1, True),
        (5, 6, 160, 3, 2, True),
    )

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        c_in = _div8(16 * width)
        mods: list[nn.Module] = [conv_bn(3, c_in, 3, 2, act=nn.Hardswish)]
        for k, e, c, n, s, se in self.CFG:
            c = _div8(c * width)
            for i in range(n):
                act = nn.Hardswish if c >= 80 else nn.ReLU
                mods.append(InvertedResidual(c_in, c, s if i == 0 else 1, e, k, act, se))
                c_in = c
        mods.append(conv_bn(c_in, 960, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*mods)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(960, 1280),
            nn.Hardswish(),
            nn.Linear(1280, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# ------------------------------------------------------------------- ShuffleNet
def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleV2Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = c_out // 2
        src = c_in if stride == 2 else half
        self.branch2 = nn.Sequential(
            conv_bn(src, half, 1),
            conv_bn(half, half, 3, stride, groups=half, act=None),
            conv_bn(half, half, 1),
        )
        self.branch1 = (
            nn.Sequential(conv_bn(c_in, c_in, 3, 2, groups=c_in, act=None), conv_bn(c_in, half, 1))
            if stride == 2
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            a, b = x.chunk(2, dim=1)
            out = torch.cat((a, self.branch2(b)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    WIDTHS: ClassVar[dict[float, tuple[int, ...]]] = {
        0.5: (48, 96, 192, 1024),
        1.0: (116, 232, 464, 1024),
        1.5: (176, 352, 704, 1024),
        2.0: (244, 488, 976, 2048),
    }

    def __init__(self, width: float = 1.0, repeats: tuple[int, ...] = (4, 8, 4)) -> None:
        super().__init__()
        *stage_c, last = self.WIDTHS[width]
        self.stem = nn.Sequential(conv_bn(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1))
        mods: list[nn.Module] = []
        c_in = 24
        for c, n in zip(stage_c, repeats, strict=True):
            for i in range(n):
                mods.append(ShuffleV2Block(c_in, c, 2 if i == 0 else 1))
                c_in = c
        self.stages = nn.Sequential(*mods)
        self.last = conv_bn(c_in, last, 1)
        self.head = _head(last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.last(self.stages(self.stem(x))))


class ShuffleV1Unit(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, groups: int, first_groups: int) -> None:
        super().__init__()
        self.stride, self.groups = stride, groups
        mid = c_out // 4
        if stride == 2:
            c_out -= c_in
        self.g_conv1 = conv_bn(c_in, mid, 1, groups=first_groups)
        self.dw = conv_bn(mid, mid, 3, stride, groups=mid, act=None)
        self.g_conv2 = conv_bn(mid, c_out, 1, groups=groups, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = channel_shuffle(self.g_conv1(x), self.groups)
        out = self.g_conv2(self.dw(out))
        if self.stride == 2:
            return F.relu(torch.cat((F.avg_pool2d(x, 3, 2, 1), out), 1))
        return F.relu(x + out)


class ShuffleNetV1(nn.Module):
    def __init__(self, groups: int = 3, widths: tuple[int, ...] = (240, 480, 960)) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1))
        mods: list[nn.Module] = []
        c_in = 24
        for c, n in zip(widths, (4, 8, 4), strict=True):
            for i in range(n):
                first = 1 if c_in == 24 else groups
                mods.append(ShuffleV1Unit(c_in, c, 2 if i == 0 else 1, groups, first))
                c_in = c
        self.stages = nn.Sequential(*mods)
        self.head = _head(c_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


# ------------------------------------------------------------------ simple CNNs
class Fire(nn.Module):
    def __init__(self, c_in: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(c_in, squeeze, 1), nn.ReLU(inplace=True))
        self.e1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU(inplace=True))
        self.e3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.e1(x), self.e3(x)], 1)


def squeezenet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, 2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(64, 16, 64),
        Fire(128, 16, 64),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(128, 32, 128),
        Fire(256, 32, 128),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(256, 48, 192),
        Fire(384, 48, 192),
        Fire(384, 64, 256),
        Fire(512, 64, 256),
        nn.Dropout(0.5),
        nn.Conv2d(512, NUM_CLASSES, 1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def alexnet_like(width: float = 1.0) -> nn.Module:
    c = [_div8(v * width) for v in (64, 192, 384, 256, 256)]
    return nn.Sequential(
        nn.Conv2d(3, c[0], 11, 4, 2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(c[0], c[1], 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(c[1], c[2], 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c[2], c[3], 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c[3], c[4], 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.AdaptiveAvgPool2d(3),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(9 * c[4], 1024),
        nn.ReLU(inplace=True),
        nn.Linear(1024, NUM_CLASSES),
    )


def plain_cnn(
    widths: tuple[int, ...], per_stage: int = 1, act: type[nn.Module] = nn.ReLU
) -> nn.Module:
    """Conv-BN-act stacks, a stride-2 conv opening each stage, global pool, linear."""
    mods: list[nn.Module] = []
    c_in = 3
    for c in widths:
        for i in range(per_stage):
            mods.append(conv_bn(c_in, c, 3, 2 if i == 0 else 1, act=act))
            c_in = c
    return nn.Sequential(*mods, *_head(c_in))


# ------------------------------------------------------------------------- zoo
@dataclass(frozen=True)
class ZooNet:
    name: str
    family: str
    make: Callable[[], nn.Module]
    resolution: int

    def build(self, seed: int = 0) -> nn.Module:
        """The network in eval mode, weights drawn from ``seed`` (global RNG untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.make().eval()

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, 3, self.resolution, self.resolution)


def _zoo() -> dict[str, ZooNet]:
    b, bn = BasicBlock, Bottleneck
    nets = [
        ZooNet("resnet10_r192", "resnet", lambda: ResNet(b, (1, 1, 1, 1)), 192),
        ZooNet("resnet18_r224", "resnet", lambda: ResNet(b, (2, 2, 2, 2)), 224),
        ZooNet("resnet18_w32_r224", "resnet", lambda: ResNet(b, (2, 2, 2, 2), 32), 224),
        ZooNet("resnet26_w48_r160", "resnet", lambda: ResNet(b, (3, 3, 3, 3), 48), 160),
        ZooNet("resnet34_r128", "resnet", lambda: ResNet(b, (3, 4, 6, 3)), 128),
        ZooNet("resnet26b_r192", "resnet", lambda: ResNet(bn, (2, 2, 2, 2)), 192),
        ZooNet("resnet50_r160", "resnet", lambda: ResNet(bn, (3, 4, 6, 3)), 160),
        ZooNet("resnet50_w32_r224", "resnet", lambda: ResNet(bn, (3, 4, 6, 3), 32), 224),
        ZooNet("vgg8_r192", "vgg", lambda: VGG(VGG8), 192),
        ZooNet("vgg11_w025_r224", "vgg", lambda: VGG(VGG11, 0.25, fc=512), 224),
        ZooNet("vgg11_w05_r128", "vgg", lambda: VGG(VGG11, 0.5, bn=False), 128),
        ZooNet("vgg13_w05_r160", "vgg", lambda: VGG(VGG13, 0.5), 160),
        ZooNet("mobilenetv1_w100_r224", "mobilenetv1", lambda: MobileNetV1(1.0), 224),
        ZooNet("mobilenetv1_w075_r192", "mobilenetv1", lambda: MobileNetV1(0.75), 192),
        ZooNet("mobilenetv1_w050_r160", "mobilenetv1", lambda: MobileNetV1(0.5), 160),
        ZooNet("mobilenetv1_w025_r224", "mobilenetv1", lambda: MobileNetV1(0.25), 224),
        ZooNet("mobilenetv2_w100_r224", "mobilenetv2", lambda: MobileNetV2(1.0), 224),
        ZooNet("mobilenetv2_w075_r160", "mobilenetv2", lambda: MobileNetV2(0.75), 160),
        ZooNet("mobilenetv2_w100_r128", "mobilenetv2", lambda: MobileNetV2(1.0), 128),
        ZooNet("mobilenetv2_w050_r224", "mobilenetv2", lambda: MobileNetV2(0.5), 224),
        ZooNet("mobilenetv2_w140_r192", "mobilenetv2", lambda: MobileNetV2(1.4), 192),
        ZooNet("mnaslike_w100_r192", "mnas", lambda: MnasLike(1.0), 192),
        ZooNet("shufflenetv2_x10_r224", "shufflenet", lambda: ShuffleNetV2(1.0), 224),
        ZooNet("shufflenetv2_x05_r224", "shufflenet", lambda: ShuffleNetV2(0.5), 224),
        ZooNet("shufflenetv2_x15_r160", "shufflenet", lambda: ShuffleNetV2(1.5), 160),
        ZooNet("shufflenetv1_g3_r192", "shufflenet", lambda: ShuffleNetV1(3), 192),
        ZooNet("squeezenet_r224", "simple", squeezenet, 224),
        ZooNet("alexnet_w075_r224", "simple", lambda: alexnet_like(0.75), 224),
        ZooNet("plain4_r128", "simple", lambda: plain_cnn((32, 64, 128, 256)), 128),
        ZooNet(
            "plain10_silu_r160",
            "simple",
            lambda: plain_cnn((24, 48, 96, 192, 384), 2, nn.SiLU),
            160,
        ),
    ]
    return {n.name: n for n in nets}


ZOO: dict[str, ZooNet] = _zoo()
