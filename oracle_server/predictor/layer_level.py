"""Layer-level latency heads: rank a search space the oracle has no tables for.

A device's latency is modelled on the six space-independent layer descriptors of
``client_sdk.spaces.descriptors.BASE_NAMES`` (dense MACs, depthwise MACs, weights,
activation traffic, executed kernels, element-wise work) in ABSOLUTE units, so a
coefficient learned on one space means the same in another:

    ms = c_0 + sum_j c_j * d_j / GLOBAL_SCALE_j            (``linear``, in ms)
    log ms = b_0 + sum_j b_j * log(d_j)                     (``powerlaw``, in logs)

``CrossSpacePrior`` holds these coefficients fit on the whole tables of the basis devices of
the *allowed* spaces (never the held-out one: ``exclude_space``). On a new device with a few
measured architectures of a new space, ``fit_layer_head`` fits candidates

* ``eb_linear``    the linear model in relative ms with an empirical-Bayes prior: every basis
                   device's coefficients renormalised to the samples' mean latency give the
                   prior mean / covariance; the prior strength by exact leave-one-out;
* ``eb_powerlaw``  the power law with the basis devices' exponents as prior;
* ``basis``        one basis device's layer-level model (its coefficients evaluated on the new
                   space) with a monotone affine recalibration in logs (OneProxy-like);
* ``eb_nnls``      the linear model, non-negative and prior-pulled (augmented NNLS);
* ``nnls``         the naive non-negative fit (``naive_nnls``); ``flops`` ranks by MACs;

and serves the mean log prediction of ``ENSEMBLE`` (``mode="loo"``: the best candidate by
leave-one-out). ``zero_shot`` ranks a new space from a basis device's table in another
space (no sample of the new space).
Everything is plain numpy; parameters are JSON-safe.

This module fits the candidates; the descriptors and per-table fits live in
``layer_features``, ``CrossSpacePrior`` in ``layer_prior``, ``LayerHead`` and ``naive_nnls``
in ``layer_head``, ``zero_shot`` in ``layer_zero_shot``; their public names are re-exported
here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from oracle_server.predictor.heads import _affine_coef, _best_over_scaled_grid, spearman
from oracle_server.predictor.heads.solver import nnls
from oracle_server.predictor.layer_features import (
    COV_RIDGE,
    GLOBAL_SCALE,
    MS_FLOOR,
    NUM_BASE,
    POWER_COLUMNS,
    _check_samples,
    _impute,
    design,
    flops_of,
    nnls_coef,
    power_inputs,
    table_linear,
    table_power,
)
from oracle_server.predictor.layer_head import LayerHead, naive_nnls
from oracle_server.predictor.layer_prior import SPACES, CrossSpacePrior, default_basis_devices
from oracle_server.predictor.layer_zero_shot import ZERO_SHOT_MEMBERS, zero_shot

__all__ = [
    "COV_RIDGE",
    "EB_GRID",
    "ENSEMBLE",
    "GLOBAL_SCALE",
    "KINDS",
    "MS_FLOOR",
    "NUM_BASE",
    "POWER_COLUMNS",
    "SPACES",
    "ZERO_SHOT_MEMBERS",
    "CrossSpacePrior",
    "LayerHead",
    "default_basis_devices",
    "design",
    "fit_basis",
    "fit_candidates",
    "fit_eb_linear",
    "fit_eb_nnls",
    "fit_eb_powerlaw",
    "fit_layer_head",
    "flops_of",
    "naive_nnls",
    "nnls_coef",
    "power_inputs",
    "table_linear",
    "table_power",
    "zero_shot",
]

EB_GRID = (0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6)
KINDS = ("eb_linear", "eb_nnls", "eb_powerlaw", "basis", "nnls", "flops")


def _loo_rho(loo: np.ndarray, z: np.ndarray) -> float:
    r = spearman(loo, z)
    return r if np.isfinite(r) else -1.0


def fit_eb_linear(
    desc6: np.ndarray, y: np.ndarray, prior: CrossSpacePrior
) -> tuple[LayerHead, np.ndarray]:
    """y / s = [1, d / scale] theta, theta ~ N(mu, g cov): mu, cov from the basis devices'
    coefficients renormalised to these samples; rows weighted by 1 / y (relative error)."""
    x = design(desc6)
    s = float(y.mean())
    yr = y / s
    w = 1.0 / yr
    mu, cov = prior.linear_prior(x)
    chol = np.linalg.cholesky(cov)
    m = (x * w[:, None]) @ chol
    base = x @ mu
    r = (yr - base) * w
    beta, loo, g = _best_over_scaled_grid(m, np.ones(m.shape[1]), EB_GRID, r)
    theta = (mu + chol @ beta) * s
    floor = float(0.2 * y.min())
    loo_ms = (loo / w + base) * s
    head = LayerHead("eb_linear", {"theta": theta.tolist(), "floor_ms": floor, "prior": g})
    return head, np.log(np.maximum(loo_ms, floor))


def fit_eb_powerlaw(
    desc6: np.ndarray, y: np.ndarray, prior: CrossSpacePrior
) -> tuple[LayerHead, np.ndarray]:
    """log y = b0 + u b, b ~ N(mu, g cov) from the basis devices' exponents, b0 free."""
    u = power_inputs(desc6)
    z = np.log(y)
    mu, cov = prior.power_prior()
    um = u.mean(0)
    uc = u - um
    zc = z - z.mean()
    chol = np.linalg.cholesky(cov)
    # centring removes the free intercept exactly (LOO of the intercept ignored: O(1/n))
    m = uc @ chol
    r = zc - uc @ mu
    beta, loo, g = _best_over_scaled_grid(m, np.ones(m.shape[1]), EB_GRID, r)
    b = mu + chol @ beta
    b0 = float(z.mean() - um @ b)
    head = LayerHead("eb_powerlaw", {"b0": b0, "b": b.tolist(), "prior": g})
    return head, loo + uc @ mu + z.mean()


