"""Linear heads on the proxy's basis outputs and features, by dual ridge with exact LOO:

* ``ridge``     log y = [log basis, features] beta + c with a ridge penalty (larger samples);
* ``adaproxy``  OneProxy's transfer in ms: target weights = w_k * (a + b) + c, L2 on b;
* ``additive``  multi-basis AdaProxy: y = sum_k a_k b_k(x) + features (w_bar * b) + c;
* ``counts``    ridge on per-op-type counts and per-choice MACs / parameters (ms).
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
    LinearMsFeatures,
    best_basis,
    log_basis,
    ms_to_log,
)
from oracle_server.predictor.heads.params import (
    FloatTuple,
    HeadParams,
    Vector,
    same_length,
)
from oracle_server.predictor.heads.registry import register_head
from oracle_server.predictor.heads.solver import PRIOR_FREE, best_over_grid, standardise

RIDGE_GRID = (1e-3, 1e-2, 1e-1, 1.0)
ADA_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
ADDITIVE_GRID = tuple((g1, g2) for g1 in (1e-2, 1e-1, 1.0, 10.0) for g2 in (0.0, 1e-2, 1e-1))
COUNTS_GRID = (1e-1, 1.0, 10.0, 100.0)


# ------------------------------------------------------------------ ridge
@dataclass(frozen=True, eq=False)
class RidgeParams(HeadParams):
    mu_b: Vector
    sd_b: Vector
    mu_f: Vector
    sd_f: Vector
    beta: Vector  # [intercept, basis..., features...] in standardised units (times sd)
    c: float
    prior: float | None = None

    def check(self, kind: str) -> None:
        same_length(self, kind, "sd_b", len(self.mu_b))
        same_length(self, kind, "sd_f", len(self.mu_f))
        same_length(self, kind, "beta", 1 + len(self.mu_b) + len(self.mu_f))


def fit_ridge(log_b: np.ndarray, feats: np.ndarray, z: np.ndarray) -> Candidate:
    """Log-space ridge on standardised [log basis, features] (features down-weighted)."""
    mu_b, sd_b = log_b.mean(0), log_b.std(0) + 1e-9
    mu_f, sd_f = feats.mean(0), feats.std(0) + 1e-9
    m = np.c_[np.ones(len(z)), (log_b - mu_b) / sd_b, (feats - mu_f) / sd_f]
    nb = log_b.shape[1]
    mu, sd = standardise(z)

    def var(g: float) -> np.ndarray:
        return np.r_[PRIOR_FREE, np.full(nb, g), np.full(feats.shape[1], 0.1 * g)]

    beta, loo, g = best_over_grid(m, var, RIDGE_GRID, (z - mu) / sd)
    params = RidgeParams(mu_b, sd_b, mu_f, sd_f, beta * sd, mu, g)
    return Candidate(Ridge.name, params.to_dict(), loo * sd + mu)


@register_head
class Ridge(HeadKind[RidgeParams]):
    name, Params, min_samples = "ridge", RidgeParams, 8
    candidate, closed_space_only, reads_basis, reads_features = True, True, True, True

    def fit(self, inp: FitInputs) -> Candidate:
        return fit_ridge(inp.log_b, inp.features, inp.z)

    def predict_log(self, params: AnyParams, basis: np.ndarray, feats: np.ndarray,
                    desc: np.ndarray | None) -> np.ndarray:
        p = self.parse(params)
        zb = (log_basis(basis) - p.mu_b) / p.sd_b
        zf = (feats - p.mu_f) / p.sd_f
        return p.c + p.beta[0] + np.c_[zb, zf] @ p.beta[1:]

    def feature_projection(self, params: AnyParams, num_features: int) -> np.ndarray:
        p = self.parse(params)
        return (p.beta[1 + len(p.mu_b):] / p.sd_f)[:, None]

    def num_feature_projected(self, params: AnyParams) -> int:
        return 1

    def predict_log_projected(self, params: AnyParams, basis: np.ndarray, uf: np.ndarray,
                              u: np.ndarray) -> np.ndarray:
        # (feats - mu_f) / sd_f @ beta_f == feats @ (beta_f / sd_f) - (mu_f / sd_f) @ beta_f
        p = self.parse(params)
        zb = (log_basis(basis) - p.mu_b) / p.sd_b
        nb = len(p.mu_b)
        shift = (p.mu_f / p.sd_f) @ p.beta[1 + nb:]
        return p.c + p.beta[0] + zb @ p.beta[1 : 1 + nb] + (uf[:, 0] - shift)

    def columns(self, params: AnyParams) -> set[int]:
        return set(range(len(self.parse(params).mu_b)))


# --------------------------------------------------------------- adaproxy
@dataclass(frozen=True, eq=False)
class AdaProxyParams(HeadParams):
    basis_index: int
    a: float
    b: Vector
    c: float
    weights: Vector  # the transferred per-feature weights (ms)
    prior: float | None = None
    floor_ms: float = MS_FLOOR

    def check(self, kind: str) -> None:
        same_length(self, kind, "weights", len(self.b))


def fit_adaproxy(
    log_b: np.ndarray, feats: np.ndarray, y: np.ndarray, weights: np.ndarray, k: int | None = None
) -> Candidate:
    """AdaProxy: y = X (w * (a + b)) + c  ==  a (X w) + (X * w) b + c, L2 on b (ms space).

    ``weights`` (F + 1, B) are the proxy's per-device linear models (last row intercept).
    """
    k = best_basis(log_b, np.log(y)) if k is None else k
    w = weights[:-1, k]
    u = feats @ w
    zmat = feats * w
    mu, sd = standardise(y)
    su = float(u.std()) or 1.0
    scale = su / np.sqrt((zmat**2).sum(1).mean() + 1e-12)  # b's prior relative to a's
    m = np.c_[np.ones(len(y)), u / su, zmat * scale]

    def var(g: float) -> np.ndarray:
        return np.r_[PRIOR_FREE, PRIOR_FREE, np.full(zmat.shape[1], g)]

    beta, loo, g = best_over_grid(m, var, ADA_GRID, (y - mu) / sd)
    a = beta[1] * sd / su
    b = beta[2:] * sd * scale
    c = beta[0] * sd + mu
    target_w = w * (a + b)  # the transferred weights
    params = AdaProxyParams(k, float(a), b, float(c), target_w, g, float(0.2 * y.min()))
    return Candidate(AdaProxy.name, params.to_dict(), ms_to_log(loo * sd + mu, MS_FLOOR))


@register_head
class AdaProxy(LinearMsFeatures, HeadKind[AdaProxyParams]):
    name, Params, min_samples = "adaproxy", AdaProxyParams, 5
    candidate, reads_features = True, True

    def fit(self, inp: FitInputs) -> Candidate:
        return fit_adaproxy(inp.log_b, inp.features, inp.y, inp.weights)

    def _feature_weights(self, p: AdaProxyParams) -> np.ndarray:
        return p.weights


# --------------------------------------------------------- additive, counts
@dataclass(frozen=True, eq=False)
class AdditiveParams(HeadParams):
    coef_basis: Vector  # ms per ms of each basis column (empty: none read)
    coef_features: Vector  # ms per unit of each proxy feature
    c: float
    prior: FloatTuple | None = None  # (group, feature) prior scales
    floor_ms: float = MS_FLOOR


@dataclass(frozen=True, eq=False)
class CountsParams(AdditiveParams):
    prior: float | None = None


def fit_additive(
    basis: np.ndarray,
    feats: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    cost_matrix: np.ndarray,
) -> Candidate:
    """Multi-basis, grouped AdaProxy in ms.

    Per-feature target cost = sum_k a_k (basis k) + w_bar_j (beta_group(j) + b_j): the
    typical per-feature cost ``w_bar`` over basis devices is rescaled along each column of
    ``cost_matrix`` (F, K) (e.g. one op type at every position) and per feature, with
    hierarchical L2 priors; prior scales are picked by exact leave-one-out.
    """
    w_bar = np.sqrt((weights[:-1] ** 2).mean(1))  # typical per-feature cost (ms)
    zmat = feats * w_bar
    gmat = cost_matrix
    zgrp = zmat @ gmat
    mu, sd = standardise(y)
    sb = basis.std(0) + 1e-9
    s_f = 1.0 / np.sqrt((zmat**2).sum(1).mean() + 1e-12)
    s_g = 1.0 / np.sqrt((zgrp**2).sum(1).mean() + 1e-12)
    m = np.c_[np.ones(len(y)), basis / sb, zgrp * s_g, zmat * s_f]
    nb, ng, nf = basis.shape[1], zgrp.shape[1], zmat.shape[1]

    def var(g: tuple[float, float]) -> np.ndarray:
        return np.r_[PRIOR_FREE, np.full(nb, 1.0), np.full(ng, g[0]), np.full(nf, g[1])]

    beta, loo, g = best_over_grid(m, var, ADDITIVE_GRID, (y - mu) / sd)
    beta = beta * sd
    coef_b = beta[1 : nb + 1] / sb
    coef_f = w_bar * (gmat @ (beta[nb + 1 : nb + 1 + ng] * s_g) + beta[nb + 1 + ng :] * s_f)
    params = AdditiveParams(coef_b, coef_f, float(beta[0] + mu), tuple(g),
                            float(0.2 * y.min()))
    return Candidate(Additive.name, params.to_dict(), ms_to_log(loo * sd + mu, MS_FLOOR))


@register_head
class Additive(LinearMsFeatures, HeadKind[AdditiveParams]):
    name, Params, min_samples = "additive", AdditiveParams, 5
    candidate, closed_space_only, reads_basis, reads_features = True, True, True, True

    def fit(self, inp: FitInputs) -> Candidate:
        return fit_additive(inp.basis, inp.features, inp.y, inp.weights, inp.cost_matrix)

    def _feature_weights(self, p: AdditiveParams) -> np.ndarray:
        return p.coef_features

    def _log_ms(self, p: AdditiveParams, basis: np.ndarray, ms: np.ndarray) -> np.ndarray:
        if p.coef_basis.size:
            ms = ms + basis @ p.coef_basis
        return ms_to_log(ms, p.floor_ms)

    def columns(self, params: AnyParams) -> set[int]:
        return {int(i) for i in np.flatnonzero(self.parse(params).coef_basis)}


def fit_counts(feats: np.ndarray, y: np.ndarray, cost_matrix: np.ndarray) -> Candidate:
    """Additive cost model in ms: y = c + sum_g theta_g count_g(x), ridge.

    ``count_g = features @ cost_matrix[:, g]``: per-op-type counts (how many edges or blocks
    use an op type) and per-choice MACs / parameters, so the model stays linear in features.
    """
    gmat = cost_matrix
    cnt = feats @ gmat
    mu_c, sd_c = cnt.mean(0), cnt.std(0)
    sd_c = np.where(sd_c > 1e-9, sd_c, np.inf)
    mu, sd = standardise(y)
    m = np.c_[np.ones(len(y)), (cnt - mu_c) / sd_c]

    def var(g: float) -> np.ndarray:
        return np.r_[PRIOR_FREE, np.full(cnt.shape[1], g / cnt.shape[1])]

    beta, loo, g = best_over_grid(m, var, COUNTS_GRID, (y - mu) / sd)
    theta = beta[1:] * sd / sd_c
    coef_f = gmat @ theta
    c = float(beta[0] * sd + mu - mu_c @ theta)
    params = CountsParams(np.zeros(0), coef_f, c, g, float(0.2 * y.min()))
    return Candidate(Counts.name, params.to_dict(), ms_to_log(loo * sd + mu, MS_FLOOR))


@register_head
class Counts(Additive):
    """``additive``'s parameters and prediction (no basis term), fit on feature counts."""

    name, Params, reads_basis = "counts", CountsParams, False

    def fit(self, inp: FitInputs) -> Candidate:
        return fit_counts(inp.features, inp.y, inp.cost_matrix)

