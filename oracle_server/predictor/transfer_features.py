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
part, so a batch is one gather-sum per position (``rich_descriptors``): the bundled spaces
from per-(position, choice) layer lists mirroring ``spaces.descriptors`` (checked against
it: ``BASE_FROM_RICH``), a space from a definition from its blocks' layer lists
(``spaces.defined.block_layers``).
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from client_sdk.spaces.layers import Layer, conv, eltwise, global_pool, linear

ROOF_RATIOS = (4, 16, 64, 256)
#: output spatial area lower bounds of the MAC buckets (112x112, 56x56, ..., smaller)
AREA_BUCKETS = (112 * 112, 56 * 56, 28 * 28, 14 * 14, 7 * 7, 0)
RICH_NAMES = ("macs_1x1", "macs_kxk", "dw_macs", "weights", "act_conv", "act_other",
              "conv_launches", "other_launches", "elementwise",
              *(f"roof_{r}" for r in ROOF_RATIOS),
              *(f"macs_area{b}" for b in AREA_BUCKETS))
NUM_RICH = len(RICH_NAMES)
#: absolute unit of each rich column (same in every space; conditioning only)
RICH_SCALE = np.array([1e8, 1e8, 1e7, 1e6, 1e7, 1e7, 100.0, 100.0, 1e6,
                       *(1e7 for _ in ROOF_RATIOS), *(1e8 for _ in AREA_BUCKETS)])
#: (NUM_RICH, 6): rich columns -> ``spaces.descriptors.BASE_NAMES``
BASE_FROM_RICH = np.zeros((NUM_RICH, 6))
for _i, _j in ((0, 0), (1, 0), (2, 1), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4), (8, 5)):
    BASE_FROM_RICH[_i, _j] = 1.0


def layer_row(layer: Layer) -> np.ndarray:
    """(NUM_RICH,) rich row of one executed layer."""
    base = layer.row()  # dense, dw, weights, activations, kernels, elementwise
    v = np.zeros(NUM_RICH)
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


def _weights(n: float) -> np.ndarray:
    """A row adding ``n`` weights only (a BatchNorm outside any convolution)."""
    v = np.zeros(NUM_RICH)
    v[3] = n
    return v


# ------------------------------------------------------------------ NAS-Bench-201
@functools.cache
def nb201_rich_tables() -> tuple[np.ndarray, np.ndarray]:
    """(6 edges, 5 ops, R) summed over the 15 cells, fixed (R,) (``nb201_tables``)."""
    from client_sdk.spaces.nasbench201 import OPS

    op_rows = np.zeros((len(OPS), NUM_RICH))
    fixed = rows([conv(3, 16, 3, 1, 32)])
    for stage, (c, hw) in enumerate(((16, 32), (32, 16), (64, 8))):
        if stage > 0:
            c_in = c // 2
            fixed += rows([conv(c_in, c, 3, 2, 2 * hw), conv(c, c, 3, 1, hw),
                           Layer("pool", c_in, c_in, 4 * hw * hw, hw * hw, 1),
                           conv(c_in, c, 1, 1, hw, bn=False), eltwise(c, hw)])
        for _ in range(5):
            fixed += 3 * rows([eltwise(c, hw)])
            for o, op in enumerate(OPS):
                if op == "none":
                    layers = [eltwise(c, hw, reads=1)]
                elif op == "skip_connect":
                    layers = []
                elif op == "avg_pool_3x3":
                    layers = [Layer("pool", c, c, hw * hw, hw * hw, 9)]
                else:
                    layers = [conv(c, c, 1 if op == "nor_conv_1x1" else 3, 1, hw)]
                op_rows[o] += rows(layers)
    fixed += rows([eltwise(64, 8, reads=1)]) + _weights(2 * 64)
    fixed += rows([global_pool(64, 8), linear(64, 10)])
    return np.broadcast_to(op_rows, (6, *op_rows.shape)).copy(), fixed


# ------------------------------------------------------------------------ FBNet
@functools.cache
def fbnet_rich_tables() -> tuple[np.ndarray, np.ndarray]:
    """(22 blocks, 9 ops, R) and fixed (R,) (``fbnet_tables``)."""
    from client_sdk.spaces.fbnet import (
        HEAD_CHANNELS,
        INPUT_RESOLUTION,
        NUM_CLASSES,
        OPS,
        STAGES,
        STEM_CHANNELS,
        block_layout,
        parse_op,
    )

    layout = block_layout()
    table = np.zeros((len(layout), len(OPS), NUM_RICH))
    for j, (c_in, c_out, stride, size) in enumerate(layout):
        out = (size + stride - 1) // stride
        same = c_in == c_out and stride == 1
        for o, op in enumerate(OPS):
            spec = parse_op(op)
            if spec is None:
                layers = [] if same else [conv(c_in, c_out, 1, stride, size)]
            else:
                kernel, expand, groups = spec
                mid = c_in * expand
                layers = [conv(c_in, mid, 1, 1, size, groups)]
                if groups > 1:
                    layers.append(eltwise(mid, size, reads=1))
                layers += [conv(mid, mid, kernel, stride, size, mid),
                           conv(mid, c_out, 1, 1, out, groups)]
                if same:
                    layers.append(eltwise(c_out, out))
            table[j, o] = rows(layers)
    final = layout[-1][3]
    fixed = rows([conv(3, STEM_CHANNELS, 3, 2, INPUT_RESOLUTION),
                  conv(STAGES[-1][1], HEAD_CHANNELS, 1, 1, final),
                  global_pool(HEAD_CHANNELS, final), linear(HEAD_CHANNELS, NUM_CLASSES)])
    return table, fixed


