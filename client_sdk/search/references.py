"""References for search: which architectures to measure on a new device before a search.

A search only needs the latency head to be right where the accuracy/latency Pareto front
is, i.e. among the most accurate architectures at each latency level. ``front_references``
picks the ``n`` architectures to measure from that region and spreads them over the
quantiles of a latency hint (FLOPs by default, or the oracle's predicted latency on any
device it already knows), so the registered head is calibrated where the search ends up.

Region (``mode``), over a candidate pool (the space's table unless ``pool`` is given):

* ``'layers'``: the first non-dominated layers of (accuracy max, hint min) holding at least
  ``top`` of the pool (the accuracy-nondominated region, every latency level covered);
* ``'binned'``: the pool split into ``n`` equal-count hint bins, the ``top`` most accurate
  fraction of each bin;
* ``'top'``: the ``top`` most accurate fraction of the whole pool.

One architecture is then drawn (``seed``) from each of ``n`` equal-count hint bins of the
region.
"""

from __future__ import annotations

import numpy as np

from client_sdk.search.objectives import Objective, evaluate_accuracy, resolve_objective
from client_sdk.search.results import pareto_mask
from client_sdk.spaces import SearchSpace

MODES = ("layers", "binned", "top")


def candidate_pool(space: SearchSpace) -> np.ndarray:
    """The default pool: the distinct canonical architectures of the space's table."""
    return np.unique(space.canonicalize(np.asarray(space.table.genes)), axis=0)


def pareto_layers(accuracy: np.ndarray, hint: np.ndarray, min_count: int) -> np.ndarray:
    """Mask of the first non-dominated layers of (max accuracy, min hint) >= ``min_count``."""
    F = np.column_stack([-accuracy, hint])
    chosen = np.zeros(len(F), dtype=bool)
    left = np.arange(len(F))
    while chosen.sum() < min_count and left.size:
        layer = left[pareto_mask(F[left])]
        chosen[layer] = True
        left = left[~np.isin(left, layer)]
    return chosen


def _bins(order: np.ndarray, n: int) -> list[np.ndarray]:
    """``order`` (indices sorted by hint) cut into ``n`` contiguous equal-count bins."""
    return [b for b in np.array_split(order, n) if b.size]


def front_references(
    space: SearchSpace,
    n: int,
    objective: Objective = "cifar10",
    latency_hint: np.ndarray | None = None,
    seed: int = 0,
    *,
    mode: str = "layers",
    top: float = 0.1,
    pool: np.ndarray | None = None,
) -> np.ndarray:
    """Genes ``(n, g)`` of ``n`` distinct architectures to measure for a search.

    ``objective``: a bundled metric name or a callable ``genes -> accuracy`` (higher is
    better). ``latency_hint``: ``(len(pool),)`` predicted latencies of the pool (e.g. from
    ``client.rank`` on a device the oracle knows; pass ``pool`` with it when not the whole
    table), defaulting to ``space.flops``. ``top`` in (0, 1]: the region's share of the pool.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got '{mode}'")
    if not 0.0 < top <= 1.0:
        raise ValueError("top must be in (0, 1]")
    genes = candidate_pool(space) if pool is None else np.asarray(pool)
    if n < 1 or n > len(genes):
        raise ValueError(f"n must be in [1, {len(genes)}], got {n}")
    _, acc_fn = resolve_objective(space, objective)
    acc = evaluate_accuracy(acc_fn, genes)
    hint = space.flops(genes) if latency_hint is None else np.asarray(latency_hint, float)
    if hint.shape != (len(genes),):
        raise ValueError(f"latency_hint must have one value per pool architecture ({len(genes)})")
    # tiny seeded jitter breaks hint ties so equal-count bins are well defined
    rng = np.random.default_rng(seed)
    keep = max(n, int(np.ceil(top * len(genes))))
    if mode == "layers":
        region = np.flatnonzero(pareto_layers(acc, hint, keep))
    elif mode == "top":
        region = np.argsort(-acc, kind="stable")[:keep]
    else:
        per_bin = []
        for b in _bins(np.argsort(hint, kind="stable"), n):
            k = max(1, int(np.ceil(top * b.size)))
            per_bin.append(b[np.argsort(-acc[b], kind="stable")[:k]])
        region = np.concatenate(per_bin)
    order = region[np.lexsort((rng.random(region.size), hint[region]))]
    picks = np.array([rng.choice(b) for b in _bins(order, n)], dtype=np.int64)
    return genes[picks]
