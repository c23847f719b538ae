"""NAS-Bench-201 cell space: 6 edges x 5 operations, all 15,625 cells in the table.

Genes follow the edge order of the standard string
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``: (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2).
Isomorphic cells are NOT merged: the table index is the identity of an architecture.
FLOPs/params are those of the NB201 CIFAR network (C=16, N=5, 32x32 input, 10 classes):
only cell convolutions vary, so the variable part is exact and the constant part (stem,
reduction blocks, classifier) is added for realistic magnitudes.
"""

from __future__ import annotations

import functools
import re

import numpy as np

from client_sdk.data import load_table
from client_sdk.errors import InvalidArchitecture
from client_sdk.spaces.base import GENE_DTYPE, SearchSpace, Table, lookup_choice

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
ACCURACY_COLUMNS = {
    "cifar10": "cifar10_test_acc",
    "cifar100": "cifar100_test_acc",
    "imagenet16_120": "imagenet16_120_test_acc",
}
_NODE_RE = re.compile(r"^\|(.*)\|\Z")

# Network skeleton: 3 stages of 5 cells with C = 16, 32, 64 at 32x32, 16x16, 8x8.
_STAGES = ((16, 32 * 32), (32, 16 * 16), (64, 8 * 8))
_CELLS_PER_STAGE = 5


def _op_costs() -> tuple[np.ndarray, np.ndarray]:
    """MACs and params of one edge's op summed over all 15 cells, per op (5,)."""
    macs = np.zeros(len(OPS))
    params = np.zeros(len(OPS))
    for c, hw in _STAGES:
        macs[OPS.index("nor_conv_1x1")] += _CELLS_PER_STAGE * c * c * hw
        macs[OPS.index("nor_conv_3x3")] += _CELLS_PER_STAGE * 9 * c * c * hw
        params[OPS.index("nor_conv_1x1")] += _CELLS_PER_STAGE * (c * c + 2 * c)
        params[OPS.index("nor_conv_3x3")] += _CELLS_PER_STAGE * (9 * c * c + 2 * c)
    return macs, params


def _fixed_costs() -> tuple[float, float]:
    macs = 9 * 3 * 16 * 32 * 32  # stem
    params = 9 * 3 * 16 + 2 * 16
    for c_in, hw_out in ((16, 16 * 16), (32, 8 * 8)):  # residual reduction blocks
        c_out = 2 * c_in
        macs += 9 * c_in * c_out * hw_out + 9 * c_out * c_out * hw_out + c_in * c_out * hw_out
        # two conv+BN (2 BN params per channel each); shortcut = avgpool + 1x1 conv, no BN
        params += 9 * c_in * c_out + 9 * c_out * c_out + c_in * c_out + 4 * c_out
    macs += 64 * 10
    params += 64 * 10 + 10 + 2 * 64
    return float(macs), float(params)


class NASBench201(SearchSpace):
    name = "nasbench201"
    description = "NAS-Bench-201 cell space (6 edges x 5 ops), CIFAR network C=16 N=5"
    gene_names = tuple(f"edge_{i}<-{j}" for i, j in EDGES)
    cardinalities = np.full(6, len(OPS), dtype=np.int64)
    choices = (OPS,) * 6
    accuracy_metrics = tuple(ACCURACY_COLUMNS)

    def parse(self, arch: str, index: int = 0) -> np.ndarray:
        if not isinstance(arch, str):
            raise InvalidArchitecture(f"expected a string, got {type(arch).__name__}", index=index)
        nodes = arch.strip().split("+")
        if len(nodes) != 3:
            raise InvalidArchitecture(
                f"expected 3 nodes separated by '+' (e.g. |nor_conv_3x3~0|+|none~0|skip_connect~1|"
                f"+|...~0|...~1|...~2|), got {len(nodes)} in '{arch}'",
                index=index,
            )
        genes = np.empty(6, dtype=GENE_DTYPE)
        gene = 0
        for node, text in enumerate(nodes, start=1):
            m = _NODE_RE.match(text)
            if not m:
                raise InvalidArchitecture(f"node {node} '{text}' must be '|...|'", index=index)
            edges = m.group(1).split("|")
            if len(edges) != node:
                raise InvalidArchitecture(
                    f"node {node} must have {node} incoming edges, got {len(edges)}", index=index
                )
            for src, edge in enumerate(edges):
                op, sep, inp = edge.partition("~")
                if not sep or inp != str(src):
                    raise InvalidArchitecture(
                        f"edge '{edge}' of node {node} must read 'op~{src}'", index=index, gene=gene
                    )
                genes[gene] = lookup_choice(op, OPS, index, gene, "operation")
                gene += 1
        return genes

    def format(self, genes: np.ndarray) -> str:
        g = [OPS[int(v)] for v in genes]
        return f"|{g[0]}~0|+|{g[1]}~0|{g[2]}~1|+|{g[3]}~0|{g[4]}~1|{g[5]}~2|"

    @functools.cached_property
    def _costs(self) -> tuple[np.ndarray, np.ndarray, float, float]:
        macs, params = _op_costs()
        fixed_macs, fixed_params = _fixed_costs()
        return macs, params, fixed_macs, fixed_params

    def flops(self, genes: np.ndarray) -> np.ndarray:
        macs, _, fixed, _ = self._costs
        return fixed + macs[genes.astype(np.int64)].sum(axis=1)

    def params(self, genes: np.ndarray) -> np.ndarray:
        _, params, _, fixed = self._costs
        return fixed + params[genes.astype(np.int64)].sum(axis=1)

    def _load_table(self) -> Table:
        raw = load_table(self.name)
        genes = self.parse_many(raw.arch_columns["arch_str"])
        accuracy = {
            metric: np.array(raw.arch_columns[col], dtype=np.float64)
            for metric, col in ACCURACY_COLUMNS.items()
        }
        return Table(genes, raw.index, raw.devices, raw.latency_ms, accuracy)
