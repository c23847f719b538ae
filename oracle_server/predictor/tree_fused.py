"""The arrays the numba kernels of ``_tree_kernel`` read and write for ``TreeTables``: a
space's cost layout and thresholds (``FusedSpec``, for ``cost_sums`` / ``fill_bins``) and one
batch part's output buffers (``Buffers``)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from oracle_server.predictor.tree_features import position_costs, staged_costs

if TYPE_CHECKING:
    from oracle_server.predictor.tree_tables import TreeTables


def _side_by_side(macs: np.ndarray, params: np.ndarray) -> np.ndarray:
    """(N, 2) float64: the flattened MACs and params tables as columns."""
    return np.ascontiguousarray(
        np.stack([np.ravel(macs), np.ravel(params)], axis=1), dtype=np.float64
    )


class FusedSpec:
    """The arrays ``_tree_kernel.cost_sums`` / ``fill_bins`` read for one space."""

    def __init__(
        self, costs: tuple, res_gene: int, res_term: np.ndarray | None, thresholds: list[np.ndarray]
    ) -> None:
        self.costs = costs
        self.res_gene = res_gene
        self.res_term = res_term
        self.thr = np.concatenate([np.asarray(t, dtype=np.float64) for t in thresholds])
        self.thr_start = np.concatenate([[0], np.cumsum([len(t) for t in thresholds])]).astype(
            np.int64
        )

    @classmethod
    def of(cls, tables: TreeTables) -> FusedSpec | None:
        """The space's spec (one gene per block position as FBNet; OFA-MBv3's layout), None
        for a space the kernels do not know."""
        space = tables.space
        i64 = functools.partial(np.asarray, dtype=np.int64)
        cards = i64(space.cardinalities)
        simple = position_costs(space)
        if simple is not None:
            if len(tables.thresholds) != 2:
                return None
            pos_gene, card, macs, params, fixed_m, fixed_p = simple
            pos = np.arange(len(pos_gene), dtype=np.int64)
            costs = (
                i64(pos_gene),
                card,
                -1,
                1,
                pos,
                pos,
                1,
                pos,
                pos,
                i64([0]),
                _side_by_side(macs, params),
                np.array([fixed_m], dtype=np.float64),
                np.array([fixed_p], dtype=np.float64),
                cards,
            )
            return cls(costs, -1, None, tables.thresholds)
        staged = staged_costs(space)
        if staged is not None:
            if len(tables.thresholds) != 3:
                return None
            (k_gene, e_gene, nk, ne, dep_pos, dep_gene, depth_of), macs, params, fm, fp, area = (
                staged
            )
            blocks = np.arange(len(k_gene), dtype=np.int64)
            costs = (
                blocks,
                0,
                space._res_gene,
                nk,
                k_gene,
                e_gene,
                ne,
                dep_pos,
                dep_gene,
                depth_of,
                _side_by_side(macs, params),
                fm,
                fp,
                cards,
            )
            return cls(costs, space._res_gene, area, tables.thresholds)
        return None


class Buffers:
    """What one batch part's evaluation writes (``TreeTables._evaluate``)."""

    def __init__(self, tables: TreeTables, n: int) -> None:
        nc = len(tables.thresholds)
        self.xt = tables._xt(n)
        self.sums = np.empty((2, n))
        self.extra32 = np.empty((nc, n), dtype=np.float32)
        self.extra = np.empty((nc, n))
        self.tmp = np.empty(n)
