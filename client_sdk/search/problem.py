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
from oracle_server.spaces import GENE_DTYPE, SearchSpace

_CACHE_FIELDS = ("latency_ms", "lower_ms", "upper_ms", "prob_within_budget")


class EvaluationCache:
    """Every architecture ranked so far (canonical genes, unique), in evaluation order."""

    def __init__(self, num_genes: int, num_devices: int) -> None:
        self.genes = np.empty((0, num_genes), dtype=GENE_DTYPE)
        self.accuracy = np.empty(0)
        self.generation = np.empty(0, dtype=np.int64)
        self.latency_ms = np.empty((0, num_devices))
        self.lower_ms = np.empty((0, num_devices))
        self.upper_ms = np.empty((0, num_devices))
        self.prob_within_budget = np.empty((0, num_devices))
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
            setattr(self, name, np.concatenate([getattr(self, name), arrays[name]]))

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"genes": self.genes, "accuracy": self.accuracy, "generation": self.generation}
        out.update({name: getattr(self, name) for name in _CACHE_FIELDS})
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> EvaluationCache:
        genes = np.asarray(arrays["genes"], dtype=GENE_DTYPE)
        cache = cls(genes.shape[1], np.asarray(arrays["latency_ms"]).shape[1])
        fields = {name: np.asarray(arrays[name], dtype=np.float64) for name in _CACHE_FIELDS}
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
    ) -> None:
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
        self.constrained = np.flatnonzero(np.isfinite(self.budgets))
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

    def _rank_new(self, genes: np.ndarray) -> None:
        result = self.client.rank(
            self.space.name,
            genes,
            self.devices,
            max_latency_ms=self._rank_budget,
            return_uncertainty=self.uncertainty,
        )
        self.num_rpcs += 1
        n = genes.shape[0]
        arrays = {name: _device_matrix(result, name, self.devices, n) for name in _CACHE_FIELDS}
        if np.any(~np.isfinite(arrays["latency_ms"])):
            missing = [d for d in self.devices if d not in (result.latency_ms or {})]
            raise ValueError(f"rank returned no/non-finite latency (missing devices: {missing})")
        accuracy = evaluate_accuracy(self.accuracy_fn, genes)
        if self.medians is None:
            self.medians = np.median(arrays["latency_ms"], axis=0)
        self.cache.add(genes, accuracy, arrays, self.generation)

    # ------------------------------------------------------------- objectives
    def objectives(self, rows: np.ndarray, latency: np.ndarray | None = None) -> np.ndarray:
        """pymoo objectives of cache rows (``latency`` overrides the predicted one)."""
        lat = self.cache.latency_ms[rows] if latency is None else latency
        return objective_matrix(self.cache.accuracy[rows], lat, self.latency_mode, self.medians)

    def constraints(self, rows: np.ndarray, latency: np.ndarray | None = None) -> np.ndarray:
        """``G = latency - budget`` for the constrained devices, ``(n, #constrained)``."""
        lat = self.cache.latency_ms[rows] if latency is None else latency
        return lat[:, self.constrained] - self.budgets[None, self.constrained]

    def feasible(self, rows: np.ndarray, latency: np.ndarray | None = None) -> np.ndarray:
        return np.all(self.constraints(rows, latency) <= 0.0, axis=1)

    def _evaluate(self, X, out, *args, **kwargs):
        rows = self.rank(to_genes(self.space, X))
        out["F"] = self.objectives(rows)
        if self.n_ieq_constr:
            out["G"] = self.constraints(rows)
