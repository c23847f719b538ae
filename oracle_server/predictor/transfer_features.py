"""Richer space-independent descriptors for transferring a device across spaces.

``client_sdk.spaces.descriptors`` sums six quantities over a network's executed layers.
Transferring a device's latency model to another space (``cross_space``) benefits from a
finer split of the same layers, still in absolute units (the same meaning in every space):

* ``macs_1x1`` / ``macs_kxk`` / ``dw_macs``  dense MACs of 1x1 convolutions and linears,
  of larger-kernel dense convolutions, and depthwise MACs;
* ``weights``; ``act_conv`` / ``act_other``  activation traffic of convolutions and
  linears vs element-wise layers and poolings;
* ``conv_launches`` / ``other_launches``     executed convolutions + linears vs the others
  (a runtime fuses BN/activation into a convolution; an element-wise op is its own launch);
* ``elementwise``;
* ``roof_{r}``  a per-layer roofline ``sum_l max(macs_l / r, traffic_l)`` (traffic:
  activations + weights) for a device of ``r`` MACs per element of memory traffic.

Like the six descriptors, every column is a sum of per-(position, choice) rows plus a fixed
part, so a batch is one gather-sum per position (``rich_descriptors``): every space from a
definition — NAS-Bench-201, FBNet and OFA-MobileNetV3 included — from the layer lists of
its blocks or cell edges (``spaces.defined_tables.table_entries``); a network space from
its networks' layer lists.
"""

from __future__ import annotations

import functools

import numpy as np

from client_sdk.spaces.layers import Layer

ROOF_RATIOS = (4, 16, 64, 256)
#: output spatial area lower bounds of the MAC buckets (112x112, 56x56, ..., smaller)
AREA_BUCKETS = (112 * 112, 56 * 56, 28 * 28, 14 * 14, 7 * 7, 0)
RICH_NAMES = (
    "macs_1x1",
    "macs_kxk",
    "dw_macs",
    "weights",
    "act_conv",
    "act_other",
    "conv_launches",
    "other_launches",
    "elementwise",
    *(f"roof_{r}" for r in ROOF_RATIOS),
    *(f"macs_area{b}" for b in AREA_BUCKETS),
)
NUM_RICH = len(RICH_NAMES)
#: absolute unit of each rich column (same in every space; conditioning only)
RICH_SCALE = np.array(
    [
        1e8,
        1e8,
        1e7,
        1e6,
        1e7,
        1e7,
        100.0,
        100.0,
        1e6,
        *(1e7 for _ in ROOF_RATIOS),
        *(1e8 for _ in AREA_BUCKETS),
    ]
)
#: (NUM_RICH, 6): rich columns -> ``spaces.descriptors.BASE_NAMES``
BASE_FROM_RICH = np.zeros((NUM_RICH, 6))
for _i, _j in ((0, 0), (1, 0), (2, 1), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4), (8, 5)):
    BASE_FROM_RICH[_i, _j] = 1.0


def layer_row(layer: Layer) -> np.ndarray:
    """(NUM_RICH,) rich row of one executed layer (``params``: weights only, no traffic)."""
    base = layer.row()  # dense, dw, weights, activations, kernels, elementwise
    v = np.zeros(NUM_RICH)
    if layer.kind == "params":
        v[3] = base[2]
        return v
    compute = layer.kind in ("conv", "linear")
    if compute:
        v[0 if layer.kind == "linear" or layer.kernel_area == 1 else 1] = base[0]
        v[2] = base[1]
        v[4] = base[3]
        v[6] = 1.0
    else:
        v[5] = base[3]
        v[7] = 1.0
    v[3] = base[2]
    v[8] = base[5]
    macs, traffic = base[0] + base[1], base[3] + base[2]
    for i, r in enumerate(ROOF_RATIOS):
        v[9 + i] = max(macs / r, traffic)
    if compute:
        b = next(i for i, lo in enumerate(AREA_BUCKETS) if layer.area_out >= lo)
        v[9 + len(ROOF_RATIOS) + b] = macs
    return v


def rows(layers: list[Layer]) -> np.ndarray:
    out = np.zeros(NUM_RICH)
    for layer in layers:
        out += layer_row(layer)
    return out


# --------------------------------------------------------------------- tables
@functools.lru_cache(maxsize=16)
def _defined_tables(sp) -> tuple[np.ndarray, np.ndarray]:
    """A space from a definition: (flat rows + zero row, fixed per global combo) in
    ``DefinedSpace._tables``' layout, from the same walk of the definition
    (``spaces.defined_tables.table_entries``)."""
    from client_sdk.spaces.defined_tables import layer_tables

    return layer_tables(sp, lambda layers, _stage: rows(layers), NUM_RICH)


@functools.lru_cache(maxsize=16)
def _network_table(sp) -> np.ndarray:
    """A space of given networks: one rich row per network."""
    return np.stack([rows(list(net)) for net in sp.network_layers])


# ------------------------------------------------------------------------- API
def rich_descriptors(space: str, genes: np.ndarray, matrix: np.ndarray | None = None
                     ) -> np.ndarray:
    """(n, NUM_RICH) rich descriptors of a validated gene batch: a space from a definition
    gathers them as its own descriptors (``DefinedSpace._gather``). ``matrix`` (NUM_RICH,
    P): ``rich @ matrix`` (n, P) instead, folded into the tables first (as
    ``spaces.descriptors.descriptors``: P values gathered per position, not NUM_RICH)."""
    from client_sdk.spaces import get_space

    sp = get_space(space)
    if hasattr(sp, "network_layers"):
        table = _network_table(sp)
        return (table if matrix is None else table @ matrix)[
            np.asarray(genes)[:, 0].astype(np.int64)]
    if not hasattr(sp, "positions"):
        raise ValueError(f"no rich descriptors for space '{space}'")
    flat, fixed = _defined_tables(sp)
    if matrix is not None:
        flat, fixed = flat @ matrix, fixed @ matrix
    return sp._gather(flat, fixed, genes)