# --------------------------------------------------------------------- OFA-MBv3
@functools.cache
def ofa_rich_tables() -> tuple[np.ndarray, np.ndarray]:
    """(resolutions, 20 blocks, 3 kernels, 3 expands, R) and fixed (resolutions, R)."""
    from client_sdk.spaces.ofa_mbv3 import (
        EXPANDS,
        FEATURE_MIX,
        FINAL_EXPAND,
        FIRST_CHANNELS,
        KERNELS,
        MAX_DEPTH,
        NUM_BLOCKS,
        NUM_CLASSES,
        NUM_STAGES,
        RESOLUTIONS,
        STRIDES,
        USE_SE,
        WIDTHS,
        _half,
        make_divisible,
    )

    table = np.zeros((len(RESOLUTIONS), NUM_BLOCKS, len(KERNELS), len(EXPANDS), NUM_RICH))
    fixed = np.zeros((len(RESOLUTIONS), NUM_RICH))
    for r, res in enumerate(RESOLUTIONS):
        size = _half(res)
        f = rows([conv(3, FIRST_CHANNELS, 3, 2, res),
                  conv(FIRST_CHANNELS, FIRST_CHANNELS, 3, 1, size, FIRST_CHANNELS),
                  conv(FIRST_CHANNELS, FIRST_CHANNELS, 1, 1, size),
                  eltwise(FIRST_CHANNELS, size)])
        c_in = FIRST_CHANNELS
        for s in range(NUM_STAGES):
            for b in range(MAX_DEPTH):
                stride = STRIDES[s] if b == 0 else 1
                block_in = c_in if b == 0 else WIDTHS[s]
                out = _half(size) if stride == 2 else size
                for (ki, k), (ei, e) in itertools.product(enumerate(KERNELS), enumerate(EXPANDS)):
                    mid = make_divisible(block_in * e)
                    layers = [conv(block_in, mid, 1, 1, size), conv(mid, mid, k, stride, size, mid)]
                    if USE_SE[s]:
                        red = make_divisible(mid // 4)
                        layers += [global_pool(mid, out), linear(mid, red), linear(red, mid),
                                   eltwise(mid, out)]
                    layers.append(conv(mid, WIDTHS[s], 1, 1, out))
                    if block_in == WIDTHS[s] and stride == 1:
                        layers.append(eltwise(WIDTHS[s], out))
                    table[r, 4 * s + b, ki, ei] = rows(layers)
                if b == 0 and stride == 2:
                    size = _half(size)
            c_in = WIDTHS[s]
        f += rows([conv(WIDTHS[-1], FINAL_EXPAND, 1, 1, size), global_pool(FINAL_EXPAND, size),
                   linear(FINAL_EXPAND, FEATURE_MIX, bias=False),
                   linear(FEATURE_MIX, NUM_CLASSES)])
        fixed[r] = f
    return table, fixed


# -------------------------------------------------------- spaces from definitions
def _defined_rich_tables(sp) -> tuple[np.ndarray, np.ndarray]:
    """(flat rows + zero row, fixed per global combo) in ``DefinedSpace._tables``' layout
    (``spaces.defined.build_tables`` with rich rows)."""
    from client_sdk.spaces.defined import block_layers, fixed_layers, scaled

    d = sp.definition
    _, _, offsets, _ = sp._tables
    combos = list(itertools.product(range(len(d.resolutions)), range(len(d.widths))))
    flat = np.zeros((len(combos) * int(offsets[-1]) + 1, NUM_RICH))
    fixed = np.zeros((len(combos), NUM_RICH))
    for gc, (ri, wi) in enumerate(combos):
        res, width = d.resolutions[ri], d.widths[wi]
        base = gc * int(offsets[-1])
        c, size = d.channels, res
        for b in d.stem:
            c_out = c if b.op in ("pool", "skip") else scaled(b.out, width)
            fixed[gc] += rows(fixed_layers(b, c, c_out, b.stride, size))
            c, size = c_out, (size + b.stride - 1) // b.stride
        for p, pos in enumerate(sp.positions):
            st = d.stages[pos.stage]
            c_out = scaled(st.out, width)
            stride = st.stride if pos.index == 0 else 1
            c_in = c if pos.index == 0 else c_out
            side = size if pos.index == 0 else (size + st.stride - 1) // st.stride
            genes = np.zeros(sp.num_genes, dtype=np.int64)
            cards = [int(sp.cardinalities[j]) for j in pos.genes]
            for code, combo in enumerate(itertools.product(*(range(k) for k in cards))):
                genes[list(pos.genes)] = combo
                flat[base + offsets[p] + code] = rows(
                    block_layers(sp.block_of(p, genes), c_in, c_out, stride, side))
            if pos.index == st.max_depth - 1:
                c, size = c_out, (size + st.stride - 1) // st.stride
        last = len(d.head) - 1
        for i, b in enumerate(d.head):
            if b.op == "linear":
                c_out = b.out if i == last else scaled(b.out, width)
            else:
                c_out = c if b.op in ("pool", "skip") else scaled(b.out, width)
            fixed[gc] += rows(fixed_layers(b, c, c_out, b.stride, size))
            c, size = c_out, (1 if b.op == "pool" else (size + b.stride - 1) // b.stride)
    return flat, fixed


_DEFINED_CACHE: dict[int, tuple[object, tuple[np.ndarray, np.ndarray]]] = {}


def _defined_tables(sp) -> tuple[np.ndarray, np.ndarray]:
    hit = _DEFINED_CACHE.get(id(sp))
    if hit is None or hit[0] is not sp:
        hit = (sp, _defined_rich_tables(sp))
        _DEFINED_CACHE[id(sp)] = hit
    return hit[1]


# ------------------------------------------------------------------------- API
def _gather_sum(table: np.ndarray, fixed: np.ndarray, g: np.ndarray) -> np.ndarray:
    out = np.empty((len(g), table.shape[-1]))
    out[:] = fixed
    for j in range(table.shape[0]):
        out += table[j].take(g[:, j], axis=0)
    return out


def rich_descriptors(space: str, genes: np.ndarray) -> np.ndarray:
    """(n, NUM_RICH) rich descriptors of a validated gene batch (vectorised gather-sum)."""
    g = np.asarray(genes).astype(np.int64, copy=False)
    if space == "nasbench201":
        return _gather_sum(*nb201_rich_tables(), g)
    if space == "fbnet":
        return _gather_sum(*fbnet_rich_tables(), g)
    if space == "ofa_mbv3":
        from client_sdk.spaces.ofa_mbv3 import (
            DEPTHS,
            EXPAND_GENES,
            KERNEL_GENES,
            MAX_DEPTH,
            NUM_BLOCKS,
            RES_GENE,
        )

        table, fixed = ofa_rich_tables()
        k, e = table.shape[2], table.shape[3]
        flat = np.concatenate([table.reshape(-1, NUM_RICH), np.zeros((1, NUM_RICH))])
        zero = flat.shape[0] - 1
        res = g[:, RES_GENE]
        depth = np.asarray(DEPTHS)[g[:, 1:6]]
        active = (np.arange(MAX_DEPTH)[None, None, :] < depth[:, :, None]).reshape(-1, NUM_BLOCKS)
        out = fixed[res].copy()
        kern, expd = g[:, KERNEL_GENES].T.copy(), g[:, EXPAND_GENES].T.copy()
        act = np.ascontiguousarray(active.T)
        base = res * (NUM_BLOCKS * k * e)
        for b in range(NUM_BLOCKS):
            idx = base + (b * k + kern[b]) * e + expd[b]
            out += flat.take(np.where(act[b], idx, zero), axis=0)
        return out
    from client_sdk.spaces import get_space

    sp = get_space(space)
    if hasattr(sp, "network_layers"):  # a space of given networks: one row per network
        table = np.stack([rows(list(net)) for net in sp.network_layers])
        return table[g[:, 0]]
    if not hasattr(sp, "positions"):
        raise ValueError(f"no rich descriptors for space '{space}'")
    flat, fixed = _defined_tables(sp)
    gc = sp._global_code(g)
    _, _, offsets, radix = sp._tables
    zero = flat.shape[0] - 1
    out = fixed[gc].copy()
    for p, pos in enumerate(sp.positions):
        code = np.zeros(len(g), dtype=np.int64)
        for j, r in zip(pos.genes, radix[p], strict=True):
            code += g[:, j] * r
        idx = gc * offsets[-1] + offsets[p] + code
        dgene = sp._depth_genes.get(pos.stage)
        if dgene is not None:
            act = np.asarray(sp._values[dgene])[g[:, dgene]] > pos.index
            idx = np.where(act, idx, zero)
        out += flat.take(idx, axis=0)
    return out
