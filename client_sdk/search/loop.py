"""Closing the loop with the device: which architectures to measure during a search.

After a round of NSGA-II, the archive holds every evaluated architecture with a predicted
latency and (when the oracle returns them) the head's central interval. An architecture is
worth measuring when its measurement could change the front: it is near the front AND its
prediction is uncertain. For each device ``j`` and each unmeasured archive row ``i``:

* ``t_i``: the fastest latency among rows strictly more accurate than ``i`` (``i`` is on
  the front of the (accuracy, latency_j) projection exactly when ``latency_i < t_i``);
* ``p_i = Phi((log t_i - log mu_i) / sqrt(s_i^2 + s_k^2))``: the probability that ``i`` is on
  the front, with ``s`` the log-space standard deviations implied by the intervals (``k`` the
  row that sets ``t_i``; measured rows have ``s = 0``);
* the worth ``p_i (1 - p_i)`` of the comparison (largest when front membership is a coin
  flip), split between ``i`` and ``k`` by their shares of its variance (measuring either
  resolves it), summed over devices.

A batch of ``k`` is spread over the latency range (the ``4 k`` best-scoring candidates cut
into ``k`` equal-count latency bins, the best of each), so one round calibrates the head
along the whole front instead of at one spot.

Resolution-aware fronts: a device that reports coarse latencies (integer ms, fixed steps)
cannot distinguish architectures closer than its step, so predicted latencies are snapped to
that grid before the front is extracted (the more accurate of a tie dominates).
``infer_resolution`` finds the step from measured values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

#: ``genes (n, g) -> latency`` in ms: ``(n,)`` for one device, ``(n, d)`` or
#: ``{device: (n,)}`` for several (in the order the search was given the devices).
MeasureFn = Callable[[np.ndarray], Any]

#: log-space standard deviation assumed when the oracle returns no interval
DEFAULT_LOG_SIGMA = 0.1
#: candidate steps (ms) tried by ``infer_resolution``: 1, 2, 2.5, 5 x 10^k
_STEP_MANTISSAS = (1.0, 2.0, 2.5, 5.0)


def measured_matrix(values: Any, devices: Sequence[str], n: int) -> np.ndarray:
    """The measure callback's answer as a finite, positive ``(n, d)`` float64 matrix."""
    if isinstance(values, Mapping):
        missing = [d for d in devices if d not in values]
        if missing:
            raise ValueError(f"measure returned no latencies for devices {missing}")
        out = np.column_stack([np.asarray(values[d], dtype=np.float64).reshape(-1)
                               for d in devices])
    else:
        out = np.asarray(values, dtype=np.float64)
        if out.ndim == 1 and len(devices) == 1:
            out = out[:, None]
    if out.shape != (n, len(devices)):
        raise ValueError(
            f"measure returned shape {out.shape} for {n} architectures on {len(devices)} "
            "device(s)"
        )
    if not np.all(np.isfinite(out)) or np.any(out <= 0):
        raise ValueError("measure returned non-finite or non-positive latencies")
    return out


