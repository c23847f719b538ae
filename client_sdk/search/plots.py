"""Pictures: the Pareto front zoomed on its informative region, and device-similarity maps.

``plot_front``: one panel per device (several devices in one figure). The accuracy axis
covers the front's accuracy range with a margin; degenerate outliers far below the rest
(e.g. a 10 % architecture at ~0 ms that is on the front only because it is the fastest)
are not allowed to stretch the axis: they are drawn as triangles on the bottom edge and
counted in the legend. Optional log latency axis; the latency budget (a vertical line),
the knee of the front (largest distance to the chord between its extremes, on normalised
axes) and the exhaustive true front of a table device are marked; of the "worth measuring"
candidates only the ``top_worth`` closest to the front are drawn.

``plot_similarity``: a clustered heatmap (average-linkage on ``1 - spearman``) of the
pairwise monotonicity between devices (``oracle compare --all --plot``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from client_sdk.search.results import ParetoFront

#: a low-accuracy tail is cut from the axis when it is separated from the rest by a gap of
#: more than this fraction of the whole range and holds at most OUTLIER_SHARE of the points
OUTLIER_GAP = 0.35
OUTLIER_SHARE = 0.2


def accuracy_limits(acc: np.ndarray, margin: float = 0.08) -> tuple[float, float, int]:
    """``(low, high, n_below)``: the y-range of a front, outlier tail cut."""
    a = np.sort(np.asarray(acc, dtype=np.float64)[np.isfinite(acc)])
    if a.size == 0:
        return 0.0, 1.0, 0
    lo_idx = 0
    span = a[-1] - a[0]
    if a.size >= 3 and span > 0:
        gaps = np.diff(a)
        for i in np.argsort(gaps)[::-1]:  # largest gaps first
            if gaps[i] <= OUTLIER_GAP * span:
                break
            if i + 1 <= OUTLIER_SHARE * a.size:
                lo_idx = max(lo_idx, int(i) + 1)
                break
    lo, hi = a[lo_idx], a[-1]
    pad = max((hi - lo) * margin, 1e-3 * max(abs(hi), 1.0))
    return float(lo - pad), float(hi + pad), lo_idx


def knee_index(latency: np.ndarray, accuracy: np.ndarray) -> int | None:
    """Front point farthest above the chord between the fastest and the most accurate."""
    lat, acc = np.asarray(latency, float), np.asarray(accuracy, float)
    if lat.size < 3:
        return None
    x = (lat - lat.min()) / max(np.ptp(lat), 1e-12)
    y = (acc - acc.min()) / max(np.ptp(acc), 1e-12)
    a, b = int(np.argmin(x)), int(np.argmax(y))
    dx, dy = x[b] - x[a], y[b] - y[a]
    norm = np.hypot(dx, dy)
    if norm == 0:
        return None
    dist = (dx * (y - y[a]) - dy * (x - x[a])) / norm  # > 0: above the chord
    k = int(np.argmax(dist))
    return k if dist[k] > 0 else None


def closest_to_front(
    front_lat: np.ndarray, front_acc: np.ndarray, lat: np.ndarray, acc: np.ndarray, n: int
) -> np.ndarray:
    """Indices of the ``n`` candidates whose latency is closest (ratio) to the front's best
    latency at their accuracy level (vectorised step-function lookup)."""
    if lat.size == 0 or n <= 0:
        return np.zeros(0, dtype=np.int64)
    if front_lat.size == 0:
        return np.argsort(lat, kind="stable")[:n]
    order = np.argsort(-front_acc, kind="stable")
    acc_desc, best_lat = -front_acc[order], np.minimum.accumulate(front_lat[order])
    pos = np.searchsorted(acc_desc, -acc, side="right") - 1  # front points with acc >= a
    ref = np.where(pos >= 0, best_lat[np.maximum(pos, 0)], front_lat.min())
    score = lat / np.maximum(ref, 1e-12)
    return np.argsort(score, kind="stable")[:n]


def plot_front(
    front: ParetoFront,
    path: str | Path,
    *,
    true_front: bool = True,
    log_latency: bool = False,
    max_latency_ms: float | Mapping[str, float] | None = None,
    top_worth: int = 20,
    knee: bool = True,
    title: str | None = None,
) -> Path:
    """The Pareto PNG (one panel per device of the front)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    devices = list(front.devices)
    n = max(len(devices), 1)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.4 * cols, 4.4 * rows), squeeze=False)
    from client_sdk.search.results import pareto_mask

    acc = np.asarray(front.accuracy, dtype=np.float64)
    for ax, dev in zip(axes.ravel(), devices, strict=False):
        lat = np.asarray(front.latency_ms[dev], dtype=np.float64)
        # with several devices the front is multi-objective: a panel's own 2-D front
        own = pareto_mask(np.column_stack([-acc, lat])) if len(devices) > 1 else (
            np.ones(acc.shape, dtype=bool))
        lo, hi, _ = accuracy_limits(acc[own])
        vis = own & (acc >= lo) & (acc <= hi)
        xs: list[np.ndarray] = [lat[(acc >= lo) & (acc <= hi)]]
        truth = front.true_front(dev) if true_front else None
        if truth is not None:
            t_acc, t_lat = truth
            keep = (t_acc >= lo) & (t_acc <= hi)
            o = np.argsort(t_lat[keep])
            ax.step(t_lat[keep][o], t_acc[keep][o], where="post", color="0.65", lw=1, zorder=1)
            ax.scatter(t_lat[keep], t_acc[keep], marker="x", color="0.4", s=22, zorder=2,
                       label=f"true front (table, {int(keep.sum())} in view)")
            xs.append(t_lat[keep])
        near = front.near_front
        if near is not None and len(near):
            n_lat = np.asarray(near.latency_ms[dev], dtype=np.float64)
            n_acc = np.asarray(near.accuracy, dtype=np.float64)
            inside = np.flatnonzero((n_acc >= lo) & (n_acc <= hi))
            pick = inside[
                closest_to_front(lat[own], acc[own], n_lat[inside], n_acc[inside], top_worth)
            ]
            ax.scatter(n_lat[pick], n_acc[pick], facecolors="none", edgecolors="tab:orange",
                       s=30, zorder=3,
                       label=f"worth measuring (top {len(pick)} of {len(near)})")
        if vis.any():
            o = np.lexsort((-acc[vis], lat[vis]))
            ax.step(lat[vis][o], np.maximum.accumulate(acc[vis][o]), where="post",
                    color="tab:blue", lw=0.8, alpha=0.5, zorder=3)
        ax.scatter(lat[vis], acc[vis], color="tab:blue", s=18, zorder=4,
                   label=f"returned front ({len(front)})" if own.all() else
                   f"returned front ({int(own.sum())} on this device's own front)")
        other = ~own & (acc >= lo) & (acc <= hi)
        if other.any():
            ax.scatter(lat[other], acc[other], color="tab:blue", alpha=0.25, s=10, zorder=3,
                       label=f"front on the other devices ({int((~own).sum())})")
        below = own & (acc < lo)
        if below.any():
            ax.scatter(lat[below], np.full(int(below.sum()), lo), marker="v", color="tab:blue",
                       s=30, zorder=4, clip_on=False,
                       label=f"{int(below.sum())} below (acc {acc[below].max():.3g} or less)")
        k = knee_index(lat[vis], acc[vis]) if knee else None
        if k is not None:
            kl, ka = lat[vis][k], acc[vis][k]
            ax.scatter([kl], [ka], marker="*", s=170, color="tab:red", zorder=5,
                       label=f"knee ({ka:.4g}, {kl:.3g} ms)")
        budget = _budget_for(max_latency_ms, dev)
        if budget is not None:
            ax.axvline(budget, color="tab:red", ls="--", lw=1, label=f"budget {budget:g} ms")
            in_budget = np.flatnonzero(lat <= budget)
            if in_budget.size:
                b = in_budget[np.argmax(acc[in_budget])]
                ax.scatter([lat[b]], [acc[b]], marker="D", s=60, facecolors="none",
                           edgecolors="tab:red", lw=1.5, zorder=6,
                           label=f"best within budget ({acc[b]:.4g})")
            xs.append(np.array([budget]))
        _latency_axis(ax, np.concatenate(xs) if xs else np.zeros(0), log_latency)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"predicted latency on {dev} (ms)" + (", log" if log_latency else ""))
        ax.set_ylabel(front.objective)
        ax.grid(alpha=0.3, which="both" if log_latency else "major")
        ax.legend(fontsize=7, loc="lower right")
        ax.set_title(dev, fontsize=9)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.suptitle(title or f"Pareto front, {front.space} ({front.objective} vs latency)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _budget_for(budget: float | Mapping[str, float] | None, device: str) -> float | None:
    if budget is None:
        return None
    if isinstance(budget, Mapping):
        value = budget.get(device)
        return None if value is None else float(value)
    return float(budget)


def _latency_axis(ax, x: np.ndarray, log: bool) -> None:
    x = x[np.isfinite(x) & ((x > 0) if log else True)]
    if log:
        ax.set_xscale("log")
    if x.size == 0:
        return
    lo, hi = float(x.min()), float(x.max())
    if log:
        ax.set_xlim(lo / 1.15, hi * 1.15)
    else:
        pad = max((hi - lo) * 0.05, 1e-6)
        ax.set_xlim(max(lo - pad, 0.0) if lo >= 0 else lo - pad, hi + pad)


# ------------------------------------------------------------------- device similarity
def cluster_order(similarity: np.ndarray) -> np.ndarray:
    """Leaf order of an average-linkage clustering on ``1 - similarity``."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    s = np.asarray(similarity, dtype=np.float64)
    if s.shape[0] < 3:
        return np.arange(s.shape[0])
    dist = 1.0 - np.nan_to_num(s, nan=0.0)
    dist = np.clip((dist + dist.T) / 2, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    return leaves_list(linkage(squareform(dist, checks=False), method="average"))


def plot_similarity(
    names: Sequence[str],
    similarity: np.ndarray,
    path: str | Path,
    *,
    title: str = "Device similarity (Spearman of predicted latencies)",
    label: str = "Spearman rank correlation",
) -> tuple[Path, list[str]]:
    """Clustered heatmap; returns the path and the device order drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    s = np.asarray(similarity, dtype=np.float64)
    order = cluster_order(s)
    s = s[np.ix_(order, order)]
    labels = [names[i] for i in order]
    n = len(labels)
    size = max(4.0, 0.36 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    off = s[np.isfinite(s) & ~np.eye(n, dtype=bool)]
    vmin = float(np.floor(off.min() * 10) / 10) if off.size else 0.0  # contrast where it is
    im = ax.imshow(s, cmap="viridis", vmin=vmin, vmax=1.0)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    if n <= 16:
        for i in range(n):
            for j in range(n):
                if np.isfinite(s[i, j]):
                    ax.text(j, i, f"{s[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if s[i, j] < (vmin + 1) / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path, labels
