"""Non-negative additive cost models on the descriptors, in ms (issue 26):

* ``nnls_desc``  the naive fit on the six base descriptors:
                 y = theta_0 + sum_j theta_j d_j / scale_j, theta >= 0 (scipy nnls);
* ``nnls_eb6``   the same shrunk towards the space's descriptor prior (mean clipped at 0),
                 prior scale by exact leave-one-out;
* ``nnls_eb``    ``nnls_eb6`` on every descriptor column (base + per-stage MACs).

``nnls_desc`` is registered but no candidate: on HELP validation device titanx_32 its
leave-one-out on 10 samples wins and ranks 0.71 (0.88 without it); its shrunk versions
keep HELP validation and gain on this CPU's recorded onboardings (seeds 11-43, FBNet and
OFA: 0.941 -> 0.947 mean, benchmarks.studies.onboarding_replay).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from oracle_server.predictor.heads.base import (
    AnyParams,
    Candidate,
    FitInputs,
    HeadKind,
    LinearMsProjection,
    ms_to_log,
    need_descriptors,
)
from oracle_server.predictor.heads.descriptor import DescriptorParams
from oracle_server.predictor.heads.registry import register_head
from oracle_server.predictor.heads.solver import nnls
from oracle_server.predictor.priors import DescriptorPrior

#: descriptor columns of ``nnls_desc`` / ``nnls_eb6``: the six space-independent ones
#: (``spaces.descriptors.BASE_NAMES``); ``nnls_eb`` reads every column (+ per-stage MACs)
NONNEG_BASE_COLUMNS = 6
#: prior scales ``g`` of the non-negative empirical-Bayes heads (picked by exact LOO)
NONNEG_EB_GRID = (0.1, 1.0, 10.0, 100.0, 1e3, 1e4)


@dataclass(frozen=True, eq=False)
class NonnegParams(DescriptorParams):
    """``descriptor``'s parameters, of the columns read: ``theta`` (ms) is >= 0, ``prior``
    None for the naive fit (no prior)."""


def fit_nonneg_descriptor(desc: np.ndarray, y: np.ndarray, kind: str, columns: int | None,
                          prior: DescriptorPrior | None = None,
                          grid: Sequence[float | None] = (None,)) -> Candidate:
    """Non-negative additive cost model in ms: ``y = theta_0 + sum_j theta_j d_j / scale_j``,
    ``theta >= 0`` (scipy nnls, unweighted: the issue-26 naive fit), on the first ``columns``
    descriptor columns (all if None).

    With ``prior`` (the space's ``DescriptorPrior``, relative units) the coefficients are
    shrunk towards its mean clipped at 0 with covariance ``g * cov`` (extra nnls rows
    ``L^-1 / sqrt(g)``, ``cov = L L^T``), ``g`` over ``grid`` by exact leave-one-out (a
    refit per left-out sample). Unlike ``descriptor`` (relative-error weights, a Gaussian
    prior whose mean may be negative where the basis devices' is, e.g. activation traffic
    on FBNet's GPUs), a CPU unlike the basis keeps physically plausible non-negative costs.
    """
    d = desc if columns is None else desc[:, :columns]
    cols = d.shape[1]
    if prior is not None:
        scale = np.asarray(prior.scale[:cols], dtype=np.float64)
    else:
        scale = d.mean(0)
        scale = np.where(scale > 0, scale, 1.0)
    x = np.c_[np.ones(len(y)), d / scale]
    s = float(y.mean())
    yr = y / s
    n = len(y)
    keep = ~np.eye(n, dtype=bool)
    floor = float(0.2 * y.min())
    best: tuple | None = None
    for g in grid:
        if g is None:
            pen = np.zeros((0, cols + 1))
            target = np.zeros(0)
        else:
            assert prior is not None
            cov = prior.cov[: cols + 1, : cols + 1]
            pen = np.linalg.inv(np.linalg.cholesky(cov)) / np.sqrt(g)
            target = pen @ np.maximum(prior.mu[: cols + 1], 0.0)
        loo = np.empty(n)
        for i in range(n):
            c = nnls(np.r_[x[keep[i]], pen], np.r_[yr[keep[i]], target])
            loo[i] = x[i] @ c
        loo_log = ms_to_log(loo * s, floor)
        err = float(np.mean((loo_log - np.log(y)) ** 2))
        if best is None or err < best[0]:
            best = (err, g, loo_log, pen, target)
    assert best is not None
    _, g, loo_log, pen, target = best
    theta = nnls(np.r_[x, pen], np.r_[yr, target]) * s
    return Candidate(kind, NonnegParams(theta, scale, g, floor).to_dict(), loo_log)


@register_head
class NnlsDesc(LinearMsProjection, HeadKind[NonnegParams]):
    """``fit_nonneg_descriptor`` on the six base descriptors, no prior (the naive fit)."""

    name, Params, min_samples, reads_descriptors = "nnls_desc", NonnegParams, 4, True
    #: descriptor columns read (the first ones; None: all)
    columns_read: ClassVar[int | None] = NONNEG_BASE_COLUMNS

    def fit(self, inp: FitInputs) -> Candidate:
        assert inp.descriptors is not None
        if self.reads_prior:
            return fit_nonneg_descriptor(inp.descriptors, inp.y, self.name, self.columns_read,
                                         inp.prior, NONNEG_EB_GRID)
        return fit_nonneg_descriptor(inp.descriptors, inp.y, self.name, self.columns_read)

    def _coef(self, params: AnyParams) -> tuple[float, np.ndarray, float]:
        """(intercept ms, per-descriptor-unit ms of the columns read, floor ms)."""
        p = self.parse(params)
        return float(p.theta[0]), p.theta[1:] / p.scale, p.floor_ms

    def predict_log(self, params: AnyParams, basis: np.ndarray, feats: np.ndarray,
                    desc: np.ndarray | None) -> np.ndarray:
        c0, coef, floor = self._coef(params)
        d = need_descriptors(desc)
        return ms_to_log(c0 + d[:, : len(coef)] @ coef, floor)

    def projection(self, params: AnyParams, num_descriptors: int) -> np.ndarray:
        _, coef, _ = self._coef(params)
        m = np.zeros((num_descriptors, 1))
        m[: len(coef), 0] = coef
        return m



@register_head
class NnlsEb6(NnlsDesc):
    """``nnls_desc`` shrunk towards the space's descriptor prior (six base columns)."""

    name, reads_prior, candidate = "nnls_eb6", True, True


@register_head
class NnlsEb(NnlsDesc):
    """``nnls_eb6`` on every descriptor column (base + per-stage MACs)."""

    name, reads_prior, columns_read, candidate = "nnls_eb", True, None, True
