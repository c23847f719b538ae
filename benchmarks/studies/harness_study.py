"""Which per-architecture statistic makes the timing harness repeatable? (issue #13, item 7)

Measures the same N architectures in two passes a few seconds/minutes apart, with the old
one-after-the-other harness (``measure_many``: warm-up, 30 repeats, median) and with the
interleaved harness (``measure_interleaved``: R rounds x k runs = the same 30 timed runs per
architecture), and reports the test-retest Spearman between the passes for every
statistic (median, mean, min, 10th/25th percentile), with and without the per-round drift
normalisation, beside the split-half ceiling each interleaved pass estimates on its own.
The old harness is the baseline, measured in the same run. Prints a table, writes JSON.

    python -m benchmarks.studies.harness_study --space fbnet --archs 40 --threads 1 --gap-s 60
"""

from __future__ import annotations

import sys
import time

import numpy as np

from benchmarks._cli import RESULTS, load_average, parser, write_json
from client_sdk.measure.harness import (
    STATISTICS,
    Harness,
    HarnessConfig,
    InterleavedMeasurement,
    reduce_runs,
    spearman,
)
from client_sdk.spaces import get_space


def _median_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.median(np.abs(a - b) / np.minimum(a, b)))


def main() -> int:
    p = parser(__doc__.splitlines()[0], json_default=RESULTS / "studies" / "harness_study.json")
    p.add_argument("--space", default="fbnet")
    p.add_argument("--archs", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--gap-s", type=float, default=30.0, help="pause between the two passes")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    sp = get_space(args.space)
    genes = sp.sample(args.archs, np.random.default_rng(args.seed))
    repeats = args.rounds * args.runs
    seq = Harness(HarnessConfig(warmup=10, repeats=repeats, threads=args.threads, max_remeasure=0))
    passes: dict[str, list] = {"sequential": [], "interleaved": []}
    load: list[list[float]] = []
    t_start = time.perf_counter()
    for k in range(2):
        if k:
            time.sleep(args.gap_s)
        load.append(load_average())
        stats = seq.measure_many(sp, genes, progress=False)
        passes["sequential"].append(np.array([s.samples_ms for s in stats]))
        inter = Harness(
            HarnessConfig(
                warmup=3,
                rounds=args.rounds,
                runs=args.runs,
                round_warmup=1,
                threads=args.threads,
                seed=args.seed + k,
            )
        )
        passes["interleaved"].append(inter.measure_interleaved(sp, genes, progress=False))
        load.append(load_average())
        print(f"pass {k + 1} done at {time.perf_counter() - t_start:.0f}s, load {load[-1]}")

    rows = []
    a_seq, b_seq = passes["sequential"]
    for stat in STATISTICS:
        a, b = reduce_runs(a_seq, stat), reduce_runs(b_seq, stat)
        rows.append(
            {
                "harness": "sequential",
                "statistic": stat,
                "normalised": False,
                "retest_spearman": spearman(a, b),
                "median_rel_diff": _median_rel_diff(a, b),
            }
        )
    ma, mb = passes["interleaved"]
    for normalised in (False, True):
        for stat in STATISTICS:
            pa = InterleavedMeasurement(ma.samples_ms, stat, normalised)
            pb = InterleavedMeasurement(mb.samples_ms, stat, normalised)
            a, b = pa.latency_ms, pb.latency_ms
            rows.append(
                {
                    "harness": "interleaved",
                    "statistic": stat,
                    "normalised": normalised,
                    "retest_spearman": spearman(a, b),
                    "median_rel_diff": _median_rel_diff(a, b),
                    "split_half_a": pa.retest_spearman,
                    "split_half_b": pb.retest_spearman,
                    "drift_a": pa.drift,
                    "drift_b": pb.drift,
                }
            )
    print(
        f"\n{args.space}, {args.archs} archs, {args.threads} thread(s), {repeats} timed runs "
        f"per arch per pass, passes {args.gap_s:.0f}s apart; loadavg {load}"
    )
    print(
        f"{'harness':<12} {'stat':<7} {'norm':<5} {'retest SRCC':>11} {'med rel diff':>12} "
        f"{'split-half A/B':>15} {'drift A/B':>11}"
    )
    for r in rows:
        split = f"{r['split_half_a']:.3f}/{r['split_half_b']:.3f}" if "split_half_a" in r else ""
        drift = f"{r['drift_a']:.2f}/{r['drift_b']:.2f}" if "drift_a" in r else ""
        print(
            f"{r['harness']:<12} {r['statistic']:<7} {r['normalised']!s:<5} "
            f"{r['retest_spearman']:>11.3f} {r['median_rel_diff']:>12.3f} {split:>15} "
            f"{drift:>11}"
        )
    best = max(
        (r for r in rows if r["harness"] == "interleaved"), key=lambda r: r["retest_spearman"]
    )
    print(
        f"best interleaved: {best['statistic']} (normalised={best['normalised']}) "
        f"retest {best['retest_spearman']:.3f}"
    )
    out = {
        "space": args.space,
        "archs": args.archs,
        "threads": args.threads,
        "rounds": args.rounds,
        "runs": args.runs,
        "gap_s": args.gap_s,
        "seconds": time.perf_counter() - t_start,
        "loadavg": load,
        "note": "measured on the shared 2-core dev VM under contention"
        if max(x[0] for x in load) > 1.0
        else "quiet machine (loadavg <= 1)",
        "rows": rows,
        "samples_ms": {
            "sequential": [x.tolist() for x in passes["sequential"]],
            "interleaved": [m.samples_ms.tolist() for m in passes["interleaved"]],
        },
    }
    write_json(args.json, out, indent=1)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
