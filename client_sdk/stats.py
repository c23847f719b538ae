"""Spearman's rank correlation, ONE implementation for the SDK and the server (numpy only).

The plain client install carries no scipy, and the server avoids importing ``scipy.stats``
(about a second of its start-up), so the server's heads (``oracle_server.predictor.heads
.stats``), the measurement harness, onboarding, the similarity matrix and the benchmarks
all call these functions. The rules, stated once:

* **ties** share their average rank (``scipy.stats.rankdata``'s default), so the result is
  the Pearson correlation of average ranks, as ``scipy.stats.spearmanr``;
* **undefined** (a side constant, or fewer than ``min_points`` pairs): ``undefined``
  (nan unless asked otherwise);
* **NaN inputs**, by ``nan_policy``: ``"propagate"`` (default, scipy's): the correlation is
  undefined; ``"last"``: a NaN ranks after every number and NaNs tie with each other (numpy's
  sort order), the rule the server's head selection and evaluation have always used (a
  head whose leave-one-out predictions hold a NaN is scored, ranked as slowest).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from client_sdk._ranks import average_ranks

NanPolicy = Literal["propagate", "last"]
NAN_POLICIES: tuple[str, ...] = ("propagate", "last")

__all__ = ["NAN_POLICIES", "average_ranks", "spearman", "spearman_columns", "spearman_matrix"]


def _check_policy(nan_policy: str) -> None:
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"unknown nan_policy '{nan_policy}' (have {NAN_POLICIES})")


def spearman(a: np.ndarray, b: np.ndarray, *, nan_policy: NanPolicy = "propagate",
             min_points: int = 2, undefined: float = float("nan")) -> float:
    """Spearman's rho of two equal-length 1-D samples (rules: module docstring)."""
    _check_policy(nan_policy)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"spearman of samples of different shapes {a.shape} and {b.shape}")
    if a.size < min_points:
        return undefined
    if nan_policy == "propagate" and (np.isnan(a).any() or np.isnan(b).any()):
        return undefined
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / den) if den > 0 else undefined


def spearman_columns(x: np.ndarray, y: np.ndarray, *, undefined: float = float("nan")
                     ) -> np.ndarray:
    """Spearman of each column of ``x`` (n, B) with ``y`` (n,) — or with the same column of
    ``y`` (n, B) — vectorised; NaN inputs rank last (``nan_policy="last"``), an undefined
    column gives ``undefined``."""
    rx = average_ranks(x, axis=0)
    y = np.asarray(y)
    ry = average_ranks(y, axis=0) if y.ndim == 2 else average_ranks(y)[:, None]
    rx, ry = rx - rx.mean(0), ry - ry.mean(0)
    den = np.sqrt((rx * rx).sum(0) * (ry * ry).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(0) / den, undefined)


def spearman_matrix(columns: np.ndarray) -> np.ndarray:
    """``(d, d)`` Spearman correlations of the columns of ``(n, d)``: ``np.corrcoef`` of the
    average ranks (an undefined pair, e.g. a constant column, is nan)."""
    values = np.asarray(columns, dtype=np.float64)
    ranks = average_ranks(values, axis=0) if values.size else values
    rho = np.corrcoef(ranks, rowvar=False)
    return np.atleast_2d(rho)