def fit_basis(
    desc6: np.ndarray, y: np.ndarray, prior: CrossSpacePrior
) -> tuple[LayerHead, np.ndarray]:
    """The basis device whose layer-level model best ranks the samples, recalibrated by a
    monotone affine map in logs; the choice is re-made inside each leave-one-out fold."""
    from oracle_server.predictor.heads import best_basis

    lb = prior.basis_predictions(desc6)
    z = np.log(y)
    n = len(z)
    keep = ~np.eye(n, dtype=bool)
    loo = np.empty(n)
    for i in range(n):
        k = best_basis(lb[keep[i]], z[keep[i]])
        a, c = _affine_coef(lb[keep[i], k], z[keep[i]])
        loo[i] = a * lb[i, k] + c
    k = best_basis(lb, z)
    a, c = _affine_coef(lb[:, k], z)
    theta = _impute(prior.linear)[k]
    head = LayerHead("basis", {"theta": theta.tolist(), "a": a, "c": c, "device": prior.devices[k]})
    return head, loo


EB_NNLS_GRID = (0.1, 1.0, 10.0, 100.0)
EB_NNLS_WEIGHTS = "relative"  # "relative" (1 / y) or "none"


def _eb_nnls_solve(
    x: np.ndarray, yr: np.ndarray, w: np.ndarray, mu: np.ndarray, pinv_chol: np.ndarray, g: float
) -> np.ndarray:
    a = np.r_[x * w[:, None], pinv_chol / np.sqrt(g)]
    b = np.r_[yr * w, pinv_chol @ mu / np.sqrt(g)]
    return nnls(a, b)


def fit_eb_nnls(
    desc6: np.ndarray, y: np.ndarray, prior: CrossSpacePrior
) -> tuple[LayerHead, np.ndarray]:
    """Non-negative linear model in relative ms pulled towards the basis devices' prior:
    min |W (x theta - y / s)|^2 + |L^-1 (theta - mu)|^2 / g, theta >= 0, g by exact LOO."""
    x = design(desc6)
    s = float(y.mean())
    yr = y / s
    w = 1.0 / yr if EB_NNLS_WEIGHTS == "relative" else np.ones(len(y))
    mu, cov = prior.linear_prior(x)
    pinv_chol = np.linalg.inv(np.linalg.cholesky(cov))
    n = len(y)
    keep = ~np.eye(n, dtype=bool)
    best: tuple | None = None
    for g in EB_NNLS_GRID:
        loo = np.array(
            [
                x[i] @ _eb_nnls_solve(x[keep[i]], yr[keep[i]], w[keep[i]], mu, pinv_chol, g)
                for i in range(n)
            ]
        )
        err = float(np.mean(((loo - yr) * w) ** 2))
        if best is None or err < best[0]:
            best = (err, g, loo)
    assert best is not None
    _, g, loo = best
    theta = _eb_nnls_solve(x, yr, w, mu, pinv_chol, g) * s
    floor = float(0.2 * y.min())
    head = LayerHead("eb_nnls", {"theta": theta.tolist(), "floor_ms": floor, "prior": g})
    return head, np.log(np.maximum(loo * s, floor))


