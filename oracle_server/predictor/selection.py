"""Per-device head selection by leave-one-out on the device's own samples.

``select_head`` fits every candidate head (``heads.HEAD_KINDS``), scores each by the
Spearman correlation of its exact leave-one-out predictions with the samples (ties broken
by leave-one-out squared log error), keeps the best and reports:

* ``expected_spearman``: that leave-one-out Spearman (the device's expected quality);
* ``monotonicity``: Spearman of the best single basis output vs the samples;
* an uncertainty model: RMS of the chosen head's LOO log-residuals, widened per
  architecture by its leverage along the best basis output.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from oracle_server.predictor.head_fit import HeadFit
from oracle_server.predictor.heads import (
    HEAD_KINDS,
    Candidate,
    best_basis,
    fit_candidate,
    log_basis,
    spearman,
    spearman_columns,
)

#: minimum sample count for each candidate (flexible heads need more data)
MIN_SAMPLES = {"affine": 2, "nnls_log": 4, "adaproxy": 5, "additive": 5, "counts": 5, "ridge": 8}
#: multiplies the LOO RMS so that the stated 80 % interval covers ~80 % (validation devices)
SIGMA_INFLATION = 1.0


def select_head(
    basis: np.ndarray,
    features: np.ndarray,
    latency_ms: np.ndarray,
    linear_weights: np.ndarray,
    cost_matrix: np.ndarray,
    kinds: Sequence[str] = HEAD_KINDS,
) -> HeadFit:
    """Fit all candidate heads on ``n`` validated samples and keep the LOO-best one."""
    start = time.perf_counter()
    y = np.asarray(latency_ms, dtype=np.float64)
    z = np.log(y)
    log_b = log_basis(basis)
    n = len(y)
    mono = float(np.max(spearman_columns(log_b, z))) if n >= 3 else float("nan")
    anchor = best_basis(log_b, z)
    usable = [k for k in kinds if n >= MIN_SAMPLES.get(k, 2)] or ["affine"]
    cands = [fit_candidate(k, basis, features, y, linear_weights, cost_matrix) for k in usable]
    scores = {c.kind: _loo_scores(c, z) for c in cands}
    best = max(cands, key=lambda c: (np.nan_to_num(scores[c.kind][0], nan=-2.0),
                                     -scores[c.kind][1]))
    rho, mse = scores[best.kind]
    u = log_b[:, anchor]
    sigma = {
        "anchor": anchor,
        "n": n,
        "u_mean": float(u.mean()),
        "u_sxx": float(((u - u.mean()) ** 2).sum()),
        "s": float(np.sqrt(mse) * SIGMA_INFLATION),
    }
    return HeadFit(
        kind=best.kind,
        num_samples=n,
        expected_spearman=rho if n >= 3 else float("nan"),
        monotonicity=mono,
        fit_seconds=time.perf_counter() - start,
        params=best.params,
        sigma=sigma,
        candidates={k: (None if np.isnan(v[0]) else round(v[0], 4)) for k, v in scores.items()},
    )


def _loo_scores(cand: Candidate, z: np.ndarray) -> tuple[float, float]:
    """(LOO Spearman, LOO mean squared log error) of a candidate."""
    rho = spearman(cand.loo_log, z) if len(z) >= 3 else float("nan")
    return rho, float(np.mean((cand.loo_log - z) ** 2))
