"""Optuna through the oracle vs the built-in NSGA-II, for the same number of evaluations.

NAS-Bench-201, cifar10 accuracy vs latency on devices held out of the proxy and registered
from HELP's 10 reference architectures (default: the validation devices titanx_1 and
gold_6240, never the HELP test devices). Per device and seed, every method gets the same
budget of DISTINCT architectures ranked by the oracle (``--evaluations``):

* ``builtin``: ``client_sdk.search.search`` (pymoo NSGA-II, population 64);
* ``optuna_nsga2``: ``OracleOptuna`` with Optuna's NSGAIISampler (population 64, one
  batch = one generation = one RPC);
* ``optuna_tpe``: ``OracleOptuna`` with multivariate TPE (constant liar), batches of 64;
* ``random``: that many distinct random architectures (the floor).

Scores: ``hv_pred`` = hypervolume of everything the method evaluated, in the objectives the
optimiser sees (true cifar10 error, PREDICTED latency), divided by the hypervolume of the
exhaustive predicted front (all 15,625 cells ranked once); ``hv_true`` / ``recall`` = the
returned front scored with TRUE latency against the table's true front (as
``benchmarks.search_quality``). Also trials, RPCs and wall time (machine load recorded).

Usage: ``python -m benchmarks.optuna_search --json benchmarks/results/optuna_search.json``
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import optuna
from pymoo.indicators.hv import HV

from benchmarks._cli import load_average, parser, write_json
from benchmarks.search_quality import METRIC, SPACE, make_client, score
from client_sdk.integrations.optuna import OracleOptuna
from client_sdk.search import pareto_mask, search, true_front_rows

VALIDATION = ("titanx_1", "gold_6240")
METHODS = ("builtin", "optuna_nsga2", "optuna_tpe", "random")


def hv_pred(acc: np.ndarray, lat: np.ndarray, ref: np.ndarray, full: float) -> float:
    F = np.column_stack([100.0 - acc, lat])
    F = F[pareto_mask(F)]
    return float(HV(ref_point=ref)(F) / full) if len(F) else 0.0


def outcome(
    t0: float, name: str, front: np.ndarray, archive: dict[str, Any], trials: int, rpcs: int
) -> dict[str, Any]:
    """One method's run: its returned ``front``, every architecture it evaluated (``archive``:
    genes, accuracy, latency_ms per device), trials and RPCs, seconds since ``t0``."""
    return {
        "front": front,
        "genes": archive["genes"],
        "acc": archive["accuracy"],
        "lat": archive["latency_ms"][name],
        "trials": trials,
        "rpcs": rpcs,
        "wall_s": time.perf_counter() - t0,
    }


def run(method: str, client: Any, name: str, seed: int, opts: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    if method == "builtin":
        res = search(
            client,
            "nasbench201",
            [name],
            objective=METRIC,
            evaluations=opts.evaluations,
            population=opts.population,
            seed=seed,
            progress=False,
        )
        return outcome(t0, name, res.front.genes, res.archive, res.num_evaluations, res.num_rpcs)
    if method == "random":
        rows = np.random.default_rng(seed).permutation(SPACE.num_architectures)
        genes = SPACE.table.genes[rows[: opts.evaluations]]
        lat = np.asarray(client.rank("nasbench201", genes, [name]).latency_ms[name], float)
        acc = SPACE.table.accuracy[METRIC][SPACE.table_rows(genes)]
        front = genes[pareto_mask(np.column_stack([-acc, lat]))]
        archive = {"genes": genes, "accuracy": acc, "latency_ms": {name: lat}}
        return outcome(t0, name, front, archive, len(genes), 1)
    sampler = {"optuna_nsga2": "nsga2", "optuna_tpe": "tpe"}[method]
    nas = OracleOptuna(
        client,
        "nasbench201",
        [name],
        METRIC,
        sampler=sampler,
        population=opts.population,
        seed=seed,
    )
    nas.optimize(n_evaluations=opts.evaluations, progress=False)
    return outcome(t0, name, nas.front().genes, nas.archive(), nas.num_trials, nas.num_rpcs)


def main(argv: Sequence[str] | None = None) -> int:
    ap = parser(__doc__.split("\n")[0])
    ap.add_argument("--devices", nargs="+", default=list(VALIDATION))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--evaluations", type=int, default=1000)
    ap.add_argument("--population", type=int, default=64)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    opts = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    load_before = load_average()
    client, names, close, _ = make_client(opts.devices, SimpleNamespace(references="help"))
    runs: dict[str, dict[str, list[dict[str, float]]]] = {m: {} for m in opts.methods}
    try:
        for dev in opts.devices:
            name = names[dev]
            all_lat = np.asarray(
                client.rank("nasbench201", SPACE.table.genes, [name]).latency_ms[name], float
            )
            all_acc = SPACE.table.accuracy[METRIC]
            ref = np.array([100.0 - all_acc.min() + 0.5, all_lat.max() * 1.01])
            F_all = np.column_stack([100.0 - all_acc, all_lat])
            full = float(HV(ref_point=ref)(F_all[pareto_mask(F_all)]))
            true_rows = true_front_rows(SPACE, dev, METRIC)
            for method in opts.methods:
                for seed in range(opts.seeds):
                    r = run(method, client, name, seed, opts)
                    row = {
                        "hv_pred": hv_pred(r["acc"], r["lat"], ref, full),
                        **score(dev, r["front"], true_rows),
                        "evaluations": len(r["genes"]),
                        "trials": r["trials"],
                        "rpcs": r["rpcs"],
                        "wall_s": r["wall_s"],
                    }
                    runs[method].setdefault(dev, []).append(row)
                    print(
                        f"{method:<13} {dev:<10} seed {seed}: hv_pred {row['hv_pred']:.4f} "
                        f"hv_true {row['hv_ratio']:.4f} recall {row['recall']:.3f} "
                        f"evals {row['evaluations']} trials {row['trials']} "
                        f"rpcs {row['rpcs']} {row['wall_s']:.1f} s",
                        flush=True,
                    )
    finally:
        close()
    load_after = load_average()
    keys = ("hv_pred", "hv_ratio", "recall", "evaluations", "trials", "rpcs", "wall_s")
    summary = {
        m: {d: {k: float(np.mean([r[k] for r in rs])) for k in keys} for d, rs in devs.items()}
        for m, devs in runs.items()
    }
    print(
        f"\n{opts.evaluations} distinct evaluations, {opts.seeds} seeds (mean); "
        f"load average {load_before[0]:.2f} -> {load_after[0]:.2f} (2 shared cores)"
    )
    print(
        f"{'method':<13} {'device':<10} {'HV pred':>8} {'HV true':>8} {'recall':>7} "
        f"{'trials':>7} {'RPCs':>5} {'wall s':>7}"
    )
    for m, devs in summary.items():
        for d, s in devs.items():
            print(
                f"{m:<13} {d:<10} {s['hv_pred']:>8.4f} {s['hv_ratio']:>8.4f} "
                f"{s['recall']:>7.3f} {s['trials']:>7.0f} {s['rpcs']:>5.0f} "
                f"{s['wall_s']:>7.2f}"
            )
        print(
            f"{m:<13} {'MEAN':<10} "
            f"{np.mean([s['hv_pred'] for s in devs.values()]):>8.4f} "
            f"{np.mean([s['hv_ratio'] for s in devs.values()]):>8.4f} "
            f"{np.mean([s['recall'] for s in devs.values()]):>7.3f}"
        )
    if opts.json:
        payload = {
            "benchmark": "optuna_search",
            "optuna_version": optuna.__version__,
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "note": "hv_pred: HV of all evaluated (true error, predicted latency) / HV of the "
            "exhaustive predicted front; hv_ratio/recall: returned front scored with "
            "TRUE latency vs the table's true front. 'random' is the floor.",
            "summary": summary,
            "runs": runs,
        }
        write_json(opts.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
