"""Use the oracle from inside a NAS loop: rank a population, keep the top-k under a budget.

Needs a running server (``make serve``, port 50051). Each generation of this toy
evolutionary loop is ONE ``rank`` RPC for all candidates and devices; candidates over the
latency budget on any device are dropped, and the k most accurate (NAS-Bench-201 table
accuracy) of the rest are the parents of the next generation.

    python examples/nas_loop.py --target localhost:50051 --devices pixel3 raspi4 --budget 20
"""

from __future__ import annotations

import argparse

import numpy as np

from client_sdk import OracleClient
from client_sdk.spaces import get_space


def top_k_under_budget(
    genes: np.ndarray, accuracy: np.ndarray, latency: dict[str, np.ndarray], budget: float, k: int
) -> np.ndarray:
    """Indices of the ``k`` most accurate architectures within ``budget`` on every device."""
    ok = np.all(np.stack([lat <= budget for lat in latency.values()]), axis=0)
    idx = np.flatnonzero(ok)
    return idx[np.argsort(-accuracy[idx])[:k]]


def mutate(space, parents: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` children: random parents with one gene reset."""
    kids = parents[rng.integers(0, len(parents), n)].copy()
    pos = rng.integers(0, space.num_genes, n)
    kids[np.arange(n), pos] = rng.integers(0, space.cardinalities[pos])
    return space.canonicalize(kids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default="localhost:50051")
    ap.add_argument("--devices", nargs="+", default=["pixel3"])
    ap.add_argument("--budget", type=float, default=20.0, help="max latency (ms) per device")
    ap.add_argument("--population", type=int, default=256)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--generations", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    space = get_space("nasbench201")
    accuracy_of = space.table.accuracy["cifar10"]
    rng = np.random.default_rng(args.seed)
    genes = space.sample(args.population, rng)
    with OracleClient(args.target) as client:
        for gen in range(args.generations):
            result = client.rank("nasbench201", genes, args.devices, max_latency_ms=args.budget)
            acc = accuracy_of[space.table_rows(genes)]
            best = top_k_under_budget(genes, acc, result.latency_ms, args.budget, args.k)
            if len(best) == 0:
                print(f"gen {gen}: nothing under {args.budget} ms; resampling")
                genes = space.sample(args.population, rng)
                continue
            lat = {d: float(result.latency_ms[d][best[0]]) for d in args.devices}
            print(f"gen {gen}: best {acc[best[0]]:.2f} % at {lat} ms  "
                  f"({len(best)} kept of {len(genes)})")
            genes = np.concatenate([genes[best], mutate(space, genes[best],
                                                        args.population - len(best), rng)])
        print("best architecture:", space.format(genes[0]))
        print(f"RPCs made: {client.num_rpcs}")


if __name__ == "__main__":
    main()
