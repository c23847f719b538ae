"""Ordering predicted latencies: stable rank, budget filter, top-k (numpy, no gRPC).

``order`` is the one ordering rule of the oracle: request indices fastest first, ties in
request order (a stable sort), filtered by a latency budget and truncated to ``top_k``.
Large float batches use one sort of packed (value bits, index) keys; table devices pass
precomputed 16-bit dense ranks, which numpy sorts with its O(n) radix sort.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oracle_server.predictor import HeadFit


def order(
    lat: np.ndarray, top_k: int, budget: float | None, keys: np.ndarray | None = None
) -> np.ndarray:
    """Request indices fastest first, within the budget, truncated to ``top_k`` (0 = all).

    Ties keep request order (a stable sort). ``keys``: optional unsigned integers ordered
    exactly like ``lat`` (equal where ``lat`` is equal), e.g. a table device's dense ranks;
    16-bit keys are sorted by numpy's O(n) radix sort.
    """
    idx = None
    values = lat if keys is None else keys
    if budget is not None:
        idx = np.flatnonzero(lat <= budget)
        values = values[idx]
    m = values.shape[0]
    if keys is None and m > _KEY_SORT_MIN and values.dtype == np.float32 and (
        top_k <= 0 or top_k > m // 8  # a few: argpartition below is cheaper
    ):
        sel = stable_argsort_f32(values)
        if sel is not None:
            if top_k > 0:
                sel = sel[:top_k]
            return sel if idx is None else idx[sel].astype(np.uint32)
    if 0 < top_k < m and values.dtype.itemsize > 2:
        kth = values[np.argpartition(values, top_k - 1)[top_k - 1]]
        below = np.flatnonzero(values < kth)
        tied = np.flatnonzero(values == kth)[: top_k - below.shape[0]]
        part = np.concatenate([below, tied])  # exactly the first k of a stable sort
        sel = part[np.lexsort((part, values[part]))]
    else:
        sel = np.argsort(values, kind="stable")
        if top_k > 0:
            sel = sel[:top_k]
    return (sel if idx is None else idx[sel]).astype(np.uint32)


_KEY_SORT_MIN = 4096  # below this, numpy's stable argsort is as fast
_LOW32 = np.uint64(0xFFFFFFFF)


def stable_argsort_f32(values: np.ndarray) -> np.ndarray | None:
    """Stable argsort of non-negative float32 as one (SIMD) sort of (bits << 32 | index).

    Non-negative IEEE floats order like their bit patterns, and the index in the low half
    breaks ties by position, so this equals ``np.argsort(values, kind="stable")``. None for
    negative or NaN values, or more than 2**32 of them (callers fall back).
    """
    n = values.shape[0]
    if n >= 1 << 32 or not values.min() >= 0:  # also False for NaN
        return None
    bits = (values + np.float32(0.0)).view(np.uint32)  # -0.0 -> +0.0
    key = bits.astype(np.uint64) << np.uint64(32)
    key |= np.arange(n, dtype=np.uint64)
    key.sort()
    return (key & _LOW32).astype(np.uint32)


@dataclass(frozen=True)
class TablePrediction:
    """One head's predictions over every row of its table (``Oracle.rank``'s fast path)."""

    head: HeadFit
    latency_ms: np.ndarray  # (T,) float64, as ``HeadFit.predict`` gives them
    log_sigma: np.ndarray  # (T,) float64
    latency32: np.ndarray  # (T,) float32, what Rank returns
    rank: np.ndarray  # (T,) uint16/uint32 dense rank of ``latency32`` (ties share a rank)


def dense_rank(values: np.ndarray) -> np.ndarray:
    _, inverse = np.unique(values, return_inverse=True)
    dtype = np.uint16 if values.shape[0] <= np.iinfo(np.uint16).max else np.uint32
    return inverse.reshape(-1).astype(dtype)
