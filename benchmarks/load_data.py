"""Cold-load benchmark of the bundled tables (issue #3 target: all three spaces < 1 s).

Each repeat runs in a fresh Python subprocess, so nothing is cached: it times the import of
``client_sdk.spaces``, then per space ``load_table`` (CSV -> numpy) and
``get_space(name).table`` (architecture strings -> canonical genes, row lookup index).

    python -m benchmarks.load_data [--repeat 5] [--json benchmarks/results/load_data.json]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from benchmarks._cli import RESULTS, ROOT, load_average, parser, write_json

SPACES = ("nasbench201", "fbnet", "ofa_mbv3")
TARGET_S = 1.0

CHILD = r"""
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
from client_sdk.data import load_table
from client_sdk.spaces import get_space
out = {"import_s": time.perf_counter() - t0, "spaces": {}}
c1 = time.process_time()
for name in sys.argv[1:]:
    t1 = time.perf_counter()
    raw = load_table(name)
    t2 = time.perf_counter()
    space = get_space(name)
    table = space.table
    space.table_rows(table.genes[:1])  # builds the gene -> row lookup
    t3 = time.perf_counter()
    out["spaces"][name] = {
        "load_table_s": t2 - t1,
        "genes_s": t3 - t2,
        "total_s": t3 - t1,
        "rows": int(table.genes.shape[0]),
        "devices": len(raw.devices),
    }
out["tables_s"] = time.perf_counter() - t0 - out["import_s"]
out["tables_cpu_s"] = time.process_time() - c1
out["total_s"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def run_once() -> dict:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *SPACES],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict]) -> dict:
    def stats(values: list[float]) -> dict:
        return {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values)}

    spaces = {}
    for name in SPACES:
        per = [r["spaces"][name] for r in runs]
        spaces[name] = {
            "rows": per[0]["rows"],
            "devices": per[0]["devices"],
            "load_table": stats([p["load_table_s"] for p in per]),
            "genes": stats([p["genes_s"] for p in per]),
            "total": stats([p["total_s"] for p in per]),
        }
    tables = stats([r["tables_s"] for r in runs])
    load = (load_average() or [None])[0]
    return {
        "benchmark": "cold load of the bundled tables, fresh subprocess per repeat",
        "repeats": len(runs),
        "cpu_count": os.cpu_count(),
        "load_average_1min": load,
        "import": stats([r["import_s"] for r in runs]),
        "spaces": spaces,
        "all_tables": tables,
        "all_tables_cpu": stats([r["tables_cpu_s"] for r in runs]),
        "process_total": stats([r["total_s"] for r in runs]),
        "target_s": TARGET_S,
        "meets_target": tables["median_s"] < TARGET_S,
    }


def print_table(summary: dict) -> None:
    ms = lambda s: f"{1000 * s:8.1f}"  # noqa: E731
    print(f"cold load, median of {summary['repeats']} fresh processes (ms)")
    print(f"{'space':<12} {'rows':>6} {'devices':>7} {'load_table':>10} {'genes':>8} {'total':>8}")
    for name, s in summary["spaces"].items():
        print(
            f"{name:<12} {s['rows']:>6} {s['devices']:>7} {ms(s['load_table']['median_s']):>10} "
            f"{ms(s['genes']['median_s'])} {ms(s['total']['median_s'])}"
        )
    t = summary["all_tables"]
    verdict = "OK" if summary["meets_target"] else "OVER TARGET"
    print(
        f"{'all three':<12} {'':>6} {'':>7} {'':>10} {'':>8} {ms(t['median_s'])}"
        f"   (min {ms(t['min_s']).strip()}, target < {1000 * summary['target_s']:.0f}: {verdict})"
    )
    print(
        f"all three, CPU time {ms(summary['all_tables_cpu']['median_s']).strip()} ms "
        f"(wall time inflates on a busy machine: 1-min load average "
        f"{summary['load_average_1min']}, {summary['cpu_count']} CPUs)"
    )
    print(
        f"import client_sdk.spaces {ms(summary['import']['median_s']).strip()} ms; "
        f"whole process {ms(summary['process_total']['median_s']).strip()} ms"
    )


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__.splitlines()[0], json_default=RESULTS / "load_data.json")
    ap.add_argument("--repeat", type=int, default=5, help="fresh processes (default 5)")
    args = ap.parse_args(argv)
    runs = [run_once() for _ in range(max(1, args.repeat))]
    summary = summarise(runs)
    print_table(summary)
    write_json(args.json, summary)
    print(f"wrote {args.json}")
    return 0 if summary["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
