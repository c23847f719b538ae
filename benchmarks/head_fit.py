"""Head fit time (selection included) at 10 and 100 samples, per space (issue #13 target:
<= 50 ms / <= 200 ms). Prints a table and writes JSON.

    .venv/bin/python -m benchmarks.head_fit [--repeats 20] [--json benchmarks/results/head_fit.json]

The first fit after a model is loaded also pays one-off costs (the proxy's lazily loaded
tree tables, first-use imports); it is timed on its own (``first_ms``) and kept out of the
steady-state percentiles."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks._cli import RESULTS, load_average, parser, write_json
from oracle_server.predictor import build_model

SPACES = ("nasbench201", "fbnet", "ofa_mbv3")
#: the first fit's draw: a seed none of the timed repeats (0, 1, ...) uses
FIRST_FIT_SEED = 2**32 - 1


def main() -> None:
    ap = parser(__doc__, json_default=RESULTS / "head_fit.json")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--cache-dir", type=Path, default=Path(".oracle/cache"))
    args = ap.parse_args()
    out: dict = {"load_avg": load_average(), "repeats": args.repeats, "spaces": {}}
    print(f"{'space':12s} {'n':>4s} {'p50 ms':>8s} {'p90 ms':>8s}  heads")
    for space in SPACES:
        model = build_model(space, cache_dir=args.cache_dir)
        table = model.space.table
        y = table.latency_ms[:, 0]
        rows = np.random.default_rng(FIRST_FIT_SEED).choice(len(y), 10, replace=False)
        t0 = time.perf_counter()
        model.fit_head(table.genes[rows], y[rows])
        first = 1e3 * (time.perf_counter() - t0)
        out["spaces"][space] = {"first_ms": first}
        print(f"{space:12s} first fit after loading: {first:.1f} ms")
        for n in (10, 100):
            times, kinds = [], set()
            for seed in range(args.repeats):
                rows = np.random.default_rng(seed).choice(len(y), n, replace=False)
                t0 = time.perf_counter()
                head = model.fit_head(table.genes[rows], y[rows])
                times.append(1e3 * (time.perf_counter() - t0))
                kinds.add(head.kind)
            p50, p90 = np.percentile(times, [50, 90])
            out["spaces"][space][n] = {"p50_ms": p50, "p90_ms": p90}
            print(f"{space:12s} {n:4d} {p50:8.1f} {p90:8.1f}  {','.join(sorted(kinds))}")
    write_json(args.json, out)


if __name__ == "__main__":
    main()