def log_sigma(
    latency: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: float = 0.8
) -> np.ndarray:
    """Log-space standard deviation from a central ``level`` interval (default where absent)."""
    z = float(ndtri(0.5 + level / 2.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (np.log(upper) - np.log(lower)) / (2.0 * z)
    ok = np.isfinite(s) & (s >= 0)
    return np.where(ok, s, DEFAULT_LOG_SIGMA) * np.ones_like(latency)


def front_membership(
    accuracy: np.ndarray, latency: np.ndarray, sigma: np.ndarray
) -> np.ndarray:
    """``P(row is on the (accuracy max, latency min) front)`` for one device, ``(n,)``.

    ``latency``: point estimates (measured where known), ``sigma``: their log-space standard
    deviations (0 where measured).
    """
    return _membership(accuracy, latency, sigma)[0]


def _membership(
    accuracy: np.ndarray, latency: np.ndarray, sigma: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p, blocker, share)``: the front-membership probability of each row, the row
    whose latency it must beat (``-1`` for none) and the share of the comparison's variance
    that is the row's own (the rest is the blocker's)."""
    n = len(accuracy)
    if n == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0)
    order = np.argsort(-accuracy, kind="stable")
    a, lat = accuracy[order], latency[order]
    # running minimum latency (and where it is) over rows sorted by decreasing accuracy
    run_min = np.minimum.accumulate(lat)
    is_new = np.r_[True, lat[1:] < run_min[:-1]]
    run_arg = np.maximum.accumulate(np.where(is_new, np.arange(n), 0))
    # rows of equal accuracy do not dominate each other: use the minimum before the group
    group_start = np.r_[True, a[1:] != a[:-1]]
    first = np.maximum.accumulate(np.where(group_start, np.arange(n), 0))
    prev = first - 1
    t = np.where(prev >= 0, run_min[np.maximum(prev, 0)], np.inf)
    k = run_arg[np.maximum(prev, 0)]
    own = sigma[order] ** 2
    other = np.where(prev >= 0, sigma[order][k] ** 2, 0.0)
    s = np.sqrt(own + other)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.log(t) - np.log(lat)
        p_sorted = np.where(s > 0, ndtr(gap / np.where(s > 0, s, 1.0)), (gap > 0) * 1.0)
        share_sorted = np.where(own + other > 0, own / (own + other), 1.0)
    p_sorted = np.where(np.isinf(t), 1.0, p_sorted)
    p, blocker, share = np.empty(n), np.full(n, -1, dtype=np.int64), np.empty(n)
    p[order] = p_sorted
    blocker[order] = np.where(prev >= 0, order[k], -1)
    share[order] = share_sorted
    return p, blocker, share


def acquisition(
    accuracy: np.ndarray,
    latency: np.ndarray,
    sigma: np.ndarray,
    eligible: np.ndarray,
) -> np.ndarray:
    """Score ``(n,)`` of measuring each row; 0 if not ``eligible`` (already measured,
    infeasible even optimistically).

    Each uncertain comparison "row ``i`` vs the fastest more accurate row ``k``" is worth
    ``p_i (1 - p_i)`` (summed over devices); measuring either side resolves it, so the worth
    is split between ``i`` and ``k`` by their shares of the comparison's variance. A front
    member that blocks several uncertain candidates thus collects their worth.
    """
    score = np.zeros(len(accuracy))
    for j in range(latency.shape[1]):
        p, blocker, share = _membership(accuracy, latency[:, j], sigma[:, j])
        worth = p * (1.0 - p)
        score += worth * share
        has = blocker >= 0
        np.add.at(score, blocker[has], (worth * (1.0 - share))[has])
    return np.where(eligible, score, 0.0)


def select_batch(score: np.ndarray, latency: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` rows to measure: the best-scoring, spread over latency bins."""
    cand = np.flatnonzero(score > 0)
    if k <= 0 or cand.size == 0:
        return np.zeros(0, dtype=np.int64)
    if cand.size <= k:
        return cand[np.argsort(-score[cand], kind="stable")]
    pool = cand[np.argsort(-score[cand], kind="stable")[: 4 * k]]
    pool = pool[np.argsort(latency[pool], kind="stable")]
    picks = [b[np.argmax(score[b])] for b in np.array_split(pool, k) if b.size]
    return np.array(picks, dtype=np.int64)


def local_measure(
    space: str,
    num_devices: int = 1,
    *,
    threads: int | None = None,
    device: str = "cpu",
    warmup: int = 10,
    repeats: int = 30,
    progress: bool = False,
) -> MeasureFn:
    """A ``measure`` callback timing architectures on THIS machine with the torch harness
    (``client_sdk.measure``): the median latency in ms of each, the same value for each of
    the ``num_devices`` devices searched (all of them must be this machine)."""
    from client_sdk.measure.harness import Harness, HarnessConfig

    harness = Harness(HarnessConfig(warmup=warmup, repeats=repeats, threads=threads,
                                    device=device))

    def measure(genes: np.ndarray) -> np.ndarray:
        stats = harness.measure_many(space, genes, progress=progress, desc="measuring")
        ms = np.array([s.median_ms for s in stats], dtype=np.float64)
        return np.repeat(ms[:, None], num_devices, axis=1) if num_devices > 1 else ms

    return measure


# -------------------------------------------------------------------- resolution
#: a device's reporting grid: latencies are ``offset + k * step`` ms
Grid = tuple[float, float]
#: ``{"relative": r}``: a device reporting discrete levels off any fixed grid; predictions
#: within a factor ``1 + r`` of each other are ties (a geometric grid of ratio ``1 + r``)
Levels = Mapping[str, float]
DeviceResolution = float | Grid | Levels
#: a grid finer than this share of the typical latency makes no practical distinction
GRID_MIN_RELATIVE = 0.01
Resolution = DeviceResolution | Mapping[str, "DeviceResolution | None"] | str | None


def infer_resolution(
    latency_ms: np.ndarray, min_samples: int = 5, max_divisor: int = 64
) -> Grid | None:
    """``(step, offset)`` of the coarsest grid ``offset + k * step`` all values lie on.

    The step is the smallest gap between distinct values divided by the smallest ``k``
    (up to ``max_divisor``) that puts every value on the grid (to 1e-3 of a step). ``None``
    with fewer than ``min_samples`` values or when no step of at least 1/1000 of the median
    value fits (a device reporting continuous latencies). Integer-ms phones give
    ``(1.0, 0.0)``; a fixed-step accelerator ``(0.24576, 0.20498)``.
    """
    x = np.asarray(latency_ms, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x) & (x > 0)]
    if x.size < min_samples:
        return None
    u = np.unique(np.round(x, 9))  # float noise of equal readings is not a distinction
    if u.size < 2:
        return None
    floor = float(np.median(x)) * 1e-3
    d_min = float(np.min(np.diff(u)))
    rel = u - u[0]
    for k in range(1, max_divisor + 1):
        step = d_min / k
        if step < floor:
            break
        q = rel / step
        if np.all(np.abs(q - np.round(q)) <= 1e-3):
            return step, float(u[0] - np.floor(u[0] / step + 1e-9) * step)
    return None


