"""Drive a hardware-aware NAS with Optuna: accuracy vs oracle latency, budgets as constraints.

Needs a running server (``make serve``, port 50051) and the extra: ``pip install -e
'.[optuna]'``. Each batch of trials (one NSGA-II generation) is ONE ``rank`` RPC for every
device; repeated architectures are answered from a cache. The front is printed, written as
JSON and drawn (``--plot``); Optuna's own view is ``nas.study.best_trials``.

    python examples/optuna_nas.py --devices pixel3 1080ti_1 --budget 15 --evaluations 1000
    python examples/optuna_nas.py --sampler tpe --evaluations 300 --out /tmp/optuna-nas
"""

from __future__ import annotations

import argparse
from pathlib import Path

import optuna

from client_sdk import OracleClient
from client_sdk.integrations.optuna import OracleOptuna


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default="localhost:50051")
    ap.add_argument("--space", default="nasbench201")
    ap.add_argument("--objective", default="cifar10")
    ap.add_argument("--devices", nargs="+", default=["pixel3"])
    ap.add_argument("--budget", type=float, default=None, help="max latency (ms) per device")
    ap.add_argument("--sampler", choices=("nsga2", "tpe", "random"), default="nsga2")
    ap.add_argument("--evaluations", type=int, default=1000, help="distinct architectures")
    ap.add_argument("--population", type=int, default=64, help="trials per batch / RPC")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--plot", action="store_true")
    args = ap.parse_args()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with OracleClient(args.target) as client:
        nas = OracleOptuna(
            client, args.space, args.devices, args.objective, max_latency_ms=args.budget,
            sampler=args.sampler, population=args.population, seed=args.seed,
        )
        nas.optimize(n_evaluations=args.evaluations)
    front = nas.front()
    print(front.table(max_rows=20))
    print(f"{nas.num_trials} trials, {nas.num_evaluations} architectures ranked in "
          f"{nas.num_rpcs} RPCs; Optuna's Pareto set: {len(nas.study.best_trials)} trials")
    if args.out:
        print("wrote", front.to_json(args.out / "front.json"))
        if args.plot:
            print("wrote", front.plot(args.out / "pareto.png", max_latency_ms=args.budget))


if __name__ == "__main__":
    main()
