"""Layer lists: a network as the sequence of executed layers, and their descriptors.

This is the space-independent currency of layer-level prediction. A layer is what a
runtime launches as one kernel (a convolution with its folded BN/activation, a linear, an
element-wise op, a pooling); its descriptor row follows ``spaces.descriptors.BASE_NAMES``:

* ``dense_macs`` / ``dw_macs``  multiply-accumulates (depthwise: groups == c_in == c_out > 1);
* ``weights``      parameter elements (BN folded as 2 per output channel);
* ``activations``  tensor elements read + written (memory traffic);
* ``kernels``      1 per executed layer;
* ``elementwise``  elements processed by element-wise / pooling layers.

A ``params`` entry is parameters no layer of the list holds (a standalone BatchNorm's
scale and shift, as the space language's ``norm`` lists them): weights only, no kernel.

Spatial sizes are areas (``H * W``) so non-square inputs and kernels need no special case.
The same rows are produced by the space language (``spaces.language``) for a definition
and by ``client_sdk.measure.layers`` for a traced torch module, so a device fit on one
can rank the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from client_sdk.spaces.descriptors import BASE_NAMES

NUM_BASE = len(BASE_NAMES)
KINDS = ("conv", "linear", "eltwise", "pool", "params")


@dataclass(frozen=True)
class Layer:
    """One executed layer. ``area_in`` / ``area_out``: spatial elements per channel."""

    kind: str  # one of KINDS
    c_in: int
    c_out: int
    area_in: int = 1
    area_out: int = 1
    kernel_area: int = 1  # kh * kw (conv, pool)
    groups: int = 1
    bn: bool = True  # conv: a folded BatchNorm (2 parameters per output channel)
    bias: bool = False  # conv / linear: a bias vector
    reads: int = 1  # eltwise: input tensors read (an add reads 2)
    #: parameters the fields cannot express (a standalone normalisation's scale and shift,
    #: a BN folded into a linear), added to ``weights``
    extra_weights: int = 0

    def row(self) -> np.ndarray:
        """The layer's descriptor row, ``(NUM_BASE,)`` float64."""
        v = np.zeros(NUM_BASE)
        if self.kind == "conv":
            macs = self.c_in * self.c_out * self.kernel_area * self.area_out / self.groups
            depthwise = self.groups == self.c_in == self.c_out and self.groups > 1
            v[1 if depthwise else 0] = macs
            v[2] = (self.c_in * self.c_out * self.kernel_area / self.groups
                    + (2 * self.c_out if self.bn else 0) + (self.c_out if self.bias else 0))
            v[3] = self.c_in * self.area_in + self.c_out * self.area_out
        elif self.kind == "linear":
            v[0] = self.c_in * self.c_out
            v[2] = self.c_in * self.c_out + (self.c_out if self.bias else 0)
            v[3] = self.c_in + self.c_out
        elif self.kind == "eltwise":
            elements = self.c_out * self.area_out
            v[3] = (self.reads + 1) * elements
            v[5] = elements
        elif self.kind == "pool":
            v[3] = self.c_in * self.area_in + self.c_out * self.area_out
            v[5] = self.c_out * self.area_out * self.kernel_area
        elif self.kind != "params":
            raise ValueError(f"unknown layer kind {self.kind!r} (known: {', '.join(KINDS)})")
        v[2] += self.extra_weights
        v[4] = 0.0 if self.kind == "params" else 1.0
        return v

    def to_list(self) -> list:
        """The wire form of a network definition (``spaces.networks``)."""
        return [self.kind, self.c_in, self.c_out, self.area_in, self.area_out,
                self.kernel_area, self.groups, int(self.bn), int(self.bias), self.reads,
                self.extra_weights]


def conv(c_in: int, c_out: int, kernel: int, stride: int, size: int, groups: int = 1,
         bn: bool = True, bias: bool = False) -> Layer:
    """A square convolution with 'same' padding at input side ``size``."""
    out = (size + stride - 1) // stride
    return Layer("conv", c_in, c_out, size * size, out * out, kernel * kernel, groups, bn, bias)


def linear(c_in: int, c_out: int, bias: bool = True) -> Layer:
    return Layer("linear", c_in, c_out, bias=bias)


def eltwise(channels: int, size: int, reads: int = 2) -> Layer:
    return Layer("eltwise", channels, channels, size * size, size * size, reads=reads)


def params(count: int) -> Layer:
    """``count`` parameters held by no layer of the list (weights only, no kernel)."""
    return Layer("params", 0, 0, extra_weights=count)


def global_pool(channels: int, size: int) -> Layer:
    """Global average pooling of a ``size x size`` map to one value per channel."""
    return Layer("pool", channels, channels, size * size, 1, 1)


def descriptor_sum(layers: Iterable[Layer]) -> np.ndarray:
    """``(NUM_BASE,)`` descriptor of a network: the sum of its layers' rows."""
    out = np.zeros(NUM_BASE)
    for layer in layers:
        out += layer.row()
    return out
