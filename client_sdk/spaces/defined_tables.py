"""The layer lists and descriptor tables of a ``DefinedSpace`` (``spaces.defined``).

``block_layers`` / ``fixed_layers``: the executed layers (``spaces.layers`` rows) of a block
or a stem/head entry; ``build_tables``: every (global choice, position, block choice) row of
the descriptors plus the fixed part per global choice, each block checked for channel/group
consistency (errors name the stage and the choice).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from client_sdk.spaces.language import Block, InvalidSpaceDefinition
from client_sdk.spaces.layers import (
    NUM_BASE,
    Layer,
    conv,
    eltwise,
    global_pool,
    linear,
    params,
)

if TYPE_CHECKING:
    from client_sdk.spaces.defined import DefinedSpace

#: the fixed ops whose output has their input's channels
KEEPS_CHANNELS = ("pool", "skip", "norm")


def make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def label(v: object) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def scaled(channels: int, width: float) -> int:
    return channels if width == 1.0 else make_divisible(channels * width)


def mid_channels(block: Block, c_in: int) -> int:
    return c_in if block.expand == 1.0 else make_divisible(c_in * block.expand)


def block_layers(b: Block, c_in: int, c_out: int, stride: int, size: int) -> list[Layer]:
    """The executed layers of one block (``spaces.layers`` rows), in forward order."""
    out = (size + stride - 1) // stride
    same = c_in == c_out and stride == 1
    if b.op == "skip":
        return [] if same else [conv(c_in, c_out, 1, stride, size)]
    if b.op == "conv":
        return [conv(c_in, c_out, b.kernel, stride, size, b.groups)]
    mid = mid_channels(b, c_in)
    layers: list[Layer] = []
    if b.expand != 1.0 or b.expand_conv == "always":
        layers.append(conv(c_in, mid, 1, 1, size, b.groups))
        if b.groups > 1:  # channel shuffle
            layers.append(eltwise(mid, size, reads=1))
    layers.append(conv(mid, mid, b.kernel, stride, size, mid))
    if b.se:
        red = make_divisible(mid // 4)
        layers += [global_pool(mid, out), linear(mid, red), linear(red, mid),
                   eltwise(mid, out)]
    layers.append(conv(mid, c_out, 1, 1, out, b.groups))
    if same:
        layers.append(eltwise(c_out, out))
    return layers


def fixed_layers(b: Block, c_in: int, c_out: int, stride: int, size: int) -> list[Layer]:
    """Layers of a stem/head entry or a block (``norm``: a standalone BatchNorm + act, one
    element-wise kernel and its 2 x C parameters)."""
    if b.op == "pool":
        return [global_pool(c_in, size)]
    if b.op == "norm":
        return [eltwise(c_in, size, reads=1), params(2 * c_in)]
    if b.op == "linear":
        return [linear(c_in, c_out, bias=b.bias)]
    return block_layers(b, c_in, c_out, stride, size)


def _rows(layers: list[Layer], stage: int, n_stages: int) -> np.ndarray:
    v = np.zeros(NUM_BASE + n_stages)
    for layer in layers:
        r = layer.row()
        v[:NUM_BASE] += r
        v[NUM_BASE + stage] += r[0] + r[1]
    return v


def table_layout(sp: DefinedSpace) -> tuple[np.ndarray, list[list[int]]]:
    """Per-position row offsets into one global choice's block of the flat table (the last
    entry is that block's size) and each position's mixed-radix weights of its genes."""
    radix, sizes = [], []
    for pos in sp.positions:
        cards = [int(sp.cardinalities[j]) for j in pos.genes]
        radix.append([int(np.prod(cards[k + 1:], dtype=np.int64)) for k in range(len(cards))])
        sizes.append(int(np.prod(cards, dtype=np.int64)))
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64), radix


def table_entries(sp: DefinedSpace) -> Iterator[tuple[int, int | None, int, list[Layer]]]:
    """Every entry of the descriptor tables as ``(global choice, flat row or None for the
    fixed part, stage, its layers)``, each block checked for channel/group consistency.

    One walk of the definition for every table built from layer rows (these descriptors,
    and e.g. the transferred basis's richer ones: ``predictor.transfer_features``). A cell
    space yields an edge's row once per cell (``spaces.cells.cell_entries``): rows add up."""
    d = sp.definition
    if d.cell is not None:
        from client_sdk.spaces.cells import cell_entries

        yield from cell_entries(sp)
        return
    offsets, _ = table_layout(sp)
    last = len(d.head) - 1
    combos = itertools.product(range(len(d.resolutions)), range(len(d.widths)))
    for gc, (ri, wi) in enumerate(combos):
        res, width = d.resolutions[ri], d.widths[wi]
        base = gc * int(offsets[-1])
        c, size = d.channels, res
        for i, b in enumerate(d.stem):
            c_out = c if b.op in KEEPS_CHANNELS else scaled(b.out, width)
            _check_block(b, c, c_out, f"stem[{i}]")
            yield gc, None, 0, fixed_layers(b, c, c_out, b.stride, size)
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
                blk = sp.block_of(p, genes)
                chosen = ", ".join(sp.choices[j][v]
                                   for j, v in zip(pos.genes, combo, strict=True))
                _check_block(blk, c_in, c_out, f"stages[{pos.stage}] block {pos.index}"
                             + (f" ({chosen})" if chosen else ""))
                yield (gc, base + int(offsets[p]) + code, pos.stage,
                       block_layers(blk, c_in, c_out, stride, side))
            if pos.index == st.max_depth - 1:
                c, size = c_out, (size + st.stride - 1) // st.stride
        for i, b in enumerate(d.head):
            if b.op == "linear":
                c_out = b.out if i == last else scaled(b.out, width)
            else:
                c_out = c if b.op in KEEPS_CHANNELS else scaled(b.out, width)
            _check_block(b, c, c_out, f"head[{i}]")
            yield gc, None, sp.num_stages - 1, fixed_layers(b, c, c_out, b.stride, size)
            c, size = c_out, (1 if b.op == "pool" else (size + b.stride - 1) // b.stride)


def layer_tables(sp: DefinedSpace, row: Callable[[list[Layer], int], np.ndarray],
                 dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat rows + one zero row, fixed part per global choice) with ``row(layers, stage)``
    the ``dim`` values of an entry's layers (``table_entries``)."""
    d = sp.definition
    offsets, _ = table_layout(sp)
    n_combos = len(d.resolutions) * len(d.widths)
    flat = np.zeros((n_combos * int(offsets[-1]) + 1, dim))
    fixed = np.zeros((n_combos, dim))
    for gc, index, stage, layers in table_entries(sp):
        if index is None:
            fixed[gc] += row(layers, stage)
        else:
            flat[index] += row(layers, stage)
    return flat, fixed


def build_tables(sp: DefinedSpace) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """Every (global choice, position, block choice) row of the descriptors, the fixed part
    per global choice, the position offsets and gene radices (``DefinedSpace._tables``)."""
    n_st = sp.num_stages
    flat, fixed = layer_tables(sp, lambda layers, stage: _rows(layers, stage, n_st),
                               NUM_BASE + n_st)
    offsets, radix = table_layout(sp)
    return flat, fixed, offsets, radix


def _check_block(b: Block, c_in: int, c_out: int, where: str) -> None:
    if b.groups == 1 or b.op not in ("conv", "mbconv"):
        return
    if b.op == "mbconv" and b.expand == 1.0 and b.expand_conv == "auto":
        raise InvalidSpaceDefinition(where, f"groups {b.groups} need an expansion conv "
                                     "(expand > 1 or expand_conv: always)")
    mid = mid_channels(b, c_in) if b.op == "mbconv" else c_out
    for what, ch in (("input", c_in), ("expanded", mid), ("output", c_out)):
        if ch % b.groups:
            raise InvalidSpaceDefinition(where, f"groups {b.groups} do not divide the "
                                         f"{ch} {what} channels")
