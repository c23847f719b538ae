"""The pymoo ``Problem``: one ``client.rank`` RPC per generation, behind a cache.

``OracleProblem._evaluate`` receives a whole generation (vectorised, not elementwise),
canonicalises the genes, looks them up in an ``EvaluationCache`` and sends only the rows
never ranked before in ONE ``client.rank`` call covering every device asked. When every
row is cached no RPC is made at all. Objectives are ``[-accuracy, latency objective(s)]``
(see ``objectives``) and the inequality constraints ``latency - max_latency_ms <= 0``, one
per device that has a budget.

The client is duck-typed: ``client.rank(space, archs, devices, max_latency_ms=None,
return_uncertainty=False)`` returning an object with ``latency_ms`` (and, when asked,
``lower_ms``, ``upper_ms``, ``prob_within_budget``) dicts of ``(n,)`` arrays keyed by device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pymoo.core.problem import Problem

from client_sdk.search.objectives import (
    AccuracyFn,
    evaluate_accuracy,
    latency_budgets,
    objective_matrix,
)
from client_sdk.search.operators import gene_keys, to_genes
from client_sdk.spaces import GENE_DTYPE, SearchSpace

_CACHE_FIELDS = ("latency_ms", "lower_ms", "upper_ms", "prob_within_budget", "measured_ms")
#: what the latency objective(s) optimise: the prediction, the interval's upper bound, or
#: the probability of meeting the budget (maximised; needs ``max_latency_ms``)
LATENCY_OBJECTIVES = ("mean", "upper", "prob")


class EvaluationCache:
    """Every architecture ranked so far (canonical genes, unique), in evaluation order.

    ``measured_ms`` holds latencies measured on the device during a closed-loop search (NaN
    where not measured); ``latency_ms``/``lower_ms``/``upper_ms`` of a measured row are
    pinned to its measurement.
    """

    def __init__(self, num_genes: int, num_devices: int) -> None:
        self.genes = np.empty((0, num_genes), dtype=GENE_DTYPE)
        self.accuracy = np.empty(0)
        self.generation = np.empty(0, dtype=np.int64)
        self.latency_ms = np.empty((0, num_devices))
        self.lower_ms = np.empty((0, num_devices))
        self.upper_ms = np.empty((0, num_devices))
        self.prob_within_budget = np.empty((0, num_devices))
        self.measured_ms = np.empty((0, num_devices))
        self._index: dict[bytes, int] = {}

    def __len__(self) -> int:
        return int(self.genes.shape[0])

    def rows(self, genes: np.ndarray) -> np.ndarray:
        """Cache row of each canonical gene vector, ``-1`` where absent."""
        return np.array([self._index.get(k, -1) for k in gene_keys(genes)], dtype=np.int64)

    def contains(self, genes: np.ndarray) -> np.ndarray:
        return self.rows(genes) >= 0

    def add(
        self,
        genes: np.ndarray,
        accuracy: np.ndarray,
        arrays: Mapping[str, np.ndarray],
        generation: int,
    ) -> None:
        """Append new rows (callers pass only genes not cached yet)."""
        start = len(self)
        for i, key in enumerate(gene_keys(genes)):
            self._index[key] = start + i
        self.genes = np.concatenate([self.genes, genes.astype(GENE_DTYPE)])
        self.accuracy = np.concatenate([self.accuracy, accuracy])
        gen = np.full(len(genes), generation, dtype=np.int64)
        self.generation = np.concatenate([self.generation, gen])
        for name in _CACHE_FIELDS:
            value = arrays.get(name)
            if value is None:  # e.g. measured_ms of fresh predictions, or old checkpoints
                value = np.full((len(genes), self.latency_ms.shape[1]), np.nan)
            setattr(self, name, np.concatenate([getattr(self, name), value]))

    @property
    def measured(self) -> np.ndarray:
        """``(n,)`` rows measured on every device."""
        return np.all(np.isfinite(self.measured_ms), axis=1)

    def pin_measured(self, budgets: np.ndarray | None = None) -> None:
        """Replace predictions by measurements where there are any (bounds collapse)."""
        m = np.isfinite(self.measured_ms)
        if not m.any():
            return
        for name in ("latency_ms", "lower_ms", "upper_ms"):
            setattr(self, name, np.where(m, self.measured_ms, getattr(self, name)))
        if budgets is not None:
            within = (self.measured_ms <= budgets[None, :]).astype(np.float64)
            self.prob_within_budget = np.where(m, within, self.prob_within_budget)

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"genes": self.genes, "accuracy": self.accuracy, "generation": self.generation}
        out.update({name: getattr(self, name) for name in _CACHE_FIELDS})
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> EvaluationCache:
        genes = np.asarray(arrays["genes"], dtype=GENE_DTYPE)
        cache = cls(genes.shape[1], np.asarray(arrays["latency_ms"]).shape[1])
        fields = {name: np.asarray(arrays[name], dtype=np.float64)
                  for name in _CACHE_FIELDS if name in arrays}
        cache.add(genes, np.asarray(arrays["accuracy"], dtype=np.float64), fields, 0)
        cache.generation = np.asarray(arrays["generation"], dtype=np.int64)
        return cache


def _device_matrix(result: Any, attr: str, devices: Sequence[str], n: int) -> np.ndarray:
    """``(n, d)`` float64 from ``result.<attr>[device]``; NaN where the result has none."""
    values = getattr(result, attr, None)
    out = np.full((n, len(devices)), np.nan)
    if not values:
        return out
    for j, dev in enumerate(devices):
        if dev in values and values[dev] is not None:
            col = np.asarray(values[dev], dtype=np.float64).reshape(-1)
            if col.shape[0] != n:
                raise ValueError(f"rank returned {col.shape[0]} values of {attr}[{dev}] for {n}")
            out[:, j] = col
    return out


class OracleProblem(Problem):
    """Vectorised NAS problem: maximise accuracy, minimise predicted latency."""

    def __init__(
        self,
        client: Any,
        space: SearchSpace,
        devices: Sequence[str],
        accuracy_fn: AccuracyFn,
        *,
        latency_mode: str = "per_device",
        max_latency_ms: float | Mapping[str, float] | None = None,
        uncertainty: bool = True,
        cache: EvaluationCache | None = None,
        medians: np.ndarray | None = None,
        latency_objective: str = "mean",
        interval_level: float | None = None,
    ) -> None:
        if latency_objective not in LATENCY_OBJECTIVES:
            raise ValueError(
                f"latency_objective must be one of {LATENCY_OBJECTIVES}, got '{latency_objective}'"
            )
        if latency_objective != "mean" and not uncertainty:
            raise ValueError(f"latency_objective='{latency_objective}' needs uncertainty=True")
        if interval_level is not None and not 0.0 < interval_level < 1.0:
            raise ValueError("interval_level must be in (0, 1)")
        if not devices:
            raise ValueError("at least one device is needed")
        if len(set(devices)) != len(devices):
            raise ValueError(f"devices must be distinct, got {list(devices)}")
        self.client = client
        self.space = space
        self.devices = list(devices)
        self.accuracy_fn = accuracy_fn
        self.latency_mode = latency_mode
        self.budgets = latency_budgets(self.devices, max_latency_ms)
        self.latency_objective = latency_objective
        self.interval_level = interval_level
        if latency_objective == "prob" and not np.any(np.isfinite(self.budgets)):
            raise ValueError("latency_objective='prob' needs max_latency_ms")
        # with 'prob' the budget is the objective itself, not a constraint
        self.constrained = (
            np.zeros(0, dtype=np.int64)
            if latency_objective == "prob"
            else np.flatnonzero(np.isfinite(self.budgets))
        )
        self._rank_budget = (
            float(max_latency_ms) if isinstance(max_latency_ms, int | float) else None
        )
        self.uncertainty = uncertainty
        self.cache = cache if cache is not None else EvaluationCache(space.num_genes, len(devices))
        self.medians = None if medians is None else np.asarray(medians, dtype=np.float64)
        self.num_rpcs = 0
        self.generation = 0
        n_obj = 1 + (len(self.devices) if latency_mode == "per_device" else 1)
        super().__init__(
            n_var=space.num_genes,
            n_obj=n_obj,
            n_ieq_constr=len(self.constrained),
            xl=np.zeros(space.num_genes),
            xu=(space.cardinalities - 1).astype(np.float64),
            vtype=int,
        )

    # ---------------------------------------------------------------- ranking
    def rank(self, genes: np.ndarray) -> np.ndarray:
        """Cache rows of canonical ``genes``; ranks the uncached ones in at most ONE RPC."""
        rows = self.cache.rows(genes)
        missing = np.flatnonzero(rows < 0)
        if missing.size:
            keys = gene_keys(genes[missing])
            _, first = np.unique(np.array(keys, dtype=object), return_index=True)
            new = genes[missing[np.sort(first)]]
            self._rank_new(new)
            rows = self.cache.rows(genes)
        return rows

    def _predict(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        """One ``client.rank`` RPC: ``{field: (n, d)}`` for the prediction fields."""
        kwargs: dict[str, Any] = {}
        if self.interval_level is not None:
            kwargs["interval_level"] = self.interval_level
        result = self.client.rank(
            self.space.name,
            genes,
            self.devices,
            max_latency_ms=self._rank_budget,
            return_uncertainty=self.uncertainty,
            **kwargs,
        )
        self.num_rpcs += 1
        n = genes.shape[0]
        arrays = {name: _device_matrix(result, name, self.devices, n)
                  for name in _CACHE_FIELDS if name != "measured_ms"}
        if np.any(~np.isfinite(arrays["latency_ms"])):
            missing = [d for d in self.devices if d not in (result.latency_ms or {})]
            raise ValueError(f"rank returned no/non-finite latency (missing devices: {missing})")
        level = float(getattr(result, "interval_level", None) or self.interval_level or 0.8)
        arrays["prob_within_budget"] = self._prob(arrays, level)
        return arrays

    def _prob(self, arrays: Mapping[str, np.ndarray], level: float) -> np.ndarray:
        """P(latency <= budget): the oracle's where it gave one, else from the interval
        (log-normal with the interval's spread)."""
        prob = arrays["prob_within_budget"]
        if not np.any(np.isfinite(self.budgets)):
            return prob
        from scipy.special import ndtr

        from client_sdk.search.loop import log_sigma

        lat = arrays["latency_ms"]
        s = log_sigma(lat, arrays["lower_ms"], arrays["upper_ms"], level)
        with np.errstate(divide="ignore", invalid="ignore"):
            own = ndtr((np.log(self.budgets)[None, :] - np.log(lat)) / s)
        own = np.where(np.isfinite(self.budgets)[None, :], own, 1.0)
        return np.where(np.isfinite(prob), prob, own)

    def _rank_new(self, genes: np.ndarray) -> None:
        arrays = self._predict(genes)
        accuracy = evaluate_accuracy(self.accuracy_fn, genes)
        if self.medians is None:
            self.medians = np.median(arrays["latency_ms"], axis=0)
        self.cache.add(genes, accuracy, arrays, self.generation)

    def rerank(self) -> None:
        """Re-predict every cached architecture in ONE RPC (after the device head was refit);
        measured rows keep their measurements."""
        if not len(self.cache):
            return
        arrays = self._predict(self.cache.genes)
        for name, value in arrays.items():
            setattr(self.cache, name, value)
        self.cache.pin_measured(self.budgets)

    def record_measurements(self, rows: np.ndarray, latency_ms: np.ndarray) -> None:
        """Store measured latencies ``(len(rows), d)`` of cache rows and pin them."""
        self.cache.measured_ms[rows] = latency_ms
        self.cache.pin_measured(self.budgets)

    # ------------------------------------------------------------- objectives
    def objective_latency(self, rows: np.ndarray) -> np.ndarray:
        """The latency matrix the objectives and constraints use (``latency_objective``):
        the prediction, the interval's upper bound, or ``1 - P(latency <= budget)``."""
        c = self.cache
        if self.latency_objective == "upper":
            up = c.upper_ms[rows]
            return np.where(np.isfinite(up), up, c.latency_ms[rows])
        if self.latency_objective == "prob":
            return 1.0 - np.nan_to_num(c.prob_within_budget[rows], nan=1.0)
        return c.latency_ms[rows]

    def objectives(self, rows: np.ndarray, latency: np.ndarray | None = None) -> np.ndarray:
        """pymoo objectives of cache rows (``latency`` overrides ``objective_latency``)."""
        lat = self.objective_latency(rows) if latency is None else latency
        medians = self.medians
        if self.latency_objective == "prob" and medians is not None:
            medians = np.ones_like(medians)  # 1 - P is already scale-free
        return objective_matrix(self.cache.accuracy[rows], lat, self.latency_mode, medians)

    def constraints(self, rows: np.ndarray, latency: np.ndarray | None = None) -> np.ndarray:
        """``G = latency - budget`` for the constrained devices, ``(n, #constrained)``."""
        lat = self.objective_latency(rows) if latency is None else latency
        return lat[:, self.constrained] - self.budgets[None, self.constrained]

    def feasible(self, rows: np.ndarray, latency: np.ndarray | None = None) -> np.ndarray:
        return np.all(self.constraints(rows, latency) <= 0.0, axis=1)

    def _evaluate(self, X, out, *args, **kwargs):
        rows = self.rank(to_genes(self.space, X))
        out["F"] = self.objectives(rows)
        if self.n_ieq_constr:
            out["G"] = self.constraints(rows)
