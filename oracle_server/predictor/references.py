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


#: candidates drawn from the pool per adaptive suggestion (bounds the cost, varies by seed)
ADAPTIVE_POOL = 4096


def suggest_next(
    pool_genes: np.ndarray,
    pool_basis: np.ndarray,
    log_sigma: np.ndarray,
    measured_genes: np.ndarray,
    n: int,
    seed: int = 0,
) -> np.ndarray:
    """(<= n, g) genes to measure next on a registered device (adaptive onboarding).

    A batch active-learning rule: every candidate scores its predictive uncertainty (the
    head's ``log_sigma``, scaled to [0, 1]) times its distance to the nearest architecture
    already measured or already picked, in the space of standardised log basis outputs
    (scaled to [0, 1]); the best scorer is picked and the distances updated, ``n`` times.
    So the batch goes where the head is unsure *and* has no measurement nearby, and its
    members are spread out. Already measured architectures are never suggested; the answer
    is shorter than ``n`` only when the pool runs out.
    """
    pool_genes = np.asarray(pool_genes)
    measured = np.asarray(measured_genes, dtype=pool_genes.dtype).reshape(-1, pool_genes.shape[1])
    z = np.log(np.maximum(np.asarray(pool_basis, dtype=np.float64), 1e-3))
    mu, sd = z.mean(0), z.std(0) + 1e-9
    z = (z - mu) / sd
    keys = _row_keys(pool_genes)
    is_measured = np.isin(keys, _row_keys(measured)) if len(measured) else np.zeros(
        len(pool_genes), dtype=bool
    )
    free = np.flatnonzero(~is_measured)
    rng = np.random.default_rng(seed)
    if len(free) > ADAPTIVE_POOL:
        free = np.sort(rng.choice(free, ADAPTIVE_POOL, replace=False))
    n = min(n, len(free))
    if n <= 0:
        return pool_genes[:0]
    sigma = np.asarray(log_sigma, dtype=np.float64)[free]
    u = sigma / sigma.max() if sigma.max() > 0 else np.ones(len(free))
    zc = z[free]
    if is_measured.any():
        anchors = z[is_measured]
        min_d = np.full(len(free), np.inf)
        for a in anchors:  # a handful of measured archs: one vectorised pass each
            min_d = np.minimum(min_d, ((zc - a) ** 2).sum(1))
    else:
        min_d = ((zc - zc.mean(0)) ** 2).sum(1)  # nothing measured: start far from the centre
    chosen: list[int] = []
    for _ in range(n):
        d = np.sqrt(min_d)
        score = u * (d / d.max() if d.max() > 0 else np.ones_like(d))
        score[chosen] = -np.inf
        pick = int(np.argmax(score))
        chosen.append(pick)
        min_d = np.minimum(min_d, ((zc - zc[pick]) ** 2).sum(1))
    return pool_genes[free[np.asarray(chosen)]]


def _row_keys(genes: np.ndarray) -> np.ndarray:
    """One hashable scalar per gene row (for membership tests)."""
    g = np.ascontiguousarray(genes.astype(np.int16))
    return g.view(np.dtype((np.void, g.dtype.itemsize * g.shape[1]))).ravel()
