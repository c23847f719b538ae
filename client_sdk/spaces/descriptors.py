"""Hardware-agnostic architecture descriptors, computed from the architecture itself.

Each space's network is a fixed skeleton plus per-position choices (NB-201 edges, FBNet
blocks, OFA blocks at a resolution), so every descriptor is a sum of per-(position, choice)
table entries plus a fixed part, evaluated for a whole batch by one gather-sum (like
``flops``). Descriptors, per architecture:

* ``dense_macs``   multiply-accumulates of dense (incl. grouped) convolutions and linears;
* ``dw_macs``      multiply-accumulates of depthwise convolutions;
* ``weights``      parameter elements (weight bytes / 4);
* ``activations``  tensor elements read + written by the executed layers (memory traffic);
* ``kernels``      executed layers: convolutions (BN/activation fused), poolings, linears,
                   element-wise adds/multiplies/shuffles — skip/identity executes nothing;
* ``elementwise``  elements processed by element-wise / pooling layers;
* ``macs_stage{i}`` MACs per stage (per resolution), the per-resolution breakdown.

They follow the torch builders in ``client_sdk/measure`` layer by layer (checked by
``tests/unit/test_descriptors.py`` with forward hooks). NB-201's ``none`` op is a
multiply-by-zero in those builders (executed); cells whose output is disconnected from
their input (``degenerate``) are flagged separately, since some runtimes prune them.
"""

from __future__ import annotations

import functools

import numpy as np

BASE_NAMES = ("dense_macs", "dw_macs", "weights", "activations", "kernels", "elementwise")
_D = len(BASE_NAMES)


def _conv(c_in: int, c_out: int, kernel: int, stride: int, size: int, groups: int = 1,
          stage: int = 0, n_stages: int = 1, bn: bool = True) -> np.ndarray:
    """Descriptor row of one convolution (+ folded BN/activation) at input ``size``."""
    out = (size + stride - 1) // stride
    v = np.zeros(_D + n_stages)
    macs = c_in * c_out * kernel * kernel * out * out / groups
    if groups == c_in == c_out and groups > 1:
        v[1] = macs
    else:
        v[0] = macs
    v[2] = c_in * c_out * kernel * kernel / groups + (2 * c_out if bn else 0)
    v[3] = c_in * size * size + c_out * out * out
    v[4] = 1
    v[_D + stage] = macs
    return v


def _eltwise(elements: float, reads: int = 2, n_stages: int = 1) -> np.ndarray:
    """An element-wise layer over ``elements`` outputs reading ``reads`` tensors of that size."""
    v = np.zeros(_D + n_stages)
    v[3] = (reads + 1) * elements
    v[4] = 1
    v[5] = elements
    return v


def _linear(c_in: int, c_out: int, n_stages: int, stage: int) -> np.ndarray:
    v = np.zeros(_D + n_stages)
    v[0] = c_in * c_out
    v[2] = c_in * c_out + c_out
    v[3] = c_in + c_out
    v[4] = 1
    v[_D + stage] = c_in * c_out
    return v


