"""Checkpoints of ``search()`` (``nsga2``): one ``.npz`` with the population X/F/G/rank/
crowding, the evaluation cache, the latency medians and a JSON ``meta`` entry (the
generator's state, counters, config and history), written atomically after each generation;
``restore`` puts a freshly set-up NSGA-II back into that state."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.population import Population

from client_sdk.search.problem import EvaluationCache, OracleProblem

CHECKPOINT_VERSION = 1


def save_checkpoint(
    path: Path, algorithm: NSGA2, problem: OracleProblem, meta: dict[str, Any]
) -> None:
    """Write a checkpoint atomically: ``meta`` (JSON, after the format version), the
    population and the problem's evaluation cache and medians."""
    meta = {"version": CHECKPOINT_VERSION, **meta}
    pop = algorithm.pop
    arrays = {f"cache_{k}": v for k, v in problem.cache.to_arrays().items()}
    arrays.update(
        pop_X=np.asarray(pop.get("X"), dtype=np.int64),
        pop_F=np.asarray(pop.get("F"), dtype=np.float64),
        pop_G=np.asarray(pop.get("G"), dtype=np.float64).reshape(len(pop), -1),
        pop_rank=_nan_for_none(pop.get("rank")),  # infeasible ones have no rank
        pop_crowding=_nan_for_none(pop.get("crowding")),
        medians=np.asarray(problem.medians, dtype=np.float64),
        meta=np.array(json.dumps(meta)),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)


def _nan_for_none(values: np.ndarray) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _none_for_nan(values: np.ndarray, kind: type) -> list:
    return [None if np.isnan(v) else kind(v) for v in values]


def jsonable_budget(budget: float | Mapping[str, float] | None) -> Any:
    """``max_latency_ms`` as the checkpoint's config records it."""
    if budget is None:
        return None
    if isinstance(budget, Mapping):
        return {str(k): float(v) for k, v in sorted(budget.items())}
    return float(budget)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's state: ``meta`` fields plus ``cache``, ``medians`` and ``pop`` arrays."""
    with np.load(Path(path), allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        if meta.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint {path}: unsupported version {meta.get('version')}")
        cache = EvaluationCache.from_arrays(
            {k[len("cache_") :]: npz[k] for k in npz.files if k.startswith("cache_")}
        )
        pop = {k[len("pop_") :]: npz[k] for k in npz.files if k.startswith("pop_")}
        medians = npz["medians"]
    medians = None if medians.ndim == 0 else medians
    return {**meta, "cache": cache, "pop": pop, "medians": medians}


def load_for_resume(
    checkpoint: str | Path | None, resume: bool, config: dict[str, Any]
) -> dict[str, Any] | None:
    """The state to resume from (None: start afresh); raises if the checkpoint was written
    by a search with another config."""
    if not resume:
        return None
    if checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    if not Path(checkpoint).exists():
        return None
    state = load_checkpoint(checkpoint)
    saved = state["config"]
    diff = sorted(k for k in config if saved.get(k) != config[k])
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} != {config[k]!r}" for k in diff)
        raise ValueError(f"checkpoint {checkpoint} was written by a different search ({detail})")
    return state


def restore(algorithm: NSGA2, problem: OracleProblem, state: dict[str, Any], prior_s: float):
    """Put a freshly set-up NSGA2 into the checkpointed state (between two generations)."""
    arrays = state["pop"]
    pop = Population.new("X", arrays["X"].astype(np.int64))
    pop.set("F", arrays["F"], "G", arrays["G"])
    pop.set("rank", _none_for_nan(arrays["rank"], int))
    pop.set("crowding", _none_for_nan(arrays["crowding"], float))
    algorithm.pop = pop
    algorithm.is_initialized = True
    algorithm.n_iter = int(state["n_iter"])
    algorithm.evaluator.n_eval = int(state["n_eval"])
    algorithm.random_state.bit_generator.state = state["rng_state"]
    algorithm.start_time = time.time() - prior_s
    algorithm._set_optimum()
    algorithm.termination.update(algorithm)
    problem.num_rpcs = int(state["num_rpcs"])
