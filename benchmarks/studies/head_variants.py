"""Candidate-head variants tried for hardware unlike the basis (issue #13), NON-TEST devices only.

Each variant is fit on the same draws as ``head_study`` (HELP validation devices @10 / @20,
leave-family-out and few-basis non-test devices @10, two seed sets) and scored alone and as
an extra member of the shipped pseudo-BMA average (``rule open+V``: the space's candidates
plus the variant; ``open-powerlaw+V``: the variant instead of ``powerlaw``):

* ``powerlaw_eb``    ``log y = c + u(x) beta`` over the log of every descriptor (base and
                     per-stage MACs), standardised over the basis rows, with an empirical-
                     Bayes prior ``beta ~ N(mean, g (cov + 1 % diag))`` of the basis
                     devices' own fits (as ``priors.py`` does for the ``descriptor`` head);
* ``powerlaw_stage`` the same regressors with an isotropic zero-mean prior (nothing from the
                     basis: ``powerlaw`` with per-stage MACs);
* ``descriptor_iso`` the ``descriptor`` head with prior ``g cov + h I``: an isotropic part
                     (``h`` by leave-one-out) lets a device unlike every basis device leave
                     the basis devices' span;
* ``gp``             one Gaussian process in log latency whose kernel sums the ``descriptor``
                     model linearised around its basis prior (``g1``), the standardised log
                     descriptors (``g2``, agnostic) and the best basis column (``g3``), noise
                     ``s2``; the four chosen by marginal likelihood (evidence) over a grid.

    OMP_NUM_THREADS=1 python -m benchmarks.studies.head_variants --spaces fbnet \\
        --json benchmarks/results/studies/head_variants.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks._cli import load_average, parser, write_json
from benchmarks.studies import head_study as hs
from oracle_server.evaluation import table_inputs
from oracle_server.predictor.heads import ALL_COLUMN_KINDS, PRIOR_FREE, _best_over_grid
from oracle_server.predictor.priors import COV_RIDGE

GRID = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1000.0)
DESCRIPTOR_GRID = tuple(
    (g, h) for g in (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0) for h in (0.0, 1e-3, 1e-2, 1e-1)
)
VARIANTS = ("powerlaw_eb", "powerlaw_stage", "descriptor_iso", "gp")
GP_S2 = (0.001, 0.003, 0.01, 0.03, 0.1)  # noise variance of log latency
GP_G1 = (0.1, 0.3, 1.0, 3.0)  # the basis devices' spread of descriptor coefficients, times
GP_G2 = (0.0, 0.003, 0.01, 0.03, 0.1)  # per standardised log descriptor
GP_G3 = (0.0, 0.01, 0.1)  # the best basis column (standardised log)
GP_INTERCEPT = 10.0  # prior variance of the constant (nearly free)


def _log_desc(desc: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(desc, 1.0))


class LogPrior:
    """Standardised log descriptors and a prior on their coefficients from the basis rows."""

    def __init__(self, model, empirical: bool) -> None:
        tab, rows = model.space.table, model.proxy.train_rows
        u = _log_desc(table_inputs(model)[2][rows])
        self.mu_u, self.sd_u = u.mean(0), u.std(0)
        self.keep = self.sd_u > 1e-6  # e.g. NB-201 has no depthwise MACs
        x = np.c_[np.ones(len(rows)), self.design_raw(u)]
        p = int(self.keep.sum())
        if empirical:
            cols = [tab.devices.index(d) for d in model.proxy.devices]
            betas = np.array(
                [
                    np.linalg.lstsq(
                        x, np.log(np.maximum(tab.latency_ms[rows, c], 1e-3)), rcond=None
                    )[0][1:]
                    for c in cols
                ]
            )
            self.mu = betas.mean(0)
            cov = (
                np.atleast_2d(np.cov(betas.T))
                if len(betas) > 1
                else np.diag(np.maximum(self.mu**2, 1e-4))
            )
            cov = cov + COV_RIDGE * np.diag(np.maximum(np.diag(cov), 1e-6)) + 1e-9 * np.eye(p)
        else:
            self.mu, cov = np.zeros(p), np.eye(p)
        self.chol = np.linalg.cholesky(cov)

    def design_raw(self, u: np.ndarray) -> np.ndarray:
        return (u[:, self.keep] - self.mu_u[self.keep]) / self.sd_u[self.keep]

    def design(self, desc: np.ndarray) -> np.ndarray:
        return self.design_raw(_log_desc(desc))

    def fit(self, desc: np.ndarray, z: np.ndarray, desc_s: np.ndarray):
        """(leave-one-out log predictions, log predictions on ``desc_s``)."""
        us = self.design(desc)
        base = us @ self.mu
        r = z - base
        c0 = float(r.mean())
        m = np.c_[np.ones(len(z)), us @ self.chol]
        p = m.shape[1] - 1
        beta, loo, _ = _best_over_grid(m, lambda g: np.r_[PRIOR_FREE, np.full(p, g)], GRID, r - c0)
        theta = self.mu + self.chol @ beta[1:]
        return loo + c0 + base, c0 + beta[0] + self.design(desc_s) @ theta


def fit_descriptor_iso(prior, desc: np.ndarray, y: np.ndarray, desc_s: np.ndarray):
    """``heads.fit_descriptor`` with prior covariance ``g cov + h I`` (both by LOO): the
    design ``[xw chol, xw]`` with prior variances ``(g, h)``, as ``heads.fit_hybrid``."""
    x = prior.design(desc)
    s = float(y.mean())
    yr = y / s
    w = 1.0 / yr
    base = x @ prior.mu
    xw = x * w[:, None]
    r = (yr - base) * w
    chol = np.linalg.cholesky(prior.cov)
    p = chol.shape[1]
    beta, loo, _ = _best_over_grid(
        np.c_[xw @ chol, xw],
        lambda gh: np.r_[np.full(p, gh[0]), np.full(p, gh[1])],
        DESCRIPTOR_GRID,
        r,
    )
    theta = (prior.mu + chol @ beta[:p] + beta[p:]) * s
    floor = 0.2 * y.min()
    pred = theta[0] + (desc_s / prior.scale) @ theta[1:]
    return np.log(np.maximum((loo / w + base) * s, floor)), np.log(np.maximum(pred, floor))


def fit_gp(prior, all_desc: np.ndarray, fit: tuple, z: np.ndarray, score: tuple):
    """The ``gp`` variant on ``fit`` = (descriptors, basis) of the samples; predicts ``score``."""
    import itertools

    from oracle_server.predictor.heads import best_basis, log_basis

    chol = np.linalg.cholesky(prior.cov)
    u_all = _log_desc(all_desc)
    mu_u, sd_u = u_all.mean(0), u_all.std(0)
    keep = sd_u > 1e-6
    k = best_basis(log_basis(fit[1]), z)
    lb = log_basis(fit[1])[:, k]
    mu_c, sd_c = lb.mean(), lb.std() + 1e-9

    def blocks(desc: np.ndarray, basis: np.ndarray):
        x = prior.design(desc)
        m = np.maximum(x @ prior.mu, 1e-3)  # the prior-mean descriptor model (relative ms)
        return (
            np.log(m),
            (x / m[:, None]) @ chol,
            (_log_desc(desc)[:, keep] - mu_u[keep]) / sd_u[keep],
            ((log_basis(basis)[:, k] - mu_c) / sd_c)[:, None],
        )

    m0, a, b, c = blocks(*fit)
    r = z - m0
    n = len(z)
    ka, kb, kc = a @ a.T, b @ b.T, c @ c.T
    best = None
    for s2, g1, g2, g3 in itertools.product(GP_S2, GP_G1, GP_G2, GP_G3):
        kern = g1 * ka + g2 * kb + g3 * kc + s2 * np.eye(n) + GP_INTERCEPT
        k_inv = np.linalg.inv(kern)
        alpha = k_inv @ r
        neg_evidence = 0.5 * r @ alpha + 0.5 * np.linalg.slogdet(kern)[1]
        if best is None or neg_evidence < best[0]:
            best = (neg_evidence, alpha, r - alpha / np.diag(k_inv), (g1, g2, g3))
    _, alpha, loo, (g1, g2, g3) = best
    m0s, as_, bs, cs = blocks(*score)
    pred = m0s + (g1 * as_ @ a.T + g2 * bs @ b.T + g3 * cs @ c.T + GP_INTERCEPT) @ alpha
    return loo + m0, pred


_priors: dict = {}


def _log_prior(model, empirical: bool) -> LogPrior:
    key = (model.space.name, tuple(model.proxy.devices), len(model.proxy.train_rows), empirical)
    if key not in _priors:
        _priors[key] = LogPrior(model, empirical)
    return _priors[key]


_collect = hs.collect


def collect(model, device, opts, allowed, score, seeds) -> list[dict]:
    """``head_study.collect`` plus the variants, fit on the same rows."""
    out = _collect(model, device, opts, allowed, score, seeds)
    _, basis, desc = table_inputs(model)
    for d, seed in zip(out, seeds, strict=True):
        rows = hs.reference_rows(model, opts, allowed, seed)
        s = np.setdiff1d(score, rows)
        kinds = d["kinds"]
        kinds["powerlaw_eb"] = _log_prior(model, True).fit(desc[rows], d["z"], desc[s])
        kinds["powerlaw_stage"] = _log_prior(model, False).fit(desc[rows], d["z"], desc[s])
        kinds["descriptor_iso"] = fit_descriptor_iso(
            model.prior, desc[rows], np.exp(d["z"]), desc[s]
        )
        kinds["gp"] = fit_gp(
            model.prior, desc, (desc[rows], basis[rows]), d["z"], (desc[s], basis[s])
        )
    return out


def _alone(kind: str):
    return lambda d: d["kinds"][kind][1]


def rules(space: str) -> dict:
    base = ALL_COLUMN_KINDS if space != "nasbench201" else ()  # heads.candidate_kinds
    out = {"product": None, "shipped rule": hs.pbma_rule(2.0, 4, base + VARIANTS)}
    for v in VARIANTS:
        others = tuple(x for x in VARIANTS if x != v)
        out[f"open+{v}"] = hs.pbma_rule(2.0, 4, base + others)
        out[f"open-powerlaw+{v}"] = hs.pbma_rule(2.0, 4, base + others + ("powerlaw",))
    for k in ("powerlaw", "descriptor") + VARIANTS:
        out[f"{k} alone"] = _alone(k)
    return out


def main() -> None:
    p = parser(__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spaces", default="fbnet,ofa_mbv3,nasbench201")
    p.add_argument("--seed-sets", default="0,100")
    a = p.parse_args()
    hs.collect = collect
    start = time.perf_counter()
    result: dict = {"what": __doc__.split("\n\n")[0], "loadavg": load_average(), "spaces": {}}
    for space in a.spaces.split(","):
        table: dict[str, dict[str, float]] = {}
        for offset in (int(x) for x in a.seed_sets.split(",")):
            draws = hs.draws_for(space, offset, hs.SETTINGS + (hs.FEW_BASIS_SETTING,))
            for tag, ds in draws.items():
                for name, rule in rules(space).items():
                    table.setdefault(name, {})[f"{offset}/{tag}"] = hs.score(ds, rule)
        hs.print_table(f"{space} (mean held-out Spearman; columns seed set/setting)", table, 32)
        result["spaces"][space] = table
    result["seconds"] = time.perf_counter() - start
    if a.json:
        write_json(a.json, result, indent=1)


if __name__ == "__main__":
    main()
