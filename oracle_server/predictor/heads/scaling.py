"""Hardware-agnostic scaling laws on the descriptors (log space), nothing from the basis:

* ``flops``     the FLOPs baseline as a head: log y = a log MACs + c (ranks by MACs), so
                leave-one-out selection never silently does worse than FLOPs;
* ``powerlaw``  log y = c + sum_j b_j log d_j over MACs, activation traffic and kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oracle_server.predictor.heads.base import (
    AnyParams,
    Candidate,
    FitInputs,
    HeadKind,
    need_descriptors,
)
from oracle_server.predictor.heads.params import HeadParams, Vector, same_length
from oracle_server.predictor.heads.registry import register_head
from oracle_server.predictor.heads.solver import (
    PRIOR_FREE,
    affine_coef,
    best_over_grid,
    standardise,
)

#: descriptor columns of the ``powerlaw`` head: total MACs (dense + depthwise), activation
#: traffic, executed kernels (``spaces.descriptors.BASE_NAMES`` order)
POWERLAW_COLUMNS: tuple[tuple[int, ...], ...] = ((0, 1), (3,), (4,))
POWERLAW_GRID = (1e-2, 1e-1, 1.0, 10.0)


@dataclass(frozen=True, eq=False)
class FlopsParams(HeadParams):
    a: float
    c: float


def fit_flops(desc: np.ndarray, z: np.ndarray) -> Candidate:
    """The FLOPs baseline as a head: log y = a log MACs + c (a > 0, so it ranks by MACs)."""
    u = np.log(np.maximum(desc[:, 0] + desc[:, 1], 1.0))
    n = len(z)
    loo = np.empty(n)
    keep = ~np.eye(n, dtype=bool)
    for i in range(n):
        a, c = affine_coef(u[keep[i]], z[keep[i]])
        loo[i] = a * u[i] + c
    a, c = affine_coef(u, z)
    return Candidate(Flops.name, FlopsParams(a, c).to_dict(), loo)


@register_head
class Flops(HeadKind[FlopsParams]):
    name, Params, min_samples = "flops", FlopsParams, 3
    candidate, flops_baseline, reads_descriptors = True, True, True

    def available(self, inp: FitInputs) -> bool:
        return inp.descriptors is not None and super().available(inp)

    def fit(self, inp: FitInputs) -> Candidate:
        assert inp.descriptors is not None
        return fit_flops(inp.descriptors, inp.z)

    def predict_log(self, params: AnyParams, basis: np.ndarray, feats: np.ndarray,
                    desc: np.ndarray | None) -> np.ndarray:
        p = self.parse(params)
        d = need_descriptors(desc)
        return p.a * np.log(np.maximum(d[:, 0] + d[:, 1], 1.0)) + p.c

    def projection(self, params: AnyParams, num_descriptors: int) -> np.ndarray:
        m = np.zeros((num_descriptors, 1))
        m[[0, 1], 0] = 1.0  # dense + depthwise MACs
        return m

    def num_projected(self, params: AnyParams) -> int:
        return 1

    def predict_log_projected(self, params: AnyParams, basis: np.ndarray, uf: np.ndarray,
                              u: np.ndarray) -> np.ndarray:
        p = self.parse(params)
        return p.a * np.log(np.maximum(u[:, 0], 1.0)) + p.c


@dataclass(frozen=True, eq=False)
class PowerLawParams(HeadParams):
    mu_u: Vector
    sd_u: Vector
    beta: Vector  # [intercept, per log input] (times the samples' sd)
    c: float
    prior: float | None = None

    def check(self, kind: str) -> None:
        same_length(self, kind, "sd_u", len(self.mu_u))
        same_length(self, kind, "beta", len(self.mu_u) + 1)


def powerlaw_inputs(desc: np.ndarray) -> np.ndarray:
    """(n, k) log of the summed descriptor columns of ``POWERLAW_COLUMNS`` (>= 1)."""
    cols = [desc[:, list(c)].sum(axis=1) for c in POWERLAW_COLUMNS]
    return np.log(np.maximum(np.stack(cols, axis=1), 1.0))


def fit_powerlaw(desc: np.ndarray, z: np.ndarray) -> Candidate:
    """Hardware-agnostic power law: ``log y = c + sum_j b_j log d_j`` over compute (MACs),
    memory traffic (activations) and launches (kernels), i.e. ``y = C * MACs^b1 * bytes^b2 *
    kernels^b3`` — roofline-like without assuming which resource bounds the device. Ridge on
    the standardised logs, prior scale by exact leave-one-out; nothing from the basis."""
    u = powerlaw_inputs(desc)
    mu_u, sd_u = u.mean(0), u.std(0) + 1e-9
    m = np.c_[np.ones(len(z)), (u - mu_u) / sd_u]
    mu, sd = standardise(z)

    def var(g: float) -> np.ndarray:
        return np.r_[PRIOR_FREE, np.full(u.shape[1], g)]

    beta, loo, g = best_over_grid(m, var, POWERLAW_GRID, (z - mu) / sd)
    params = PowerLawParams(mu_u, sd_u, beta * sd, mu, g)
    return Candidate(PowerLaw.name, params.to_dict(), loo * sd + mu)


@register_head
class PowerLaw(HeadKind[PowerLawParams]):
    name, Params, min_samples = "powerlaw", PowerLawParams, 4
    candidate, reads_descriptors = True, True

    def available(self, inp: FitInputs) -> bool:
        return inp.descriptors is not None and super().available(inp)

    def fit(self, inp: FitInputs) -> Candidate:
        assert inp.descriptors is not None
        return fit_powerlaw(inp.descriptors, inp.z)

    def predict_log(self, params: AnyParams, basis: np.ndarray, feats: np.ndarray,
                    desc: np.ndarray | None) -> np.ndarray:
        p = self.parse(params)
        u = (powerlaw_inputs(need_descriptors(desc)) - p.mu_u) / p.sd_u
        return p.c + p.beta[0] + u @ p.beta[1:]

    def projection(self, params: AnyParams, num_descriptors: int) -> np.ndarray:
        m = np.zeros((num_descriptors, len(POWERLAW_COLUMNS)))
        for j, cols in enumerate(POWERLAW_COLUMNS):
            m[list(cols), j] = 1.0
        return m

    def num_projected(self, params: AnyParams) -> int:
        return len(POWERLAW_COLUMNS)

    def predict_log_projected(self, params: AnyParams, basis: np.ndarray, uf: np.ndarray,
                              u: np.ndarray) -> np.ndarray:
        p = self.parse(params)
        z = (np.log(np.maximum(u, 1.0)) - p.mu_u) / p.sd_u
        return p.c + p.beta[0] + z @ p.beta[1:]
