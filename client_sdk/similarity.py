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
from client_sdk.stats import spearman_matrix

MAX_DEVICES_PER_RPC = 64

__all__ = ["MAX_DEVICES_PER_RPC", "similarity_matrix", "spearman_matrix"]


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
