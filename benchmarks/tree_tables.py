"""Tree tables vs the LightGBM trees, in process (issue #15): the proxy's basis columns.

For FBNet and OFA (the open spaces), fresh random architectures, 1 / 6 / all basis columns:

* ``trees``: the reference path (``LatencyModel.basis(..., reference=True)``: features +
  LightGBM ``Booster.predict`` per column + the log-linear part), the baseline, measured in the
  same run beside the figure;
* ``tables``: the tree tables (``predictor/tree_tables.py``), 1 thread and ``--threads``;
* the largest relative difference between the two (the test oracle: <= 1e-9).

Times are per call: wall (``perf_counter``) and this process's CPU time (``thread_time`` of
the calling thread + pool threads via ``process_time``), median of ``--reps``. The machine's
load average is recorded: on a shared 2-core machine wall times move with other jobs, CPU
times much less.

    python -m benchmarks.tree_tables [--json benchmarks/results/tree_tables.json]
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._cli import ROOT, finish, load_average, parser
from oracle_server.predictor import build_model
from oracle_server.predictor import tree_tables as tt


def timed(fn, reps: int) -> tuple[float, float]:
    """(median wall ms, median process CPU ms) over ``reps`` calls after one warm-up."""
    fn(0)
    walls, cpus = [], []
    for r in range(reps):
        c, w = time.process_time(), time.perf_counter()
        fn(r + 1)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return float(np.median(walls)) * 1e3, float(np.median(cpus)) * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__.split("\n")[0])
    ap.add_argument("--cache-dir", type=Path, default=ROOT / ".oracle" / "bench-cache")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="10000,100000")
    args = ap.parse_args(argv)
    tt.start_kernel(wait=True)
    res: dict = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "loadavg_before": load_average(),
            "kernel": "numba" if tt._KERNELS is not None else "numpy",
        },
        "rows": [],
    }
    print(
        f"{'space':9s} {'archs':>7s} {'cols':>4s} {'trees ms':>9s} {'cpu':>7s} "
        f"{'tables ms':>9s} {'cpu':>7s} {'x':>6s} {f'{args.threads} thr ms':>9s} "
        f"{'max rel diff':>12s}"
    )
    for space in ("fbnet", "ofa_mbv3"):
        model = build_model(space, (), cache_dir=args.cache_dir)
        if model.proxy.tables is None:
            print(f"{space}: no tree tables")
            continue
        nb = len(model.basis_devices)
        for n in (int(x) for x in args.sizes.split(",")):
            genes = [model.space.sample(n, 1000 + r) for r in range(args.reps + 1)]
            for cols in ([0], list(range(6)), list(range(nb))):
                if n > 10_000 and len(cols) > 1:
                    continue  # the trees take many seconds there
                reps = args.reps if len(cols) < nb else max(1, args.reps // 2)

                def ref(r, cols=cols, genes=genes, model=model):
                    g = genes[r % len(genes)]
                    return model.basis(g, model.features(g), columns=cols, reference=True)

                def fast(r, cols=cols, genes=genes, model=model):
                    return model.basis(genes[r % len(genes)], columns=cols)

                tt.set_threads(1)
                t_wall, t_cpu = timed(ref, reps)
                f_wall, f_cpu = timed(fast, reps)
                tt.set_threads(args.threads)
                p_wall, _ = timed(fast, reps)
                tt.set_threads(1)
                diff = float(np.max(np.abs(fast(0)[:, cols] - ref(0)[:, cols]) / ref(0)[:, cols]))
                row = {
                    "space": space,
                    "archs": n,
                    "columns": len(cols),
                    "trees_ms": t_wall,
                    "trees_cpu_ms": t_cpu,
                    "tables_ms": f_wall,
                    "tables_cpu_ms": f_cpu,
                    "speedup_cpu": t_cpu / f_cpu,
                    "tables_threads": args.threads,
                    "tables_threads_ms": p_wall,
                    "max_rel_diff": diff,
                }
                res["rows"].append(row)
                print(
                    f"{space:9s} {n:>7d} {len(cols):>4d} {t_wall:>9.1f} {t_cpu:>7.1f} "
                    f"{f_wall:>9.1f} {f_cpu:>7.1f} {row['speedup_cpu']:>6.1f} "
                    f"{p_wall:>9.1f} {diff:>12.2e}",
                    flush=True,
                )
    res["meta"]["loadavg_after"] = load_average()
    print(
        f"load average before {res['meta']['loadavg_before']}, after "
        f"{res['meta']['loadavg_after']} (x = CPU-time ratio trees / tables)"
    )
    return finish(args.json, res, announce=True)


if __name__ == "__main__":
    sys.exit(main())
