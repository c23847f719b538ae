"""Average ranks (ties share their mean rank, scipy's ``rankdata`` default) in numpy only:
the plain client install carries no scipy, and the server avoids importing ``scipy.stats``
(about a second of its start-up) for a few rank computations."""

from __future__ import annotations

import numpy as np


def _rank1(values: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    return (upper - (counts - 1) / 2.0)[inverse.reshape(-1)]


def _rank_rows(a: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis of a 2-D array, vectorised over its rows: sort each
    row, find each tie group's first and last position, give every member their mean."""
    rows, n = a.shape
    order = np.argsort(a, axis=1, kind="stable")
    s = np.take_along_axis(a, order, axis=1)
    same = s[:, 1:] == s[:, :-1]
    same |= np.isnan(s[:, 1:]) & np.isnan(s[:, :-1])  # NaNs tie with each other
    pos = np.broadcast_to(np.arange(n), (rows, n))
    starts = np.ones((rows, n), dtype=bool)
    starts[:, 1:] = ~same
    ends = np.ones((rows, n), dtype=bool)
    ends[:, :-1] = ~same
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, pos, n - 1)[:, ::-1], axis=1)[:, ::-1]
    out = np.empty((rows, n))
    np.put_along_axis(out, order, (first + last) / 2.0 + 1.0, axis=1)
    return out


def average_ranks(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """1-based ranks of ``values`` along ``axis`` (1-D or 2-D), ties averaged; NaNs rank
    after every number and tie with each other."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim <= 1:
        return _rank1(a.reshape(-1)).reshape(a.shape)
    if a.ndim != 2:
        raise ValueError(f"average_ranks takes 1-D or 2-D values, got {a.ndim}-D")
    if a.shape[0] == 0 or a.shape[1] == 0:
        return np.zeros(a.shape)
    return _rank_rows(a) if axis in (1, -1) else _rank_rows(a.T).T
