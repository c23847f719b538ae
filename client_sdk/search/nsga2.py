"""``search()``: NSGA-II (pymoo, ask/tell) over a space, latency from the oracle.

Per generation: pymoo's NSGA-II asks for offspring (selection, categorical crossover,
random-reset mutation, canonical repair, duplicates eliminated against the population AND
the archive of everything evaluated), ``OracleProblem`` ranks the new ones in ONE RPC, and
the offspring are told back. The evaluation budget is exact: the last generation only asks
for the evaluations left.

Reproducibility and resume: all randomness comes from the algorithm's
``numpy.random.Generator`` (seeded with ``seed``). After each generation a checkpoint (one
``.npz``: population X/F/G/rank/crowding, the evaluation cache, and a JSON ``meta`` entry
with the generator's state, counters, config and history; ``client_sdk.search.checkpoint``)
is written atomically. Resuming restores exactly that state, so a resumed run yields the
same front as an uninterrupted run.

The returned front is the non-dominated set over ALL evaluated (feasible) architectures,
not only the last population, deduplicated by canonical genes.

Closed loop (``measure=``, ``measure_budget=``, ``rounds=``): the evaluations are split into
``rounds`` equal segments; after each, the ``measure_budget / rounds`` archive architectures
whose measurement would most change the front (``client_sdk.search.loop``) are measured by
the callback, sent with ``AddMeasurements`` (the server refits the device head), the whole
archive is re-ranked in one RPC (measured rows keep their measurements) and the population
is re-selected from the archive before the search continues. The last round comes after the
last generation, so every measurement shapes the returned front.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.population import Population
from pymoo.termination.collection import TerminationCollection
from pymoo.termination.max_eval import MaximumFunctionCallTermination
from pymoo.termination.max_gen import MaximumGenerationTermination
from pymoo.termination.max_time import TimeBasedTermination
from tqdm.auto import tqdm

from client_sdk._progress import progress_enabled
from client_sdk.search.checkpoint import (
    CHECKPOINT_VERSION,
    jsonable_budget,
    load_checkpoint,
    load_for_resume,
    restore,
    save_checkpoint,
)
from client_sdk.search.loop import (
    MeasureFn,
    Resolution,
    acquisition,
    infer_device_resolution,
    log_sigma,
    measured_matrix,
    resolution_grid,
    select_batch,
    snap_latency,
)
from client_sdk.search.objectives import LATENCY_MODES, Objective, resolve_objective
from client_sdk.search.operators import make_operators
from client_sdk.search.problem import OracleProblem
from client_sdk.search.results import ParetoFront, SearchResult, dominated_by, pareto_mask
from client_sdk.spaces import SearchSpace, get_space

__all__ = ["CHECKPOINT_VERSION", "TIE_TOLERANCE", "load_checkpoint", "search"]

#: NB201 through the oracle (HELP test devices, exhaustive predictions): 0.1 % collapses
#: near-equal predictions of equally fast cells (fpga front 1.75x -> 0.94x the true front,
#: eyeriss 1.36x -> 0.82x) at unchanged recall there.
TIE_TOLERANCE = 1e-3

Callback = Callable[[dict[str, Any]], bool | None]


def search(
    client: Any,
    space: str | SearchSpace,
    devices: str | Sequence[str],
    objective: Objective = "cifar10",
    evaluations: int = 3000,
    population: int = 64,
    max_latency_ms: float | Mapping[str, float] | None = None,
    seed: int = 0,
    latency_mode: str = "per_device",
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    time_limit_s: float | None = None,
    callback: Callback | None = None,
    *,
    generations: int | None = None,
    uncertainty: bool = True,
    tie_tolerance: float = TIE_TOLERANCE,
    measure: MeasureFn | None = None,
    measure_budget: int = 0,
    rounds: int = 1,
    latency_objective: str = "mean",
    interval_level: float | None = None,
    latency_resolution_ms: Resolution = None,
    known_latencies_ms: Mapping[str, Sequence[float]] | None = None,
) -> SearchResult:
    """Multi-objective NAS: maximise ``objective``, minimise latency on ``devices``.

    ``progress``: a tqdm bar; ``None`` (default) draws it only when stderr is a terminal.
    ``callback(info)`` runs after every generation with a dict (generation,
    num_evaluations, num_rpcs, front_size, best_accuracy, elapsed_s); returning ``False``
    stops the search (the checkpoint is already written, so it can be resumed).
    ``tie_tolerance``: relative latency difference below which two architectures count as
    equally fast when extracting the front (the more accurate one dominates); it does not
    change the search itself.

    Closed loop: ``measure(genes (k, g)) -> latencies`` (``(k,)`` for one device, ``(k, d)``
    or ``{device: (k,)}``) times architectures on the real device(s); ``measure_budget`` is
    the total number of architectures measured, spread over ``rounds`` rounds.
    ``latency_objective``: ``'mean'`` (the prediction), ``'upper'`` (the upper bound of the
    head's central ``interval_level`` interval) or ``'prob'`` (maximise
    ``P(latency <= max_latency_ms)`` instead of a hard budget).
    ``latency_resolution_ms``: the device's reporting grid (a step in ms, ``(step,
    offset)``, or a mapping per device); predicted latencies are snapped to it before the
    front is extracted, so ties the device cannot distinguish do not inflate the front.
    ``{"relative": r}`` declares discrete levels off any grid (ties within a factor
    ``1 + r``). ``'auto'`` infers either from the closed loop's measurements
    (``loop.infer_device_resolution``), together with ``known_latencies_ms`` ({device:
    latencies measured before, e.g. at registration}).
    """
    space = get_space(space) if isinstance(space, str) else space
    devices = [devices] if isinstance(devices, str) else list(devices)
    if latency_mode not in LATENCY_MODES:
        raise ValueError(f"latency_mode must be one of {LATENCY_MODES}, got '{latency_mode}'")
    if evaluations < 1 or population < 2:
        raise ValueError("need evaluations >= 1 and population >= 2")
    if measure_budget < 0 or rounds < 1:
        raise ValueError("need measure_budget >= 0 and rounds >= 1")
    if measure_budget and measure is None:
        raise ValueError("measure_budget > 0 needs a measure callable")
    if isinstance(latency_resolution_ms, str) and latency_resolution_ms != "auto":
        raise ValueError(
            "latency_resolution_ms must be a number, (step, offset), a mapping or 'auto'"
        )
    resolution_grid(devices, latency_resolution_ms)  # validates
    obj_name, acc_fn = resolve_objective(space, objective)
    config = {
        "space": space.name,
        "devices": devices,
        "objective": obj_name,
        "population": int(population),
        "seed": int(seed),
        "latency_mode": latency_mode,
        "max_latency_ms": jsonable_budget(max_latency_ms),
        "uncertainty": bool(uncertainty),
    }
    if measure_budget:  # only when used, so older checkpoints still resume
        config.update(measure_budget=int(measure_budget), rounds=int(rounds))
    if latency_objective != "mean":
        config["latency_objective"] = latency_objective
    state = load_for_resume(checkpoint, resume, config)
    problem = OracleProblem(
        client,
        space,
        devices,
        acc_fn,
        latency_mode=latency_mode,
        max_latency_ms=max_latency_ms,
        uncertainty=uncertainty,
        cache=state["cache"] if state else None,
        medians=state["medians"] if state else None,
        latency_objective=latency_objective,
        interval_level=interval_level,
    )
    algorithm = NSGA2(
        pop_size=min(population, evaluations),
        **make_operators(space, seen=lambda genes: problem.cache.contains(genes)),
    )
    terms = [MaximumFunctionCallTermination(evaluations)]
    terms.append(MaximumGenerationTermination(generations if generations else math.inf))
    if time_limit_s is not None:
        terms.append(TimeBasedTermination(float(time_limit_s)))
    algorithm.setup(problem, termination=TerminationCollection(*terms), seed=seed, verbose=False)
    run = _Run(problem, algorithm, config, evaluations, checkpoint, state)
    run.tie_tolerance = float(tie_tolerance)
    run.resolution = latency_resolution_ms
    run.known = {
        d: np.asarray(v, dtype=np.float64).reshape(-1)
        for d, v in (known_latencies_ms or {}).items()
    }
    if measure_budget:
        run.measure = measure
        run.round_sizes = [len(c) for c in np.array_split(np.arange(measure_budget), rounds)]
    return run.loop(progress, callback, obj_name)


class _Run:
    """One session of a search: the ask/tell loop, checkpoints, history, the result."""

    def __init__(
        self,
        problem: OracleProblem,
        algorithm: NSGA2,
        config: dict[str, Any],
        evaluations: int,
        checkpoint: str | Path | None,
        state: dict[str, Any] | None,
    ) -> None:
        self.problem = problem
        self.algorithm = algorithm
        self.config = config
        self.evaluations = int(evaluations)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.history: list[dict[str, Any]] = list(state["history"]) if state else []
        self.prior_s = float(state["elapsed_s"]) if state else 0.0
        self.resumed_from = int(state["generation"]) if state else None
        self.t0 = time.perf_counter()
        self.tie_tolerance = TIE_TOLERANCE
        self.resolution: Resolution = None
        self.known: dict[str, np.ndarray] = {}
        self.measure: MeasureFn | None = None
        self.round_sizes: list[int] = []
        self.rounds_done = int(state.get("rounds_done", 0)) if state else 0
        self.measure_s = float(state.get("measure_s", 0.0)) if state else 0.0
        self.measure_s_session = 0.0
        if state:
            restore(algorithm, problem, state, self.prior_s)

    @property
    def elapsed_s(self) -> float:
        """Wall time of the search, excluding the time spent in ``measure``."""
        return self.prior_s + time.perf_counter() - self.t0 - self.measure_s_session

    def loop(self, progress: bool | None, callback: Callback | None, obj_name: str) -> SearchResult:
        algo = self.algorithm
        stopped_by = None
        bar = tqdm(
            total=self.evaluations,
            initial=min(algo.evaluator.n_eval, self.evaluations),
            disable=not progress_enabled(progress),
            unit="arch",
            desc="NSGA-II",
            leave=False,
        )
        try:
            while stopped_by is None and algo.has_next():
                before = algo.evaluator.n_eval
                if not self._generation():
                    stopped_by = "exhausted"
                    break
                info = self._record(before)
                if self._round_due():
                    info["measured"] = self._measure_round()
                self._save()
                bar.update(info["new_evaluations"])
                bar.set_postfix(gen=info["generation"], front=info["front_size"])
                if callback is not None and callback(dict(info)) is False:
                    stopped_by = "callback"
        finally:
            bar.close()
        return self._result(stopped_by or self._why_stopped(), obj_name)

    def _generation(self) -> bool:
        """One ask / evaluate / tell; False when no new architecture could be generated."""
        algo = self.algorithm
        if algo.is_initialized:
            algo.n_offsprings = max(1, min(algo.pop_size, self.evaluations - algo.evaluator.n_eval))
        self.problem.generation = int(algo.n_iter or 1)
        infills = algo.ask()
        if infills is None or len(infills) == 0:
            return False
        algo.evaluator.eval(self.problem, infills, algorithm=algo)
        algo.tell(infills=infills)
        return True

    # ------------------------------------------------------------ closed loop
    def _round_due(self) -> bool:
        if self.measure is None or self.rounds_done >= len(self.round_sizes):
            return False
        milestone = self.evaluations * (self.rounds_done + 1) / len(self.round_sizes)
        return self.algorithm.evaluator.n_eval >= milestone - 1e-9

    def _measure_round(self) -> int:
        """Measure the round's batch, refit the head(s), re-rank, re-select the population."""
        p, cache = self.problem, self.problem.cache
        k = self.round_sizes[self.rounds_done]
        self.rounds_done += 1
        rows = np.arange(len(cache))
        measured = cache.measured
        level = p.interval_level or 0.8
        sigma = log_sigma(cache.latency_ms, cache.lower_ms, cache.upper_ms, level)
        sigma[np.isfinite(cache.measured_ms)] = 0.0
        lower = np.where(np.isfinite(cache.lower_ms), cache.lower_ms, cache.latency_ms)
        eligible = ~measured & p.feasible(rows, lower if p.constrained.size else None)
        score = acquisition(_snap(cache.accuracy), cache.latency_ms, sigma, eligible)
        pick = select_batch(score, cache.latency_ms[:, 0], k)
        if pick.size == 0:
            return 0
        genes = cache.genes[pick]
        t0 = time.perf_counter()
        values = self.measure(genes.copy())
        spent = time.perf_counter() - t0
        self.measure_s += spent
        self.measure_s_session += spent
        lat = measured_matrix(values, p.devices, len(pick))
        for j, dev in enumerate(p.devices):
            space = "" if "/" in dev else p.space.name
            p.client.add_measurements(dev, (genes, lat[:, j]), space=space)
            p.num_rpcs += 1
        p.record_measurements(pick, lat)
        p.rerank()
        self._reselect()
        return int(pick.size)

    def _reselect(self) -> None:
        """The population: NSGA-II survival over the whole archive under new predictions."""
        p, algo = self.problem, self.algorithm
        rows = np.arange(len(p.cache))
        pop = Population.new("X", p.cache.genes.astype(np.int64))
        G = p.constraints(rows) if p.n_ieq_constr else np.zeros((len(rows), 0))
        pop.set("F", p.objectives(rows), "G", G)
        algo.pop = algo.survival.do(
            p, pop, n_survive=algo.pop_size, algorithm=algo, random_state=algo.random_state
        )
        algo._set_optimum()

    def _resolution(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        devices = self.problem.devices
        if self.resolution == "auto":
            m = self.problem.cache.measured_ms
            grids = {
                d: infer_device_resolution(np.r_[self.known.get(d, np.zeros(0)), m[:, j]])
                for j, d in enumerate(devices)
            }
            return resolution_grid(devices, grids)
        return resolution_grid(devices, self.resolution)

    def _record(self, before: int) -> dict[str, Any]:
        front_mask, _ = self._front_masks()
        cache = self.problem.cache
        info = {
            "generation": int(self.algorithm.n_iter - 1),
            "num_evaluations": int(self.algorithm.evaluator.n_eval),
            "new_evaluations": int(self.algorithm.evaluator.n_eval - before),
            "num_rpcs": int(self.problem.num_rpcs),
            "front_size": int(front_mask.sum()),
            "best_accuracy": float(cache.accuracy.max()) if len(cache) else float("nan"),
            "elapsed_s": round(self.elapsed_s, 4),
        }
        self.history.append(info)
        return info

    def _why_stopped(self) -> str:
        algo = self.algorithm
        if algo.evaluator.n_eval >= self.evaluations:
            return "evaluations"
        terms = algo.termination.terminations
        if terms[1].perc >= 1.0:
            return "generations"
        if len(terms) > 2 and terms[2].perc >= 1.0:
            return "time"
        return "exhausted"

    # ----------------------------------------------------------------- front
    def _front_masks(self) -> tuple[np.ndarray, np.ndarray]:
        """(on the predicted front, worth measuring) over all cache rows."""
        p, cache = self.problem, self.problem.cache
        rows = np.arange(len(cache))
        feasible = p.feasible(rows)
        steps, offsets, relative = self._resolution()
        if p.latency_objective != "prob" and np.any(np.r_[steps, relative] > 0):
            lat = snap_latency(p.objective_latency(rows), steps, offsets, relative)
            F = p.objectives(rows, lat)
        else:
            F = p.objectives(rows)
        F[:, 0] = _snap(F[:, 0])  # accuracies equal up to float summation noise are ties
        front = np.zeros(len(rows), dtype=bool)
        front[feasible] = pareto_mask(F[feasible], self.tie_tolerance)
        near = np.zeros(len(rows), dtype=bool)
        lower = cache.lower_ms
        if p.latency_objective != "prob" and np.any(np.isfinite(lower)):
            lower = np.where(np.isfinite(lower), lower, cache.latency_ms)
            cand = p.feasible(rows, lower) & ~front
            F_opt = p.objectives(rows, lower)
            F_opt[:, 0] = F[:, 0]
            near[cand] = ~dominated_by(F_opt[cand], F[front])
        return front, near

    def _result(self, stopped_by: str, obj_name: str) -> SearchResult:
        p, cache = self.problem, self.problem.cache
        front_mask, near_mask = self._front_masks()

        def build(mask: np.ndarray) -> ParetoFront:
            return ParetoFront.build(
                p.space,
                p.devices,
                cache.genes[mask],
                cache.accuracy[mask],
                cache.latency_ms[mask],
                obj_name,
                cache.lower_ms[mask],
                cache.upper_ms[mask],
            )

        front = build(front_mask)
        front.near_front = build(near_mask)
        archive = {
            "genes": cache.genes.copy(),
            "accuracy": cache.accuracy.copy(),
            "latency_ms": {d: cache.latency_ms[:, j].copy() for j, d in enumerate(p.devices)},
            "feasible": p.feasible(np.arange(len(cache))),
            "measured_ms": {d: cache.measured_ms[:, j].copy() for j, d in enumerate(p.devices)},
            "measure_s": self.measure_s,
        }
        return SearchResult(
            front=front,
            num_evaluations=int(self.algorithm.evaluator.n_eval),
            num_rpcs=int(p.num_rpcs),
            wall_s=self.elapsed_s,
            generations=int(self.algorithm.n_iter - 1) if self.algorithm.n_iter else 0,
            stopped_by=stopped_by,
            history=self.history,
            archive=archive,
            resumed_from_generation=self.resumed_from,
        )

    # ------------------------------------------------------------ checkpoint
    def _save(self) -> None:
        if self.checkpoint is None:
            return
        algo, p = self.algorithm, self.problem
        meta = {
            "config": self.config,
            "n_iter": int(algo.n_iter),
            "n_eval": int(algo.evaluator.n_eval),
            "num_rpcs": int(p.num_rpcs),
            "generation": int(algo.n_iter - 1),
            "elapsed_s": self.elapsed_s,
            "rng_state": algo.random_state.bit_generator.state,
            "history": self.history,
            "rounds_done": self.rounds_done,
            "measure_s": self.measure_s,
        }
        save_checkpoint(self.checkpoint, algo, p, meta)


def _snap(x: np.ndarray, digits: int = 9) -> np.ndarray:
    """Round to ``digits`` significant digits relative to the largest magnitude."""
    scale = float(np.max(np.abs(x))) if len(x) else 0.0
    return x if scale == 0.0 else np.round(x / scale, digits) * scale
