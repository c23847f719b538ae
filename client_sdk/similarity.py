"""Device similarity (monotonicity) for every pair of devices of a space, in one pass.

``similarity_matrix`` ranks the space's whole table for all devices (one Rank RPC per 64
devices) and takes the Spearman correlation of every pair of prediction columns at once
(rank-transform, then ``corrcoef``): the same number as ``CompareDevices``'
``spearman_predicted`` for each pair, without n(n-1)/2 RPCs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from client_sdk.spaces import get_space

MAX_DEVICES_PER_RPC = 64


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (scipy's ``rankdata`` default), in
    numpy only so that the plain client install needs no scipy."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    return (upper - (counts - 1) / 2.0)[inverse]


def spearman_matrix(columns: np.ndarray) -> np.ndarray:
    """``(d, d)`` Spearman correlations of the columns of ``(n, d)`` (average ties)."""
    values = np.asarray(columns, dtype=np.float64)
    ranks = np.column_stack([_average_ranks(col) for col in values.T]) if values.size else values
    rho = np.corrcoef(ranks, rowvar=False)
    return np.atleast_2d(rho)


def similarity_matrix(client: Any, space: str, devices: Sequence[str]) -> np.ndarray:
    """Spearman of predicted latencies over the space's table, every pair of ``devices``."""
    genes = get_space(space).table.genes
    cols = []
    for start in range(0, len(devices), MAX_DEVICES_PER_RPC):
        chunk = list(devices[start : start + MAX_DEVICES_PER_RPC])
        res = client.rank(space, genes, chunk)
        cols += [np.asarray(res.latency_ms[d], dtype=np.float64) for d in chunk]
    if not cols:
        return np.zeros((0, 0))
    return spearman_matrix(np.column_stack(cols))
