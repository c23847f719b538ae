"""Search results: the Pareto front (JSON / CSV / PNG / text table) and its helpers."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from client_sdk.spaces import SearchSpace, get_space


def pareto_mask(F: np.ndarray, tie_tolerance: float = 0.0) -> np.ndarray:
    """Non-dominated rows of ``F`` (all columns minimised). Identical rows are all kept.

    ``tie_tolerance`` (relative, on columns 1..: latencies) treats near-equal latencies as
    ties: ``b`` dominates ``a`` when ``F_b[0] <= F_a[0]``, ``F_b[k] <= F_a[k] (1 + tol)`` for
    the other columns and ``b`` is strictly better somewhere. So of several architectures
    with practically the same latency only the most accurate stays on the front.
    """
    F = np.asarray(F, dtype=np.float64)
    n = F.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    if F.shape[1] == 1:
        return F[:, 0] == F[:, 0].min()
    if F.shape[1] == 2:
        return _pareto_mask_2d(F[:, 0], F[:, 1], tie_tolerance)
    if tie_tolerance == 0.0:
        from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

        mask = np.zeros(n, dtype=bool)
        mask[NonDominatedSorting().do(F, only_non_dominated_front=True)] = True
        return mask
    return ~dominated_by(F, F, tie_tolerance)


def _pareto_mask_2d(f0: np.ndarray, f1: np.ndarray, tol: float = 0.0) -> np.ndarray:
    order = np.lexsort((f1, f0))
    a, b = f0[order], f1[order]
    new_group = np.r_[True, a[1:] != a[:-1]]
    gid = np.cumsum(new_group) - 1
    gmin = b[new_group]  # each f0 group's smallest f1 (sorted first)
    prev_min = np.r_[np.inf, np.minimum.accumulate(gmin)[:-1]]  # over strictly smaller f0
    mask = np.zeros(len(f0), dtype=bool)
    mask[order] = (b == gmin[gid]) & (prev_min[gid] > b + tol * np.abs(b))
    return mask


def dominated_by(points: np.ndarray, front: np.ndarray, tie_tolerance: float = 0.0) -> np.ndarray:
    """For each row of ``points``: is it dominated by some row of ``front``?"""
    out = np.zeros(len(points), dtype=bool)
    if len(front) == 0 or len(points) == 0:
        return out
    slack = np.abs(points) * tie_tolerance
    slack[:, 0] = 0.0
    for start in range(0, len(points), 256):  # bounded memory
        p, s = points[start:start + 256, None, :], slack[start:start + 256, None, :]
        le = np.all(front[None, :, :] <= p + s, axis=2)
        lt = np.any(front[None, :, :] < p, axis=2)
        out[start:start + 256] = np.any(le & lt, axis=1)
    return out


def table_device(space: SearchSpace, device: str) -> str | None:
    """The table column of ``device`` ('pixel3' or 'nasbench201/pixel3'), else None."""
    prefix, _, name = device.rpartition("/")
    if prefix and prefix != space.name:
        return None
    return name if name in space.table.devices else None


def true_front_rows(space: SearchSpace, device: str, metric: str) -> np.ndarray | None:
    """Table rows of the exhaustive true (accuracy, latency) front, or None if unknown."""
    dev = table_device(space, device)
    if dev is None or metric not in space.table.accuracy:
        return None
    F = np.column_stack([-space.table.accuracy[metric], space.table.device_column(dev)])
    return np.flatnonzero(pareto_mask(F))


@dataclass
class ParetoFront:
    """Non-dominated architectures (predicted latency), sorted by the first device's latency.

    ``near_front`` holds off-front architectures "worth measuring": ones whose optimistic
    (lower-bound) latency would put them on the front. Empty without uncertainty.
    """

    space: str
    devices: list[str]
    genes: np.ndarray
    archs: list[str]
    accuracy: np.ndarray
    latency_ms: dict[str, np.ndarray]
    objective: str = "accuracy"
    lower_ms: dict[str, np.ndarray] | None = None
    upper_ms: dict[str, np.ndarray] | None = None
    near_front: ParetoFront | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.archs)

    @classmethod
    def build(
        cls,
        space: SearchSpace,
        devices: list[str],
        genes: np.ndarray,
        accuracy: np.ndarray,
        latency: np.ndarray,
        objective: str,
        lower: np.ndarray | None = None,
        upper: np.ndarray | None = None,
    ) -> ParetoFront:
        """From arrays (``latency``/``lower``/``upper`` are ``(n, d)``), sorted by latency."""
        order = np.lexsort((-accuracy, latency[:, 0])) if len(genes) else np.arange(0)

        def per_device(m: np.ndarray | None) -> dict[str, np.ndarray] | None:
            if m is None or not np.any(np.isfinite(m)):
                return None
            return {d: m[order, j].copy() for j, d in enumerate(devices)}

        return cls(
            space=space.name,
            devices=list(devices),
            genes=genes[order].copy(),
            archs=space.format_many(genes[order]) if len(order) else [],
            accuracy=accuracy[order].astype(np.float64),
            latency_ms=per_device(latency) or {d: np.empty(0) for d in devices},
            objective=objective,
            lower_ms=per_device(lower),
            upper_ms=per_device(upper),
        )

    # ---------------------------------------------------------------- export
    def records(self, include_near_front: bool = False) -> list[dict[str, Any]]:
        """``[{"arch", "accuracy", "latency_ms": {device: ms}}]`` (+ near-front, flagged)."""
        out: list[dict[str, Any]] = [
            {
                "arch": arch,
                "accuracy": float(self.accuracy[i]),
                "latency_ms": {d: float(self.latency_ms[d][i]) for d in self.devices},
            }
            for i, arch in enumerate(self.archs)
        ]
        if include_near_front and self.near_front is not None:
            for rec in self.near_front.records():
                out.append({**rec, "worth_measuring": True})
        return out

    def to_json(self, path: str | Path, include_near_front: bool = False) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.records(include_near_front), indent=2) + "\n")
        return path

    def to_csv(self, path: str | Path, include_near_front: bool = False) -> Path:
        """Columns: ``arch, accuracy, latency_ms[<device>]..., worth_measuring``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            lat_cols = [f"latency_ms[{d}]" for d in self.devices]
            writer.writerow(["arch", "accuracy", *lat_cols, "worth_measuring"])
            for rec in self.records(include_near_front):
                lats = [f"{rec['latency_ms'][d]:.6g}" for d in self.devices]
                flag = int(rec.get("worth_measuring", False))
                writer.writerow([rec["arch"], f"{rec['accuracy']:.6g}", *lats, flag])
        return path

    def table(self, max_rows: int | None = None) -> str:
        """Human-readable text table of the front (and of the near-front candidates)."""
        lines = [
            f"Pareto front: {len(self)} architectures of '{self.space}' "
            f"({self.objective} vs latency on {', '.join(self.devices)})"
        ]
        lines += _text_rows(self, max_rows)
        near = self.near_front
        if near is not None and len(near):
            lines.append(f"Worth measuring: {len(near)} near-front candidates (lower bound)")
            lines += _text_rows(near, max_rows)
        return "\n".join(lines)

    def plot(self, path: str | Path, true_front: bool = True, **options: Any) -> Path:
        """Pareto PNG, one panel per device, zoomed on the front's accuracy range; marks
        the table's true front when known, the knee, the budget and at most ``top_worth``
        worth-measuring candidates. ``options``: the keywords of
        :func:`client_sdk.search.plots.plot_front` (``log_latency``, ``max_latency_ms``,
        ``top_worth``, ``knee``, ``title``)."""
        from client_sdk.search.plots import plot_front

        return plot_front(self, path, true_front=true_front, **options)

    def true_front(self, device: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(accuracy, latency_ms)`` of the exhaustive true front on a table device."""
        space = get_space(self.space)
        rows = true_front_rows(space, device, self.objective)
        if rows is None:
            return None
        dev = table_device(space, device)
        return space.table.accuracy[self.objective][rows], space.table.device_column(dev)[rows]


def _text_rows(front: ParetoFront, max_rows: int | None) -> list[str]:
    head = f"{'#':>4}  {front.objective[:12]:>12}  " + "  ".join(
        f"{d[-14:]:>14}" for d in front.devices
    )
    lines = [head + "  arch"]
    n = len(front) if max_rows is None else min(len(front), max_rows)
    for i in range(n):
        lats = "  ".join(f"{front.latency_ms[d][i]:>14.4g}" for d in front.devices)
        lines.append(f"{i:>4}  {front.accuracy[i]:>12.4f}  {lats}  {front.archs[i]}")
    if n < len(front):
        lines.append(f"  ... {len(front) - n} more")
    return lines


@dataclass
class SearchResult:
    """What ``search()`` returns."""

    front: ParetoFront
    num_evaluations: int
    num_rpcs: int
    wall_s: float
    generations: int
    stopped_by: str
    history: list[dict[str, Any]]
    #: every evaluated architecture: genes (m, g), accuracy (m,), latency_ms {device: (m,)}
    archive: dict[str, Any]
    resumed_from_generation: int | None = None

    def summary(self) -> str:
        return (
            f"{len(self.front)} on the front from {self.num_evaluations} evaluations, "
            f"{self.num_rpcs} RPCs, {self.generations} generations, {self.wall_s:.2f} s "
            f"(stopped by {self.stopped_by})"
        )
