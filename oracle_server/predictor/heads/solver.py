"""The solvers the heads share: a dual generalised ridge with exact leave-one-out
predictions, its grid search over prior scales, and the monotone affine / non-negative
least-squares fits.

Most heads are linear smoothers ``y = m beta + e`` with ``beta_j ~ N(0, prior_var_j)``,
``e ~ N(0, 1)``: solved in the dual (n x n, n = a handful of samples), their leave-one-out
residuals are exact and closed-form, so a prior scale is picked by exact LOO over a grid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: prior variance of (nearly) unpenalised coefficients (standardised units)
PRIOR_FREE = 1e4


def dual_ridge(
    m: np.ndarray, prior_var: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised ridge ``y = m beta + e``, beta_j ~ N(0, prior_var_j), e ~ N(0, 1).

    Solved in the dual (n x n): returns ``beta`` and the exact leave-one-out predictions.
    """
    k = (m * prior_var) @ m.T
    c_inv = np.linalg.inv(k + np.eye(len(y)))
    alpha = c_inv @ y
    beta = prior_var * (m.T @ alpha)
    loo = y - alpha / np.diag(c_inv)
    return beta, loo


def standardise(y: np.ndarray) -> tuple[float, float]:
    """(mean, std) of ``y``; a std of 0 becomes 1."""
    mu, sd = float(y.mean()), float(y.std())
    return mu, sd if sd > 0 else 1.0


def best_over_scaled_grid(
    m: np.ndarray, base_var: np.ndarray, grid: Sequence[float], y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """``best_over_grid`` for priors ``g * base_var``: one eigendecomposition for the grid.

    ``K = m diag(base_var) m^T = U diag(lam) U^T``, so ``(g K + I)^-1`` is
    ``U diag(1 / (g lam + 1)) U^T`` for every ``g``: same results as ``dual_ridge``.
    Returns (beta, LOO predictions, g).
    """
    k = (m * base_var) @ m.T
    lam, u = np.linalg.eigh(k)
    lam = np.maximum(lam, 0.0)
    uty = u.T @ y
    u2 = u * u
    best: tuple | None = None
    for g in grid:
        d = 1.0 / (g * lam + 1.0)
        alpha = u @ (d * uty)
        loo = y - alpha / (u2 @ d)
        err = float(np.mean((loo - y) ** 2))
        if best is None or err < best[0]:
            best = (err, alpha, loo, g)
    assert best is not None
    err, alpha, loo, g = best
    return g * base_var * (m.T @ alpha), loo, g


def best_over_grid(
    m: np.ndarray, var_fn: Callable[[Any], np.ndarray], grid: Sequence[Any], y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Solve ``dual_ridge`` with prior variances ``var_fn(g)`` for each grid value ``g`` and
    keep the best LOO squared error: (beta, LOO predictions, g)."""
    best: tuple | None = None
    for g in grid:
        beta, loo = dual_ridge(m, var_fn(g), y)
        err = float(np.mean((loo - y) ** 2))
        if best is None or err < best[0]:
            best = (err, beta, loo, g)
    assert best is not None
    return best[1], best[2], best[3]


def affine_coef(u: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """Least squares ``z = a u + c`` with ``a >= 1e-3`` (monotone: never invert ``u``'s order)."""
    du = u - u.mean()
    sxx = float(du @ du)
    a = float(du @ (z - z.mean()) / sxx) if sxx > 0 else 0.0
    a = max(a, 1e-3)  # monotone: never invert the proxy's order
    return a, float(z.mean() - a * u.mean())


def nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares (scipy); no convergence (degenerate design): clipped
    least squares."""
    from scipy.optimize import nnls as _nnls  # lazily: scipy.optimize slows start-up

    try:
        return _nnls(x, y, maxiter=50 * x.shape[1])[0]
    except RuntimeError:
        return np.maximum(np.linalg.lstsq(x, y, rcond=None)[0], 0.0)
