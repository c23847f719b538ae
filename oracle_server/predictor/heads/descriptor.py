"""Physically grounded heads on the hardware-agnostic descriptors (relative ms), with an
empirical-Bayes prior learned from the basis devices (``priors.py``):

* ``descriptor``  y = s [1, d / scale] theta, theta ~ N(mu, g cov);
* ``hybrid``      the descriptor model plus the basis outputs in one Bayesian linear model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oracle_server.predictor.heads.base import (
    MS_FLOOR,
    AnyParams,
    Candidate,
    FitInputs,
    HeadKind,
    LinearMsProjection,
    log_basis,
    ms_to_log,
    need_descriptors,
)
from oracle_server.predictor.heads.params import (
    FloatTuple,
    HeadParams,
    IntVector,
    Vector,
    same_length,
)
from oracle_server.predictor.heads.registry import register_head
from oracle_server.predictor.heads.solver import best_over_grid, best_over_scaled_grid
from oracle_server.predictor.heads.stats import spearman_columns
from oracle_server.predictor.priors import DescriptorPrior

DESCRIPTOR_GRID = (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
HYBRID_GRID = tuple((g, h) for g in (10.0, 100.0, 1000.0) for h in (0.1, 1.0, 10.0))
#: basis outputs used. Validation: top-3 = all 23 columns (+-0.001, stop 19); top-1 = top-3
#: within 0.0001 in every space and setting of benchmarks/studies/head_study.py (2026-11-30,
#: benchmarks/results/studies/selection_hybrid_columns.json), and Rank then evaluates one column
HYBRID_COLUMNS = 1


@dataclass(frozen=True, eq=False)
class DescriptorParams(HeadParams):
    theta: Vector  # ms: [intercept, per descriptor / scale]
    scale: Vector  # per descriptor column
    prior: float | None = None
    floor_ms: float = MS_FLOOR

    def check(self, kind: str) -> None:
        same_length(self, kind, "theta", len(self.scale) + 1)


def fit_descriptor(desc: np.ndarray, y: np.ndarray, prior: DescriptorPrior) -> Candidate:
    """Physically grounded head: ms = s * [1, d / scale] theta, theta ~ N(mu, g cov).

    ``prior`` comes from the basis devices (``priors.fit_prior``); ``s`` is the mean of the
    samples; rows are weighted by 1 / y (relative errors); ``g`` by exact leave-one-out.
    """
    x = prior.design(desc)
    s = float(y.mean())
    yr = y / s
    w = 1.0 / yr
    base = x @ prior.mu
    chol = np.linalg.cholesky(prior.cov)
    m = (x * w[:, None]) @ chol
    r = (yr - base) * w
    beta, loo, g = best_over_scaled_grid(m, np.ones(m.shape[1]), DESCRIPTOR_GRID, r)
    theta = (prior.mu + chol @ beta) * s
    loo_ms = (loo / w + base) * s
    floor = float(0.2 * y.min())
    params = DescriptorParams(theta, np.asarray(prior.scale), g, floor)
    return Candidate(Descriptor.name, params.to_dict(), ms_to_log(loo_ms, floor))


@register_head
class Descriptor(LinearMsProjection, HeadKind[DescriptorParams]):
    name, Params, min_samples = "descriptor", DescriptorParams, 4
    candidate, reads_descriptors, reads_prior = True, True, True

    def fit(self, inp: FitInputs) -> Candidate:
        assert inp.descriptors is not None and inp.prior is not None
        return fit_descriptor(inp.descriptors, inp.y, inp.prior)

    def predict_log(self, params: AnyParams, basis: np.ndarray, feats: np.ndarray,
                    desc: np.ndarray | None) -> np.ndarray:
        p = self.parse(params)
        return ms_to_log(self.descriptor_ms(p, desc), p.floor_ms)

    @staticmethod
    def descriptor_ms(p: DescriptorParams, desc: np.ndarray | None) -> np.ndarray:
        """The descriptor part in ms: ``theta_0 + (d / scale) @ theta``."""
        return p.theta[0] + (need_descriptors(desc) / p.scale) @ p.theta[1:]

    def projection(self, params: AnyParams, num_descriptors: int) -> np.ndarray:
        p = self.parse(params)
        return (p.theta[1:] / p.scale)[:, None]



@dataclass(frozen=True, eq=False)
class HybridParams(HeadParams):
    theta: Vector  # ms: [intercept, per descriptor / scale]
    scale: Vector
    columns: IntVector  # basis columns read
    coef_basis: Vector  # ms per ms of each of those columns
    prior: FloatTuple | None = None
    floor_ms: float = MS_FLOOR

    def check(self, kind: str) -> None:
        same_length(self, kind, "theta", len(self.scale) + 1)
        same_length(self, kind, "coef_basis", len(self.columns))


def fit_hybrid(desc: np.ndarray, basis: np.ndarray, y: np.ndarray,
               prior: DescriptorPrior) -> Candidate:
    """Descriptor model + basis outputs in one Bayesian linear model (relative ms):

    y / s = [1, d / scale] theta + (b / sb) a,  theta ~ N(mu, g cov),  a ~ N(0, h / B),

    with ``sb`` each basis column's mean over the samples, over the ``HYBRID_COLUMNS`` basis
    columns best rank-correlated with the samples (so Rank evaluates only those). A device
    like a basis device puts weight on ``a``; hardware unlike any of them keeps the
    descriptor prior's shape.
    """
    rho = spearman_columns(log_basis(basis), np.log(y))
    cols = np.sort(np.argsort(-np.nan_to_num(rho, nan=-2.0), kind="stable")[:HYBRID_COLUMNS])
    basis = basis[:, cols]
    x = prior.design(desc)
    s = float(y.mean())
    yr = y / s
    w = 1.0 / yr
    sb = basis.mean(0)
    sb = np.where(sb > 0, sb, 1.0)
    bx = basis / sb
    nb = bx.shape[1]
    base = x @ prior.mu
    chol = np.linalg.cholesky(prior.cov)
    m = np.c_[(x * w[:, None]) @ chol, bx * w[:, None]]
    r = (yr - base) * w
    nd = chol.shape[1]

    def var(gh: tuple[float, float]) -> np.ndarray:
        return np.r_[np.full(nd, gh[0]), np.full(nb, gh[1] / nb)]

    beta, loo, gh = best_over_grid(m, var, HYBRID_GRID, r)
    theta = (prior.mu + chol @ beta[:nd]) * s
    coef_b = beta[nd:] * s / sb
    loo_ms = (loo / w + base) * s
    floor = float(0.2 * y.min())
    params = HybridParams(theta, np.asarray(prior.scale), cols, coef_b, tuple(gh), floor)
    return Candidate(Hybrid.name, params.to_dict(), ms_to_log(loo_ms, floor))


@register_head
class Hybrid(Descriptor):
    name, Params, min_samples = "hybrid", HybridParams, 5  # type: ignore[assignment]
    reads_basis = True

    def fit(self, inp: FitInputs) -> Candidate:
        assert inp.descriptors is not None and inp.prior is not None
        return fit_hybrid(inp.descriptors, inp.basis, inp.y, inp.prior)

    def predict_log(self, params: AnyParams, basis: np.ndarray, feats: np.ndarray,
                    desc: np.ndarray | None) -> np.ndarray:
        p: HybridParams = self.parse(params)  # type: ignore[assignment]
        ms = self.descriptor_ms(p, desc) + basis[:, p.columns] @ p.coef_basis
        return ms_to_log(ms, p.floor_ms)

    def predict_log_projected(self, params: AnyParams, basis: np.ndarray, uf: np.ndarray,
                              u: np.ndarray) -> np.ndarray:
        p: HybridParams = self.parse(params)  # type: ignore[assignment]
        ms = p.theta[0] + u[:, 0] + basis[:, p.columns] @ p.coef_basis
        return ms_to_log(ms, p.floor_ms)

    def columns(self, params: AnyParams) -> set[int]:
        return {int(c) for c in self.parse(params).columns}
