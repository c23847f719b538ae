"""The six space-independent layer descriptors in absolute units, and the per-table fits
of the layer-level models on them (``layer_level``): ``design`` / ``power_inputs`` / ``flops_of``
turn descriptors (n, 6) into model inputs; ``table_linear`` / ``table_power`` fit a whole
table's coefficients (NaN where the table does not identify one)."""

from __future__ import annotations

import numpy as np

from client_sdk.spaces.descriptors import BASE_NAMES
from oracle_server.predictor.heads.solver import nnls

NUM_BASE = len(BASE_NAMES)
#: fixed absolute unit of each descriptor (same in every space): 1e8 dense MACs, 1e7
#: depthwise MACs, 1e6 weights, 1e7 activation elements, 100 kernels, 1e6 element-wise
GLOBAL_SCALE = np.array([1e8, 1e7, 1e6, 1e7, 100.0, 1e6])
#: power-law inputs: log of these descriptor sums (total MACs, activations, kernels, ...)
POWER_COLUMNS: tuple[tuple[int, ...], ...] = ((0, 1), (2,), (3,), (4,), (5,))
COV_RIDGE = 0.05  # relative diagonal added to the basis covariance
MS_FLOOR = 1e-3


def design(desc6: np.ndarray) -> np.ndarray:
    """(n, 7) ``[1, d / GLOBAL_SCALE]``."""
    d = _check_desc(desc6)
    return np.c_[np.ones(len(d)), d / GLOBAL_SCALE]


def power_inputs(desc6: np.ndarray) -> np.ndarray:
    """(n, P) logs of the ``POWER_COLUMNS`` sums in global units (>= log of 1 unit / 1e6)."""
    d = _check_desc(desc6)
    cols = [d[:, list(c)].sum(1) / GLOBAL_SCALE[c[0]] for c in POWER_COLUMNS]
    return np.log(np.maximum(np.stack(cols, 1), 1e-6))


def flops_of(desc6: np.ndarray) -> np.ndarray:
    d = _check_desc(desc6)
    return d[:, 0] + d[:, 1]


def _check_desc(desc6: np.ndarray) -> np.ndarray:
    d = np.asarray(desc6, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] != NUM_BASE:
        raise ValueError(
            f"descriptors must be (n, {NUM_BASE}) ({', '.join(BASE_NAMES)}), got shape {d.shape}"
        )
    if not np.isfinite(d).all() or (d < 0).any():
        raise ValueError("descriptors must be finite and non-negative")
    return d


def _check_samples(
    desc6: np.ndarray, y_ms: np.ndarray, minimum: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    d = _check_desc(desc6)
    y = np.asarray(y_ms, dtype=np.float64).reshape(-1)
    if len(y) != len(d):
        raise ValueError(f"{len(d)} descriptor rows but {len(y)} latencies")
    if len(y) < minimum:
        raise ValueError(f"need at least {minimum} measured architectures, got {len(y)}")
    if not np.isfinite(y).all() or (y <= 0).any():
        raise ValueError("latencies must be finite and > 0 ms")
    if np.ptp(y) <= 1e-12 * np.abs(y).max():
        raise ValueError("all measured latencies are equal: nothing to rank by")
    return d, y


# ---------------------------------------------------------- per-table fits
def nnls_coef(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares (``heads.solver.nnls``) with columns rescaled to unit mean
    (conditioning only)."""
    sc = np.abs(x).mean(0)
    sc = np.where(sc > 0, sc, 1.0)
    return nnls(x / sc, y) / sc


def table_linear(desc6: np.ndarray, y_ms: np.ndarray) -> np.ndarray:
    """(7,) absolute non-negative coefficients of a whole table; NaN where the descriptor
    does not vary over the table (not identified, e.g. depthwise MACs in NAS-Bench-201)."""
    x = design(desc6)
    c = nnls_coef(x, y_ms)
    const = np.r_[False, np.ptp(x[:, 1:], axis=0) <= 0]
    c[const] = np.nan
    return c


def table_power(desc6: np.ndarray, y_ms: np.ndarray) -> np.ndarray:
    """(1 + P,) least-squares power-law coefficients of a whole table (NaN: unidentified)."""
    u = power_inputs(desc6)
    const = np.ptp(u, axis=0) <= 1e-12
    m = np.c_[np.ones(len(u)), u[:, ~const]]
    beta = np.linalg.lstsq(m, np.log(np.maximum(y_ms, MS_FLOOR)), rcond=None)[0]
    out = np.full(1 + u.shape[1], np.nan)
    out[0] = beta[0]
    out[1:][~const] = beta[1:]
    return out


def _impute(a: np.ndarray) -> np.ndarray:
    """NaN entries replaced by their column's mean over the rows that have it (0 if none)."""
    a = np.array(a, dtype=np.float64)
    for j in range(a.shape[1]):
        bad = ~np.isfinite(a[:, j])
        if bad.any():
            a[bad, j] = np.nanmean(a[~bad, j]) if (~bad).any() else 0.0
    return a


def _cov(a: np.ndarray) -> np.ndarray:
    if len(a) > 1:
        cov = np.atleast_2d(np.cov(a.T))
    else:
        cov = np.diag(np.maximum(a[0] ** 2, 1e-4))
    return cov + COV_RIDGE * np.diag(np.maximum(np.diag(cov), 1e-8))
