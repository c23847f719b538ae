"""Heads on the proxy's basis outputs alone (log space):

* ``basis``     identity on one basis (training) device (``LatencyModel.basis_head``);
* ``affine``    log y = a log b_k + c on the best-correlated basis device k (monotone, a > 0);
* ``nnls_log``  log y = sum_k w_k log b_k + c with w >= 0 (scipy nnls).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oracle_server.predictor.heads.base import (
    AnyParams,
    Candidate,
    FitInputs,
    HeadKind,
    best_basis,
    log_basis,
)
from oracle_server.predictor.heads.params import HeadParams, ParamsError, Vector
from oracle_server.predictor.heads.registry import register_head
from oracle_server.predictor.heads.solver import affine_coef, nnls
from oracle_server.predictor.heads.stats import spearman_columns

#: up to this many samples the affine head's LOO re-chooses among every basis column ...
AFFINE_FULL_LOO_MAX = 20
#: ... above, among the top few (one sample left out cannot lift a column from further)
AFFINE_LOO_COLUMNS = 5


@dataclass(frozen=True, eq=False)
class BasisParams(HeadParams):
    basis_index: int

    def check(self, kind: str) -> None:
        if self.basis_index < 0:
            raise ParamsError(kind, "basis_index", f"must be >= 0, got {self.basis_index}")


@register_head
class Basis(HeadKind[BasisParams]):
    name, Params, reads_basis = "basis", BasisParams, True

    def available(self, inp: FitInputs) -> bool:
        return False  # only built for the bundled devices (LatencyModel.basis_head)

    def predict_log(self, params: AnyParams, basis: np.ndarray, feats: np.ndarray,
                    desc: np.ndarray | None) -> np.ndarray:
        return log_basis(basis[:, self.parse(params).basis_index])

    def columns(self, params: AnyParams) -> set[int]:
        return {self.parse(params).basis_index}


@dataclass(frozen=True, eq=False)
class AffineParams(BasisParams):
    a: float
    c: float


def fit_affine(log_b: np.ndarray, z: np.ndarray) -> Candidate:
    n = len(z)
    k = best_basis(log_b, z)
    loo = np.empty(n)
    keep = ~np.eye(n, dtype=bool)
    # re-choose the basis device inside each fold (honest LOO); with many samples one left
    # out cannot lift a column from outside the top few, so only those are re-ranked
    cand = np.arange(log_b.shape[1])
    if n > AFFINE_FULL_LOO_MAX:
        rho = spearman_columns(log_b, z)
        cand = np.argsort(-np.nan_to_num(rho, nan=-2.0))[:AFFINE_LOO_COLUMNS]
    sub = log_b[:, cand]
    for i in range(n):
        ki = int(cand[best_basis(sub[keep[i]], z[keep[i]])])
        a, c = affine_coef(log_b[keep[i], ki], z[keep[i]])
        loo[i] = a * log_b[i, ki] + c
    a, c = affine_coef(log_b[:, k], z)
    return Candidate(Affine.name, AffineParams(k, a, c).to_dict(), loo)


@register_head
class Affine(Basis):
    """``basis`` scaled and shifted in logs: ``a log b_k + c``, fit from the samples."""

    name, Params, min_samples = "affine", AffineParams, 2  # type: ignore[assignment]
    candidate, last_resort = True, True

    def available(self, inp: FitInputs) -> bool:
        return HeadKind.available(self, inp)  # unlike ``basis``, fit for every device

    def fit(self, inp: FitInputs) -> Candidate:
        return fit_affine(inp.log_b, inp.z)

    def predict_log(self, params: AnyParams, basis: np.ndarray, feats: np.ndarray,
                    desc: np.ndarray | None) -> np.ndarray:
        p: AffineParams = self.parse(params)  # type: ignore[assignment]
        return p.a * super().predict_log(p, basis, feats, desc) + p.c


@dataclass(frozen=True, eq=False)
class NnlsLogParams(HeadParams):
    weights: Vector
    c: float


def _nnls_coef(log_b: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, float]:
    mu_b, mu_z = log_b.mean(0), z.mean()
    w = nnls(log_b - mu_b, z - mu_z)
    return w, float(mu_z - mu_b @ w)


def fit_nnls_log(log_b: np.ndarray, z: np.ndarray) -> Candidate:
    n = len(z)
    w, c = _nnls_coef(log_b, z)
    loo = np.empty(n)
    keep = ~np.eye(n, dtype=bool)
    for i in range(n):
        wi, ci = _nnls_coef(log_b[keep[i]], z[keep[i]])
        loo[i] = log_b[i] @ wi + ci
    return Candidate(NnlsLog.name, NnlsLogParams(w, c).to_dict(), loo)


@register_head
class NnlsLog(HeadKind[NnlsLogParams]):
    name, Params, min_samples = "nnls_log", NnlsLogParams, 4
    candidate, reads_basis = True, True

    def fit(self, inp: FitInputs) -> Candidate:
        return fit_nnls_log(inp.log_b, inp.z)

    def predict_log(self, params: AnyParams, basis: np.ndarray, feats: np.ndarray,
                    desc: np.ndarray | None) -> np.ndarray:
        """``log_basis(basis) @ weights + c`` over the columns of non-zero weight only (nnls
        zeroes most: the others add exact zeros; equal to float rounding, and Rank reads
        only those columns: ``columns``)."""
        p = self.parse(params)
        cols = np.flatnonzero(p.weights)
        if len(cols) == len(p.weights):
            return log_basis(basis) @ p.weights + p.c
        return log_basis(basis[:, cols]) @ p.weights[cols] + p.c

    def columns(self, params: AnyParams) -> set[int]:
        return {int(i) for i in np.flatnonzero(self.parse(params).weights)}
