"""Rank statistics of the heads: ``client_sdk.stats`` with the server's rules.

One implementation (``client_sdk/stats.py``, numpy only, shared with the SDK): ties share
their average rank; a constant side (or fewer than 2 points) is undefined; a NaN ranks
after every number (``nan_policy="last"``, what head selection and evaluation have always
used). ``spearman`` is nan when undefined; ``spearman_columns`` gives -1 for an undefined
column, so such a basis column is never the best-correlated one.
"""

from __future__ import annotations

import numpy as np

from client_sdk import stats as _stats


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation with average ranks for ties; nan when a side is constant."""
    return _stats.spearman(a, b, nan_policy="last")


def spearman_columns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman of each column of ``x`` (n, B) with ``y`` (n,), vectorised (-1: undefined)."""
    return _stats.spearman_columns(x, y, undefined=-1.0)
