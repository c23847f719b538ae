"""Hardware-agnostic scaling laws on the descriptors (log space), nothing from the basis:

* ``flops``     the FLOPs baseline as a head: log y = a log MACs + c (ranks by MACs), so
                leave-one-out selection never silently does worse than FLOPs;
* ``powerlaw``  log y = c + sum_j b_j log d_j over MACs, activation traffic and kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

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

#: descriptor columns of the ``flops`` head: dense + depthwise MACs
FLOPS_COLUMNS: tuple[tuple[int, ...], ...] = ((0, 1),)
#: descriptor columns of the ``powerlaw`` head: total MACs (dense + depthwise), activation
#: traffic, executed kernels (``spaces.descriptors.BASE_NAMES`` order)
POWERLAW_COLUMNS: tuple[tuple[int, ...], ...] = ((0, 1), (3,), (4,))
POWERLAW_GRID = (1e-2, 1e-1, 1.0, 10.0)


def column_logs(desc: np.ndarray, groups: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """(n, k) log of the descriptor columns summed per group of ``groups`` (>= 1)."""
    cols = [desc[:, list(c)].sum(axis=1) for c in groups]
    return np.log(np.maximum(np.stack(cols, axis=1), 1.0))


def powerlaw_inputs(desc: np.ndarray) -> np.ndarray:
    """(n, k) log of the summed descriptor columns of ``POWERLAW_COLUMNS`` (>= 1)."""
    return column_logs(desc, POWERLAW_COLUMNS)


class LogColumnSums:
    """Heads on the logs of a few summed descriptor columns (``groups``): ``_predict`` maps
    the (n, k) logs to log latency; Rank's fast path projects the sums (one a group)."""

    groups: ClassVar[tuple[tuple[int, ...], ...]] = ()

    def _predict(self, p: Any, logs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_log(self, params: AnyParams, basis: np.ndarray, feats: np.ndarray,
                    desc: np.ndarray | None) -> np.ndarray:
        logs = column_logs(need_descriptors(desc), self.groups)
        return self._predict(self.parse(params), logs)  # type: ignore[attr-defined]

    def projection(self, params: AnyParams, num_descriptors: int) -> np.ndarray:
        m = np.zeros((num_descriptors, len(self.groups)))
        for j, cols in enumerate(self.groups):
            m[list(cols), j] = 1.0
        return m

    def num_projected(self, params: AnyParams) -> int:
        return len(self.groups)

    def predict_log_projected(self, params: AnyParams, basis: np.ndarray, uf: np.ndarray,
                              u: np.ndarray) -> np.ndarray:
        logs = np.log(np.maximum(u, 1.0))
        return self._predict(self.parse(params), logs)  # type: ignore[attr-defined]


@dataclass(frozen=True, eq=False)
class FlopsParams(HeadParams):
    a: float
    c: float


def fit_flops(desc: np.ndarray, z: np.ndarray) -> Candidate:
    """The FLOPs baseline as a head: log y = a log MACs + c (a > 0, so it ranks by MACs)."""
    u = column_logs(desc, FLOPS_COLUMNS)[:, 0]
    n = len(z)
    loo = np.empty(n)
    keep = ~np.eye(n, dtype=bool)
    for i in range(n):
        a, c = affine_coef(u[keep[i]], z[keep[i]])
        loo[i] = a * u[i] + c
    a, c = affine_coef(u, z)
    return Candidate(Flops.name, FlopsParams(a, c).to_dict(), loo)


@register_head
class Flops(LogColumnSums, HeadKind[FlopsParams]):
    name, Params, min_samples, groups = "flops", FlopsParams, 3, FLOPS_COLUMNS
    candidate, flops_baseline, reads_descriptors = True, True, True

    def fit(self, inp: FitInputs) -> Candidate:
        assert inp.descriptors is not None
        return fit_flops(inp.descriptors, inp.z)

    def _predict(self, p: FlopsParams, logs: np.ndarray) -> np.ndarray:
        return p.a * logs[:, 0] + p.c


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
class PowerLaw(LogColumnSums, HeadKind[PowerLawParams]):
    name, Params, min_samples, groups = "powerlaw", PowerLawParams, 4, POWERLAW_COLUMNS
    candidate, reads_descriptors = True, True

    def fit(self, inp: FitInputs) -> Candidate:
        assert inp.descriptors is not None
        return fit_powerlaw(inp.descriptors, inp.z)

    def _predict(self, p: PowerLawParams, logs: np.ndarray) -> np.ndarray:
        return p.c + p.beta[0] + ((logs - p.mu_u) / p.sd_u) @ p.beta[1:]
