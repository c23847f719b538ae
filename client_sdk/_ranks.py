"""Average ranks (ties share their mean rank, scipy's ``rankdata`` default) in numpy only:
the plain client install carries no scipy, and the server avoids importing ``scipy.stats``
(about a second of its start-up) for a few rank computations."""

from __future__ import annotations

import numpy as np


def _rank1(values: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    return (upper - (counts - 1) / 2.0)[inverse.reshape(-1)]


def average_ranks(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """1-based ranks of ``values`` along ``axis`` (1-D or 2-D), ties averaged."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim <= 1:
        return _rank1(a.reshape(-1)).reshape(a.shape)
    return np.apply_along_axis(_rank1, axis, a)
