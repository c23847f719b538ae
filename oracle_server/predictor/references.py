"""Reference-architecture suggestion: which architectures to measure on a new device.

Strategy ("suggested"): order the candidate pool by the proxy's mean predicted
log-latency over the basis devices, cut it into ``n`` equal-count quantile strata, and
from each stratum take the architecture farthest (in standardised feature space) from
those already chosen, among a random subset of the stratum. The sample then spans the
whole latency range (good for affine / additive heads) and differs in its operations
(good for per-op cost heads).
"""

from __future__ import annotations

import numpy as np

CANDIDATES_PER_STRATUM = 64


def suggest_references(
    pool_genes: np.ndarray,
    pool_basis: np.ndarray,
    pool_features: np.ndarray,
    n: int,
    seed: int = 0,
) -> np.ndarray:
    """(n, g) genes from ``pool_genes`` (n <= pool size)."""
    n = min(n, len(pool_genes))
    rng = np.random.default_rng(seed)
    score = np.log(np.maximum(pool_basis, 1e-3)).mean(axis=1)
    order = np.argsort(score, kind="stable")
    strata = np.array_split(order, n)
    x = pool_features.astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    chosen: list[int] = []
    min_dist = np.full(len(x), np.inf)
    for stratum in strata:
        size = min(CANDIDATES_PER_STRATUM, len(stratum))
        cand = rng.choice(stratum, size, replace=False)
        pick = int(cand[np.argmax(min_dist[cand])]) if chosen else int(rng.choice(cand))
        chosen.append(pick)
        min_dist = np.minimum(min_dist, ((x - x[pick]) ** 2).sum(1))
    return pool_genes[np.asarray(chosen)]
