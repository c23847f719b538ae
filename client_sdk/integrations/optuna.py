"""Optuna multi-objective NAS through the latency oracle: batched ask / ONE Rank RPC / tell.

>>> from client_sdk.integrations.optuna import OracleOptuna
>>> nas = OracleOptuna(client, "nasbench201", ["pixel3"], objective="cifar10",
...                    max_latency_ms=20.0, sampler="nsga2", seed=0)
>>> nas.optimize(n_evaluations=1000)            # asks a batch, ranks it in one RPC, tells
>>> nas.front().table(); nas.study.best_trials  # the oracle front / Optuna's own view

Every gene is an Optuna categorical parameter named after the gene (``edge_1<-0``,
``block3``, ``kernel7``...) whose choices are the space's labels (``nor_conv_3x3``,
``k5_e6``, ``"224"``...). Objectives: maximise the accuracy (a metric bundled with the
space's table or a callable ``genes -> accuracy``), minimise the oracle's predicted latency
on each device. Latency budgets are Optuna (>= 5) constraints set on each trial with
``Trial.set_constraint("latency_ms[<device>]", latency - budget)`` (<= 0 is feasible), which
NSGAIISampler (constrained domination) and TPESampler read without a ``constraints_func``.

Each batch: ``study.ask`` ``batch_size`` trials (default: the NSGA-II population, so one
batch is one generation), map their parameters to canonical genes, rank the architectures
never ranked before in ONE ``client.rank`` call (a repeated architecture reuses the cached
prediction, no RPC), and ``study.tell`` every trial. Needs ``optuna>=5`` (extra ``[optuna]``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

try:
    import optuna
    from optuna.distributions import CategoricalDistribution
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "client_sdk.integrations.optuna needs Optuna: pip install 'latency-oracle[optuna]'"
    ) from exc

from client_sdk._progress import progress_enabled
from client_sdk.search.objectives import (
    Objective,
    evaluate_accuracy,
    latency_budgets,
    resolve_objective,
)
from client_sdk.search.results import ParetoFront, pareto_mask
from client_sdk.spaces import GENE_DTYPE, SearchSpace, get_space

GENES_ATTR = "oracle_genes"
SAMPLERS = ("nsga2", "tpe", "random")


def distributions(space: SearchSpace) -> dict[str, CategoricalDistribution]:
    """One categorical distribution per gene, over the gene's choice labels."""
    return {
        name: CategoricalDistribution(list(choices))
        for name, choices in zip(space.gene_names, space.choices, strict=True)
    }


def make_sampler(kind: str, seed: int | None = 0, population: int = 64
                 ) -> optuna.samplers.BaseSampler:
    """``'nsga2'`` (NSGAIISampler), ``'tpe'`` (multivariate TPE, constant liar: several
    trials are pending at once) or ``'random'``."""
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"sampler must be one of {SAMPLERS} or an Optuna sampler, got {kind!r}")


