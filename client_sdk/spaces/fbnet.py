"""FBNet space: 22 searchable blocks x 9 candidate operations (5,000 sampled in the table).

Macro-architecture of FBNet (Wu et al., CVPR 2019, Table 1) at 224x224 input: stem conv
3x3/2 to 16 channels, then 22 blocks in stages (n, c, s) = (1,16,1) (4,24,2) (4,32,2)
(4,64,2) (4,112,1) (4,184,2) (1,352,1), a 1x1 conv to 1984 and a 1000-way classifier.
A block ``k{K}_e{E}[_g2]`` is 1x1 expand (groups g) -> KxK depthwise (stride s) -> 1x1
project (groups g); ``skip`` is identity, or a strided 1x1 conv where the shape changes.
String form: the 22 op names joined by '-'.
"""

from __future__ import annotations

import functools

import numpy as np

from client_sdk.data import load_table
from client_sdk.errors import InvalidArchitecture
from client_sdk.spaces.base import GENE_DTYPE, SearchSpace, Table, lookup_choice

OPS = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
STAGES = ((1, 16, 1), (4, 24, 2), (4, 32, 2), (4, 64, 2), (4, 112, 1), (4, 184, 2), (1, 352, 1))
NUM_BLOCKS = 22
INPUT_RESOLUTION = 224
STEM_CHANNELS = 16
HEAD_CHANNELS = 1984
NUM_CLASSES = 1000


def parse_op(op: str) -> tuple[int, int, int] | None:
    """``k5_e6_g2`` -> (kernel 5, expansion 6, groups 2); ``skip`` -> None."""
    if op == "skip":
        return None
    parts = op.split("_")
    kernel, expand = int(parts[0][1:]), int(parts[1][1:])
    groups = int(parts[2][1:]) if len(parts) > 2 else 1
    return kernel, expand, groups


def block_layout() -> list[tuple[int, int, int, int]]:
    """Per block: (in channels, out channels, stride, input spatial size)."""
    layout = []
    c_in, size = STEM_CHANNELS, INPUT_RESOLUTION // 2
    for n, c, s in STAGES:
        for i in range(n):
            stride = s if i == 0 else 1
            layout.append((c_in, c, stride, size))
            size = (size + stride - 1) // stride
            c_in = c
    return layout


def block_cost(op: str, c_in: int, c_out: int, stride: int, size: int) -> tuple[float, float]:
    """(MACs, params) of one block, BN folded into params as 2 per channel."""
    out = (size + stride - 1) // stride
    spec = parse_op(op)
    if spec is None:
        if c_in == c_out and stride == 1:
            return 0.0, 0.0
        return float(c_in * c_out * out * out), float(c_in * c_out + 2 * c_out)
    kernel, expand, groups = spec
    mid = c_in * expand
    macs = c_in * mid / groups * size * size + mid * kernel * kernel * out * out
    macs += mid * c_out / groups * out * out
    params = c_in * mid / groups + mid * kernel * kernel + mid * c_out / groups
    params += 2 * (2 * mid + c_out)
    return float(macs), float(params)


class FBNet(SearchSpace):
    name = "fbnet"
    description = "FBNet space (22 blocks x 9 ops), ImageNet macro-architecture at 224x224"
    gene_names = tuple(f"block{i}" for i in range(NUM_BLOCKS))
    cardinalities = np.full(NUM_BLOCKS, len(OPS), dtype=np.int64)
    choices = (OPS,) * NUM_BLOCKS

    def parse(self, arch: str, index: int = 0) -> np.ndarray:
        if not isinstance(arch, str):
            raise InvalidArchitecture(f"expected a string, got {type(arch).__name__}", index=index)
        ops = arch.strip().split("-")
        if len(ops) != NUM_BLOCKS:
            raise InvalidArchitecture(
                f"expected {NUM_BLOCKS} ops joined by '-', got {len(ops)}", index=index
            )
        return np.array(
            [lookup_choice(op, OPS, index, j, "operation") for j, op in enumerate(ops)],
            dtype=GENE_DTYPE,
        )

    def format(self, genes: np.ndarray) -> str:
        return "-".join(OPS[int(v)] for v in genes)

    @functools.cached_property
    def _costs(self) -> tuple[np.ndarray, np.ndarray, float, float]:
        macs = np.zeros((NUM_BLOCKS, len(OPS)))
        params = np.zeros((NUM_BLOCKS, len(OPS)))
        for j, (c_in, c_out, stride, size) in enumerate(block_layout()):
            for k, op in enumerate(OPS):
                macs[j, k], params[j, k] = block_cost(op, c_in, c_out, stride, size)
        s = INPUT_RESOLUTION // 2
        last = STAGES[-1][1]
        final = block_layout()[-1][3]
        fixed_macs = 9 * 3 * STEM_CHANNELS * s * s + last * HEAD_CHANNELS * final * final
        fixed_macs += HEAD_CHANNELS * NUM_CLASSES
        fixed_params = 9 * 3 * STEM_CHANNELS + last * HEAD_CHANNELS
        fixed_params += 2 * (STEM_CHANNELS + HEAD_CHANNELS)  # BN of stem and head convs
        fixed_params += HEAD_CHANNELS * NUM_CLASSES + NUM_CLASSES
        return macs, params, float(fixed_macs), float(fixed_params)

    def flops(self, genes: np.ndarray) -> np.ndarray:
        macs, _, fixed, _ = self._costs
        return fixed + macs[np.arange(NUM_BLOCKS)[None, :], genes.astype(np.int64)].sum(axis=1)

    def params(self, genes: np.ndarray) -> np.ndarray:
        _, params, _, fixed = self._costs
        return fixed + params[np.arange(NUM_BLOCKS)[None, :], genes.astype(np.int64)].sum(axis=1)

    def _load_table(self) -> Table:
        raw = load_table(self.name)
        cols = np.array([raw.arch_columns[f"block{j}"] for j in range(NUM_BLOCKS)]).T
        lut = {op: i for i, op in enumerate(OPS)}
        genes = np.vectorize(lut.__getitem__, otypes=[np.int64])(cols).astype(GENE_DTYPE)
        return Table(genes, raw.index, raw.devices, raw.latency_ms, {})