def _fit_nnls_loo(desc6: np.ndarray, y: np.ndarray) -> tuple[LayerHead, np.ndarray]:
    n = len(y)
    keep = ~np.eye(n, dtype=bool)
    loo = np.array(
        [naive_nnls(desc6[keep[i]], y[keep[i]]).predict_log(desc6[i : i + 1])[0] for i in range(n)]
    )
    return naive_nnls(desc6, y), loo


def _fit_flops(desc6: np.ndarray, y: np.ndarray) -> tuple[LayerHead, np.ndarray]:
    u = np.log(np.maximum(flops_of(desc6), 1.0))
    z = np.log(y)
    n = len(z)
    keep = ~np.eye(n, dtype=bool)
    loo = np.empty(n)
    for i in range(n):
        a, c = _affine_coef(u[keep[i]], z[keep[i]])
        loo[i] = a * u[i] + c
    a, c = _affine_coef(u, z)
    return LayerHead("flops", {"a": a, "c": c}), loo


def fit_candidates(
    desc6: np.ndarray, y_ms: np.ndarray, prior: CrossSpacePrior, kinds: Sequence[str] = KINDS
) -> dict[str, tuple[LayerHead, np.ndarray]]:
    """Every candidate kind with its leave-one-out log predictions."""
    d, y = _check_samples(desc6, y_ms)
    out: dict[str, tuple[LayerHead, np.ndarray]] = {}
    for kind in kinds:
        if kind == "eb_linear":
            head, loo = fit_eb_linear(d, y, prior)
        elif kind == "eb_powerlaw":
            head, loo = fit_eb_powerlaw(d, y, prior)
        elif kind == "basis":
            head, loo = fit_basis(d, y, prior)
        elif kind == "nnls":
            head, loo = _fit_nnls_loo(d, y)
        elif kind == "eb_nnls":
            head, loo = fit_eb_nnls(d, y, prior)
        elif kind == "flops":
            head, loo = _fit_flops(d, y)
        else:
            raise ValueError(f"unknown layer head kind {kind!r} (known: {', '.join(KINDS)})")
        rho = _loo_rho(loo, np.log(y))
        out[kind] = (LayerHead(head.kind, head.params, rho), loo)
    return out


#: the served combination: the mean log prediction of these members (chosen on HELP
#: validation devices of all three spaces under leave-space-out, k = 10: see
#: ``benchmarks/leave_space_out.py``); ``mode="loo"`` picks one candidate by LOO instead
ENSEMBLE: tuple[str, ...] = ("nnls", "eb_linear")


def fit_layer_head(
    desc6: np.ndarray,
    y_ms: np.ndarray,
    prior: CrossSpacePrior,
    kinds: Sequence[str] = ENSEMBLE,
    mode: str = "ensemble",
) -> LayerHead:
    """Layer-level head from a device's few measured architectures of a new space.

    ``mode="ensemble"``: mean log prediction of the ``kinds`` candidates (its
    ``loo_spearman`` from the members' exact leave-one-out predictions); ``"loo"``: the one
    candidate with the best leave-one-out Spearman. Raises ``ValueError`` on fewer than 3
    samples, equal latencies or malformed descriptors.
    """
    cands = fit_candidates(desc6, y_ms, prior, kinds)
    z = np.log(np.asarray(y_ms, dtype=np.float64))
    if mode == "loo":
        best = max(cands, key=lambda k: (round(cands[k][0].loo_spearman, 6), -kinds.index(k)))
        return cands[best][0]
    if mode != "ensemble":
        raise ValueError(f"unknown mode {mode!r} (ensemble, loo)")
    if len(cands) == 1:
        return next(iter(cands.values()))[0]
    loo = np.mean([c[1] for c in cands.values()], axis=0)
    members = [c[0].to_params() for c in cands.values()]
    return LayerHead("ensemble", {"members": members}, _loo_rho(loo, z))