class OracleOptuna:
    """An Optuna study whose latency objectives come from the oracle, a batch per RPC."""

    def __init__(
        self,
        client: Any,
        space: str | SearchSpace,
        devices: str | Sequence[str],
        objective: Objective = "cifar10",
        *,
        max_latency_ms: float | Mapping[str, float] | None = None,
        study: optuna.Study | None = None,
        sampler: str | optuna.samplers.BaseSampler = "nsga2",
        seed: int | None = 0,
        population: int = 64,
        study_name: str | None = None,
        storage: str | optuna.storages.BaseStorage | None = None,
    ) -> None:
        self.client = client
        self.space = get_space(space) if isinstance(space, str) else space
        self.devices = [devices] if isinstance(devices, str) else list(devices)
        if not self.devices:
            raise ValueError("give at least one device")
        self.objective_name, self._accuracy = resolve_objective(self.space, objective)
        self.budgets = latency_budgets(self.devices, max_latency_ms)
        self._budgeted = np.flatnonzero(np.isfinite(self.budgets))
        self.population = int(population)
        self.distributions = distributions(self.space)
        self._choice_index = [
            {label: k for k, label in enumerate(choices)} for choices in self.space.choices
        ]
        if study is None:
            if isinstance(sampler, str):
                sampler = make_sampler(sampler, seed, self.population)
            study = optuna.create_study(
                directions=["maximize"] + ["minimize"] * len(self.devices),
                sampler=sampler, study_name=study_name, storage=storage,
                load_if_exists=study_name is not None,
            )
        elif len(study.directions) != 1 + len(self.devices):
            raise ValueError(
                f"the study has {len(study.directions)} objectives, need 1 + {len(self.devices)}"
                " (accuracy, then one latency per device)"
            )
        self.study = study
        g, d = self.space.num_genes, len(self.devices)
        self._genes = np.empty((0, g), dtype=GENE_DTYPE)
        self._acc = np.empty(0)
        self._lat = np.empty((0, d))
        self._index: dict[bytes, int] = {}
        self.num_rpcs = 0
        self.num_trials = 0

    # ------------------------------------------------------------------ core
    @property
    def num_evaluations(self) -> int:
        """Distinct architectures ranked by the oracle so far."""
        return len(self._acc)

    def genes_of(self, params: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Trial parameters -> canonical genes ``(n, g)``."""
        out = np.empty((len(params), self.space.num_genes), dtype=GENE_DTYPE)
        for j, name in enumerate(self.space.gene_names):
            lut = self._choice_index[j]
            out[:, j] = [lut[p[name]] for p in params]
        return self.space.canonicalize(out)

    def evaluate(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(accuracy (n,), latency (n, d))``; the uncached rows in ONE Rank RPC."""
        keys = [row.tobytes() for row in np.ascontiguousarray(genes, dtype=GENE_DTYPE)]
        rows = np.array([self._index.get(k, -1) for k in keys], dtype=np.int64)
        new: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            if rows[i] < 0 and k not in new:
                new[k] = i
        if new:
            first = np.fromiter(new.values(), dtype=np.int64, count=len(new))
            fresh = genes[first]
            res = self.client.rank(self.space.name, fresh, self.devices)
            self.num_rpcs += 1
            lat = np.column_stack(
                [np.asarray(res.latency_ms[dv], dtype=np.float64) for dv in self.devices]
            )
            acc = evaluate_accuracy(self._accuracy, fresh)
            start = len(self._acc)
            for off, k in enumerate(new):
                self._index[k] = start + off
            self._genes = np.concatenate([self._genes, fresh])
            self._acc = np.concatenate([self._acc, acc])
            self._lat = np.concatenate([self._lat, lat])
            rows = np.array([self._index[k] for k in keys], dtype=np.int64)
        return self._acc[rows], self._lat[rows]

    def step(self, batch_size: int | None = None) -> list[optuna.trial.FrozenTrial]:
        """Ask ``batch_size`` trials, evaluate them with at most one RPC, tell them."""
        n = int(batch_size or self.population)
        trials = [self.study.ask(self.distributions) for _ in range(n)]
        genes = self.genes_of([t.params for t in trials])
        acc, lat = self.evaluate(genes)
        told = []
        for i, trial in enumerate(trials):
            trial.set_user_attr(GENES_ATTR, genes[i].tolist())
            for j in self._budgeted:
                trial.set_constraint(
                    f"latency_ms[{self.devices[j]}]", float(lat[i, j] - self.budgets[j])
                )
            told.append(self.study.tell(trial, [float(acc[i]), *map(float, lat[i])]))
        self.num_trials += n
        return told

    def optimize(
        self,
        n_trials: int | None = None,
        *,
        n_evaluations: int | None = None,
        batch_size: int | None = None,
        max_trials: int | None = None,
        callback: Callable[[OracleOptuna], bool | None] | None = None,
        progress: bool | None = None,
    ) -> OracleOptuna:
        """Run batches until ``n_trials`` trials, or ``n_evaluations`` distinct architectures
        ranked (then at most ``max_trials``, default 10x, trials). ``callback(self)`` after
        each batch; returning ``False`` stops."""
        if (n_trials is None) == (n_evaluations is None):
            raise ValueError("give exactly one of n_trials or n_evaluations")
        batch = int(batch_size or self.population)
        if batch < 1:
            raise ValueError("batch_size must be >= 1")
        trial_cap = n_trials if n_trials is not None else (max_trials or 10 * n_evaluations)
        from tqdm.auto import tqdm

        total = n_trials if n_trials is not None else n_evaluations
        bar = tqdm(total=total, disable=not progress_enabled(progress), leave=False,
                   desc=f"optuna ({type(self.study.sampler).__name__})", unit="arch")
        done = 0
        try:
            while done < trial_cap:
                size = min(batch, trial_cap - done)
                if n_evaluations is not None:
                    size = min(size, max(1, n_evaluations - self.num_evaluations))
                before = self.num_evaluations
                self.step(size)
                done += size
                bar.update(size if n_trials is not None else self.num_evaluations - before)
                if n_evaluations is not None and self.num_evaluations >= n_evaluations:
                    break
                if callback is not None and callback(self) is False:
                    break
        finally:
            bar.close()
        return self

    # --------------------------------------------------------------- results
    def feasible(self) -> np.ndarray:
        return np.all(self._lat <= self.budgets[None, :], axis=1)

    def front(self) -> ParetoFront:
        """Non-dominated feasible architectures over everything ranked (as ``search``)."""
        ok = self.feasible()
        F = np.column_stack([-self._acc, self._lat])
        mask = np.zeros(len(F), dtype=bool)
        mask[ok] = pareto_mask(F[ok])
        return ParetoFront.build(
            self.space, self.devices, self._genes[mask], self._acc[mask], self._lat[mask],
            self.objective_name,
        )

    def archive(self) -> dict[str, Any]:
        """Every ranked architecture: genes, accuracy, latency_ms per device, feasible."""
        return {
            "genes": self._genes.copy(),
            "accuracy": self._acc.copy(),
            "latency_ms": {d: self._lat[:, j].copy() for j, d in enumerate(self.devices)},
            "feasible": self.feasible(),
        }


def optimize(
    client: Any,
    space: str | SearchSpace,
    devices: str | Sequence[str],
    objective: Objective = "cifar10",
    *,
    n_trials: int | None = None,
    n_evaluations: int | None = None,
    sampler: str | optuna.samplers.BaseSampler = "nsga2",
    max_latency_ms: float | Mapping[str, float] | None = None,
    seed: int | None = 0,
    population: int = 64,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> OracleOptuna:
    """One call: build the study, run it, return the ``OracleOptuna`` (``.study``, ``.front()``)."""
    nas = OracleOptuna(
        client, space, devices, objective, max_latency_ms=max_latency_ms, sampler=sampler,
        seed=seed, population=population,
    )
    return nas.optimize(
        n_trials, n_evaluations=n_evaluations, batch_size=batch_size, progress=progress
    )
