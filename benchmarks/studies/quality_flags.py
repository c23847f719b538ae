"""Replay recorded onboardings of this CPU through the current head selection and ask: when
the served ranking lost to FLOPs on the 100 fresh validation archs, did the device's own
samples flag it LOW (issue 27, "never silently worse than FLOPs")?

Each recorded row (``benchmarks/onboarding.py`` writes the registered archs with their
measured latencies and the validation archs with theirs) is refit offline with the code as
it is now (``LatencyModel.fit_head``, the server's selection) and scored on its validation
latencies. Per row: the served head's validation Spearman, FLOPs' on the same archs, the
leave-one-out estimate, FLOPs' leave-one-out, ``beats_flops`` (the share of bootstrap
resamples in which the head ranks the samples better than FLOPs) and the quality verdict.
Rows repeated across files (same space, threads and references) count once. These rows were
used to choose the quality rule (``selection.QUALITY_SPEARMAN``, ``BEATS_FLOPS_CONFIDENCE``):
a fresh ``benchmarks.onboarding`` run with a new seed is the confirmation.

    python -m benchmarks.studies.quality_flags \\
        [--json benchmarks/results/studies/quality_flags.json] [FILES ...]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks._cli import RESULTS, ROOT, finish, parser, print_table
from benchmarks.onboarding import flops_verdict
from client_sdk.measure.onboard_pipeline import VALIDATION_FLOPS_MARGIN
from client_sdk.stats import spearman
from oracle_server.evaluation import predict_inputs
from oracle_server.predictor.model import build_model

#: the recorded onboardings with their measurements (current runs and the replay inputs)
RECORDED = (
    "onboarding.json",
    "onboarding_seed171.json",
    "onboarding_defined_spaces.json",
    "onboarding_onnxruntime.json",
    "onboarding_seeds131_137_139.json",
    "onboarding_seeds37_41_43.json",
    "onboarding_seeds71_73_79.json",
    "studies/onboarding_seed11.json",
    "studies/onboarding_fbnet_seed13.json",
    "studies/onboarding_fbnet_seed19.json",
    "studies/onboarding_seeds23_29_31.json",
)


def replay(files: list[Path], cache_dir: Path) -> list[dict]:
    models: dict = {}
    seen: set = set()
    rows = []
    for f in files:
        for row in json.loads(f.read_text()).get("rows", []):
            if "reference_archs" not in row or not row.get("validation_archs"):
                continue
            key = (row["space"], row.get("threads"), tuple(row["reference_archs"][:5]))
            if key in seen:
                continue
            seen.add(key)
            if row["space"] not in models:
                models[row["space"]] = build_model(row["space"], cache_dir=cache_dir)
            model = models[row["space"]]
            sp = model.space
            refs, val = (
                sp.parse_many(row["reference_archs"]),
                sp.parse_many(row["validation_archs"]),
            )
            y_val = np.asarray(row["validation_latency_ms"], dtype=np.float64)
            head = model.fit_head(refs, np.asarray(row["reference_latency_ms"], dtype=np.float64))
            served = spearman(head.predict(*predict_inputs(model, val)).latency_ms, y_val)
            flops = spearman(sp.flops(val), y_val)
            # the device as the report states it: the session check's later pass added
            # (the first len(refs) session archs are the registered ones, same order)
            later = np.asarray(row.get("session_latency_ms") or [], dtype=np.float64)
            after = head
            if len(later) >= len(refs):
                y_ref = np.asarray(row["reference_latency_ms"], dtype=np.float64)
                after = model.fit_head(np.concatenate([refs, refs]),
                                       np.concatenate([y_ref, later[: len(refs)]]))
            rows.append(
                {
                    "file": f.name,
                    "space": row["space"],
                    "threads": row.get("threads"),
                    "runtime": row.get("runtime", "torch"),
                    "samples": len(refs),
                    "served": served,
                    "flops": flops,
                    "expected": head.expected_spearman,
                    "flops_loo": head.flops_spearman,
                    "beats_flops": head.beats_flops,
                    "quality": head.quality,
                    "head": head.kind,
                    **flops_verdict(served, flops, head.quality),
                    "session_retest": row.get("session_retest", float("nan")),
                    "quality_reported": after.quality,
                    "silently_worse_reported": flops_verdict(
                        served, flops, after.quality)["silently_worse"],
                }
            )
    return rows


def main() -> int:
    p = parser(__doc__.splitlines()[0], json_default=RESULTS / "studies" / "quality_flags.json")
    p.add_argument(
        "files",
        nargs="*",
        type=Path,
        help="recorded onboarding JSONs (default: the committed ones)",
    )
    p.add_argument("--cache-dir", type=Path, default=ROOT / ".oracle" / "bench-cache")
    a = p.parse_args()
    files = a.files or [RESULTS / f for f in RECORDED]
    rows = replay(files, a.cache_dir)
    print_table(
        [
            "file",
            "space",
            "thr",
            "n",
            "served",
            "FLOPs",
            "LOO",
            "FLOPs LOO",
            "beats",
            "quality",
            "verdict",
            "between",
            "reported",
        ],
        [
            [
                r["file"][:30],
                r["space"],
                r["threads"],
                r["samples"],
                r["served"],
                r["flops"],
                r["expected"],
                r["flops_loo"],
                r["beats_flops"],
                r["quality"],
                "SILENT"
                if r["silently_worse"]
                else ("worse, LOW" if r["worse_than_flops"] else ""),
                r["session_retest"],
                r["quality_reported"]
                + (" SILENT" if r["silently_worse_reported"] else ""),
            ]
            for r in rows
        ],
    )
    worse = [r for r in rows if r["worse_than_flops"]]
    summary = {
        "rows": len(rows),
        "worse_than_flops": len(worse),
        "silently_worse": sum(r["silently_worse"] for r in rows),
        "flagged_low": sum(r["quality"] == "low" for r in rows),
        "silently_worse_as_reported": sum(r["silently_worse_reported"] for r in rows),
        "flagged_low_as_reported": sum(r["quality_reported"] == "low" for r in rows),
        "silently_worse_with_30_samples": sum(
            r["silently_worse"] for r in rows if r["samples"] >= 30
        ),
    }
    print(
        f"\n{summary['rows']} rows; worse than FLOPs by > {VALIDATION_FLOPS_MARGIN}: "
        f"{summary['worse_than_flops']},"
        f" of them not flagged LOW: {summary['silently_worse']} "
        f"({summary['silently_worse_with_30_samples']} with >= 30 samples); "
        f"flagged LOW in all: {summary['flagged_low']}; as reported (after the session "
        f"check's later pass): {summary['silently_worse_as_reported']} not flagged, "
        f"{summary['flagged_low_as_reported']} LOW"
    )
    return finish(
        a.json,
        {
            "margin": VALIDATION_FLOPS_MARGIN,
            "files": [str(f) for f in files],
            "summary": summary,
            "rows": rows,
        },
        announce=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