def infer_levels(latency_ms: np.ndarray, min_distinct: int = 5) -> float | None:
    """Relative level spacing of a device whose readings repeat exactly (discrete levels,
    e.g. a cycle-accurate simulator) but lie on no fixed grid: the median ratio - 1 between
    consecutive distinct readings. ``None`` when no reading repeats (continuous timings
    never repeat exactly) or with fewer than ``min_distinct`` distinct readings."""
    x = np.asarray(latency_ms, dtype=np.float64).reshape(-1)
    x = np.round(x[np.isfinite(x) & (x > 0)], 9)
    u = np.unique(x)
    if u.size == x.size or u.size < min_distinct:
        return None
    return float(np.median(np.diff(np.log(u))))


def infer_device_resolution(latency_ms: np.ndarray) -> DeviceResolution | None:
    """A fixed grid the readings lie on when its step is at least ``GRID_MIN_RELATIVE`` of
    the median reading; otherwise discrete levels when readings repeat; else ``None``
    (continuous timings). A grid is exact evidence; the level spacing of a few samples
    overestimates the device's (sparse samples skip levels), so it is the fallback."""
    x = np.asarray(latency_ms, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x) & (x > 0)]
    grid = infer_resolution(x)
    if grid is not None and grid[0] >= GRID_MIN_RELATIVE * float(np.median(x)):
        return grid
    r = infer_levels(x)
    return grid if r is None else {"relative": r}


def resolution_grid(
    devices: Sequence[str], resolution: Resolution
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-device ``(steps, offsets, relative)`` ``(d,)`` each; 0 where none.
    ``'auto'`` -> zeros (the caller infers)."""
    d = len(devices)
    steps, offsets, relative = np.zeros(d), np.zeros(d), np.zeros(d)
    if resolution is None or isinstance(resolution, str):
        return steps, offsets, relative
    if isinstance(resolution, Mapping) and set(resolution) != {"relative"}:
        unknown = set(resolution) - set(devices)
        if unknown:
            raise ValueError(f"latency_resolution_ms names devices not searched: {sorted(unknown)}")
        items = [resolution.get(dev) for dev in devices]
    else:
        items = [resolution] * d
    for i, item in enumerate(items):
        if item is None:
            continue
        if isinstance(item, Mapping):
            relative[i] = float(item["relative"])
        elif isinstance(item, int | float):
            steps[i] = float(item)
        else:
            steps[i], offsets[i] = float(item[0]), float(item[1])
    arrays = np.concatenate([steps, offsets, relative])
    if not np.all(np.isfinite(arrays)) or np.any(steps < 0) or np.any(relative < 0):
        raise ValueError("latency_resolution_ms: steps must be finite and >= 0")
    return steps, offsets, relative


def snap_latency(
    latency: np.ndarray, steps: np.ndarray, offsets: np.ndarray,
    relative: np.ndarray | None = None,
) -> np.ndarray:
    """``latency (n, d)`` rounded to each device's grid (fixed step, or geometric with
    ratio ``1 + relative``); unchanged where a device has neither."""
    out = latency
    if np.any(steps > 0):
        safe = np.where(steps > 0, steps, 1.0)
        k = np.maximum(np.round((latency - offsets) / safe), 0.0)
        out = np.where(steps > 0, offsets + k * safe, out)
    if relative is not None and np.any(relative > 0):
        r = np.log1p(np.where(relative > 0, relative, 1.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            geo = np.exp(np.round(np.log(latency) / r) * r)
        out = np.where(relative > 0, geo, out)
    return out