# ------------------------------------------------------------------ NAS-Bench-201
@functools.cache
def nb201_tables() -> tuple[np.ndarray, np.ndarray]:
    """(6 edges, 5 ops, D) per-edge tables summed over the 15 cells, and the fixed (D,)."""
    from client_sdk.spaces.nasbench201 import OPS

    n_st = 3
    edge = np.zeros((6, len(OPS), _D + n_st))
    fixed = np.zeros(_D + n_st)
    fixed += _conv(3, 16, 3, 1, 32, stage=0, n_stages=n_st)  # stem (conv + BN)
    for stage, (c, hw) in enumerate(((16, 32), (32, 16), (64, 8))):
        if stage > 0:  # reduction block: conv_a (stride 2), conv_b, avgpool + 1x1, add
            c_in = c // 2
            fixed += _conv(c_in, c, 3, 2, 2 * hw, stage=stage, n_stages=n_st)
            fixed += _conv(c, c, 3, 1, hw, stage=stage, n_stages=n_st)
            pool = _eltwise(c_in * hw * hw, reads=1, n_stages=n_st)
            pool[3] = c_in * (2 * hw) ** 2 + c_in * hw * hw
            fixed += pool
            fixed += _conv(c_in, c, 1, 1, hw, stage=stage, n_stages=n_st, bn=False)
            fixed += _eltwise(c * hw * hw, n_stages=n_st)
        for _ in range(5):
            # node sums: node 2 adds 2 edge outputs, node 3 adds 3 (edge outputs always added)
            fixed += 3 * _eltwise(c * hw * hw, n_stages=n_st)
            for o, op in enumerate(OPS):
                if op == "none":  # Zero: x.mul(0)
                    row = _eltwise(c * hw * hw, reads=1, n_stages=n_st)
                elif op == "skip_connect":
                    row = np.zeros(_D + n_st)
                elif op == "avg_pool_3x3":
                    row = _eltwise(c * hw * hw, reads=1, n_stages=n_st)
                    row[5] = 9 * c * hw * hw
                else:
                    k = 1 if op == "nor_conv_1x1" else 3
                    row = _conv(c, c, k, 1, hw, stage=stage, n_stages=n_st)
                edge[:, o] += row
    last = _eltwise(64 * 8 * 8, reads=1, n_stages=n_st)  # last BN-ReLU
    last[2] = 2 * 64
    fixed += last
    pool = _eltwise(64, reads=1, n_stages=n_st)
    pool[3] = 64 * 8 * 8 + 64
    fixed += pool
    fixed += _linear(64, 10, n_st, 2)
    return edge, fixed


def nb201_degenerate(genes: np.ndarray) -> np.ndarray:
    """(n,) bool: the cell's output node is unreachable from its input (all paths 'none')."""
    live = np.asarray(genes) != 0  # op 0 is 'none'
    r1 = live[:, 0]
    r2 = live[:, 1] | (r1 & live[:, 2])
    return ~(live[:, 3] | (r1 & live[:, 4]) | (r2 & live[:, 5]))


# ------------------------------------------------------------------------ FBNet
@functools.cache
def fbnet_tables() -> tuple[np.ndarray, np.ndarray]:
    """(22 blocks, 9 ops, D) tables and the fixed (D,) part (stem, head, classifier)."""
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

    n_st = len(STAGES)
    stage_of = [s for s, (n, _, _) in enumerate(STAGES) for _ in range(n)]
    layout = block_layout()
    table = np.zeros((len(layout), len(OPS), _D + n_st))
    for j, (c_in, c_out, stride, size) in enumerate(layout):
        st = stage_of[j]
        out = (size + stride - 1) // stride
        for o, op in enumerate(OPS):
            spec = parse_op(op)
            if spec is None:
                if not (c_in == c_out and stride == 1):
                    table[j, o] = _conv(c_in, c_out, 1, stride, size, stage=st, n_stages=n_st)
                continue
            kernel, expand, groups = spec
            mid = c_in * expand
            row = _conv(c_in, mid, 1, 1, size, groups, st, n_st)
            if groups > 1:  # channel shuffle
                row += _eltwise(mid * size * size, reads=1, n_stages=n_st)
            row += _conv(mid, mid, kernel, stride, size, mid, st, n_st)
            row += _conv(mid, c_out, 1, 1, out, groups, st, n_st)
            if c_in == c_out and stride == 1:
                row += _eltwise(c_out * out * out, n_stages=n_st)
            table[j, o] = row
    size = INPUT_RESOLUTION
    fixed = _conv(3, STEM_CHANNELS, 3, 2, size, stage=0, n_stages=n_st)
    final = layout[-1][3]
    last = STAGES[-1][1]
    fixed = fixed + _conv(last, HEAD_CHANNELS, 1, 1, final, stage=n_st - 1, n_stages=n_st)
    pool = _eltwise(HEAD_CHANNELS, reads=1, n_stages=n_st)
    pool[3] = HEAD_CHANNELS * final * final + HEAD_CHANNELS
    fixed += pool + _linear(HEAD_CHANNELS, NUM_CLASSES, n_st, n_st - 1)
    return table, fixed


