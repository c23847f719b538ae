"""NSGA-II search with a user-defined accuracy predictor (here a cheap, label-free proxy).

Needs a running server (``make serve``, port 50051). The accuracy objective is any callable
``genes (n, num_genes) -> accuracy (n,)``; here a proxy rewarding parameters and
3x3 convolutions (swap in your own predictor). Works on any space, e.g. OFA:

    python examples/custom_accuracy.py --target localhost:50051 --space ofa_mbv3 \\
        --devices pixel3 --evaluations 1000 --out front
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from client_sdk import OracleClient
from client_sdk.search import search
from client_sdk.spaces import get_space


def make_proxy(space_name: str):
    """A toy accuracy predictor: log-parameters (bigger nets tend to be more accurate)."""
    space = get_space(space_name)

    def params_proxy(genes: np.ndarray) -> np.ndarray:
        return np.log10(space.params(genes))

    return params_proxy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default="localhost:50051")
    ap.add_argument("--space", default="nasbench201")
    ap.add_argument("--devices", nargs="+", default=["pixel3"])
    ap.add_argument("--evaluations", type=int, default=1000)
    ap.add_argument("--max-latency-ms", type=float, default=None)
    ap.add_argument("--out", type=Path, default=Path("front"), help="output prefix")
    args = ap.parse_args()

    with OracleClient(args.target) as client:
        result = search(client, args.space, args.devices, objective=make_proxy(args.space),
                        evaluations=args.evaluations, max_latency_ms=args.max_latency_ms)
    print(result.summary())
    print(result.front.table(max_rows=20))
    result.front.to_json(args.out.with_suffix(".json"))
    result.front.to_csv(args.out.with_suffix(".csv"))
    result.front.plot(args.out.with_suffix(".png"))
    print(f"wrote {args.out}.json/.csv/.png")


if __name__ == "__main__":
    main()