# --------------------------------------------------------------------- OFA-MBv3
@functools.cache
def ofa_tables() -> tuple[np.ndarray, np.ndarray]:
    """(R resolutions, 20 blocks, 3 kernels, 3 expands, D) and fixed (R, D)."""
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

    n_st = NUM_STAGES
    table = np.zeros((len(RESOLUTIONS), NUM_BLOCKS, len(KERNELS), len(EXPANDS), _D + n_st))
    fixed = np.zeros((len(RESOLUTIONS), _D + n_st))
    for r, res in enumerate(RESOLUTIONS):
        f = _conv(3, FIRST_CHANNELS, 3, 2, res, stage=0, n_stages=n_st)
        size = _half(res)
        # first block: 3x3 depthwise + 1x1 project at 16 channels, residual add
        f += _conv(FIRST_CHANNELS, FIRST_CHANNELS, 3, 1, size, FIRST_CHANNELS, 0, n_st)
        f += _conv(FIRST_CHANNELS, FIRST_CHANNELS, 1, 1, size, stage=0, n_stages=n_st)
        f += _eltwise(FIRST_CHANNELS * size * size, n_stages=n_st)
        c_in = FIRST_CHANNELS
        for s in range(NUM_STAGES):
            for b in range(MAX_DEPTH):
                stride = STRIDES[s] if b == 0 else 1
                block_in = c_in if b == 0 else WIDTHS[s]
                out = _half(size) if stride == 2 else size
                for ki, k in enumerate(KERNELS):
                    for ei, e in enumerate(EXPANDS):
                        mid = make_divisible(block_in * e)
                        row = _conv(block_in, mid, 1, 1, size, stage=s, n_stages=n_st)
                        row += _conv(mid, mid, k, stride, size, mid, s, n_st)
                        if USE_SE[s]:
                            red = make_divisible(mid // 4)
                            pool = _eltwise(mid, reads=1, n_stages=n_st)
                            pool[3] = mid * out * out + mid
                            row += pool
                            for a, c in ((mid, red), (red, mid)):
                                se = _linear(a, c, n_st, s)
                                se[2] += 0  # SE convs have biases: counted by _linear
                                row += se
                            row += _eltwise(mid * out * out, n_stages=n_st)  # x * gate
                        row += _conv(mid, WIDTHS[s], 1, 1, out, stage=s, n_stages=n_st)
                        if block_in == WIDTHS[s] and stride == 1:
                            row += _eltwise(WIDTHS[s] * out * out, n_stages=n_st)
                        table[r, 4 * s + b, ki, ei] = row
                if b == 0 and stride == 2:
                    size = _half(size)
            c_in = WIDTHS[s]
        f += _conv(WIDTHS[-1], FINAL_EXPAND, 1, 1, size, stage=n_st - 1, n_stages=n_st)
        pool = _eltwise(FINAL_EXPAND, reads=1, n_stages=n_st)
        pool[3] = FINAL_EXPAND * size * size + FINAL_EXPAND
        f += pool
        mix = _linear(FINAL_EXPAND, FEATURE_MIX, n_st, n_st - 1)
        mix[2] -= FEATURE_MIX  # the 1x1 feature mix has no bias
        f += mix + _linear(FEATURE_MIX, NUM_CLASSES, n_st, n_st - 1)
        fixed[r] = f
    return table, fixed


# ------------------------------------------------------------------------- API
@functools.cache
def _ofa_flat_rows() -> np.ndarray:
    """``ofa_tables()``'s table as rows (resolution, block, kernel, expand) + one zero row
    (what an inactive block adds)."""
    table, _ = ofa_tables()
    rows = table.reshape(-1, table.shape[-1])
    return np.concatenate([rows, np.zeros((1, rows.shape[1]))])


def descriptor_names(space: str) -> tuple[str, ...]:
    if space not in ("nasbench201", "fbnet", "ofa_mbv3"):
        return _defined(space).descriptor_names()
    n_st = {"nasbench201": 3, "fbnet": 7, "ofa_mbv3": 5}[space]
    return BASE_NAMES + tuple(f"macs_stage{i}" for i in range(n_st))


def _gather_sum(table: np.ndarray, fixed: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``fixed + sum_j table[j, g[:, j]]``, one (n, D) gather per gene position (no
    (n, positions, D) intermediate: 2.5x faster for FBNet 10k)."""
    out = np.empty((len(g), table.shape[2]))
    out[:] = fixed
    columns = np.ascontiguousarray(g.T)  # one contiguous index row per position (any int)
    for j in range(table.shape[0]):
        out += table[j].take(columns[j], axis=0)
    return out


def descriptors(space: str, genes: np.ndarray, matrix: np.ndarray | None = None) -> np.ndarray:
    """(n, D) float64 descriptors of a validated gene batch (see the module docstring).

    ``matrix`` (D, P): return ``descriptors @ matrix`` (n, P) instead, with ``matrix``
    folded into the per-(position, choice) tables first, so the batch pass gathers P
    values per position instead of D (a head linear in a few descriptor combinations
    reads only those; equal up to float rounding).
    """
    g = np.asarray(genes)
    if g.dtype.kind not in "iu":
        g = g.astype(np.int64)
    if space == "nasbench201":
        return _gather_sum(*_folded(nb201_tables(), matrix), g)
    if space == "fbnet":
        return _gather_sum(*_folded(fbnet_tables(), matrix), g)
    g = g.astype(np.int64, copy=False)
    if space == "ofa_mbv3":
        from client_sdk.spaces.ofa_mbv3 import (
            DEPTHS,
            EXPAND_GENES,
            KERNEL_GENES,
            MAX_DEPTH,
            NUM_BLOCKS,
            RES_GENE,
        )

        table, fixed = ofa_tables()
        flat = _ofa_flat_rows()
        if matrix is not None:
            flat, fixed = flat @ matrix, fixed @ matrix
        res = g[:, RES_GENE]
        depth = np.asarray(DEPTHS)[g[:, 1:6]]
        active = (np.arange(MAX_DEPTH)[None, None, :] < depth[:, :, None]).reshape(-1, NUM_BLOCKS)
        # one (n, D) gather per block (no (n, blocks, D) intermediate), inactive blocks
        # masked to an all-zero row
        k, e = table.shape[2], table.shape[3]
        zero = flat.shape[0] - 1
        out = fixed[res].copy()
        kern, expd = g[:, KERNEL_GENES].T.copy(), g[:, EXPAND_GENES].T.copy()
        act = np.ascontiguousarray(active.T)
        base = res * (NUM_BLOCKS * k * e)
        for b in range(NUM_BLOCKS):
            idx = base + (b * k + kern[b]) * e + expd[b]
            out += flat.take(np.where(act[b], idx, zero), axis=0)
        return out
    return _defined(space).descriptors(g, matrix)


def _defined(space: str):  # -> spaces.defined.DefinedSpace
    """A space from a definition: it carries its own descriptor tables."""
    from client_sdk.spaces import get_space

    sp = get_space(space)
    if not hasattr(sp, "descriptor_names"):
        raise ValueError(f"no descriptors for space '{space}'")
    return sp


def _folded(tables: tuple[np.ndarray, np.ndarray],
            matrix: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(positions, choices, D) tables and fixed (D,) part, times ``matrix`` (D, P) if given."""
    table, fixed = tables
    if matrix is None:
        return table, fixed
    return table @ matrix, fixed @ matrix


def degenerate(space: str, genes: np.ndarray) -> np.ndarray:
    """(n,) bool: architectures some runtimes prune to (almost) nothing."""
    if space == "nasbench201":
        return nb201_degenerate(np.asarray(genes))
    return np.zeros(len(genes), dtype=bool)
