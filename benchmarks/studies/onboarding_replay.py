"""Replay recorded onboardings of this CPU through the current head selection (offline).

``benchmarks.onboarding`` records, per (space, threads) row, the 10 reference
architectures and their measured latencies, and the 100 validation architectures with
theirs. This script refits the device's head on those references with the code as it is
now (the same default proxy as the server's) and scores it on the recorded validation
latencies, beside FLOPs on the same rows and the ranking the benchmark served then. No
measuring: a change to the heads is judged on real measurements of hardware unlike the
basis devices in seconds.

These rows were benchmark results when they were recorded; replaying them is development
data from then on. A change chosen with this replay must be confirmed on a fresh
``python -m benchmarks.onboarding --seed S`` run with a seed no replayed file used.

    python -m benchmarks.studies.onboarding_replay benchmarks/results/studies/*.json
    python -m benchmarks.studies.onboarding_replay --exclude powerlaw FILES   # an ablation
    python -m benchmarks.studies.onboarding_replay --first 10 FILES   # the references alone
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from benchmarks._cli import ROOT, load_average, parser, write_json
from benchmarks.common import fit_candidates
from oracle_server.evaluation import head_inputs
from oracle_server.predictor.heads import spearman
from oracle_server.predictor.layer_level import naive_nnls
from oracle_server.predictor.model import build_model

Z80 = 1.2815515655446004  # two-sided 80 % interval of a normal, in sigmas
#: issue 26's target on this CPU (FBNet, OFA): oracle >= 0.90 and >= the naive fit + 0.02
TARGET, TARGET_MARGIN = 0.90, 0.02


def replay_row(model, row: dict, kinds: tuple[str, ...], first: int | None = None) -> dict:
    """Refit on the row's registered archs (only the ``first`` of them if given: e.g. the
    references alone of a run that registered the retest archs too)."""
    sp = model.space
    refs = sp.parse_many(row["reference_archs"][:first])
    val = sp.parse_many(row["validation_archs"])
    y_val = np.asarray(row["validation_latency_ms"], dtype=np.float64)
    y_ref = np.asarray(row["reference_latency_ms"][:first], dtype=np.float64)
    head = model.fit_head(refs, y_ref, kinds=kinds)
    on_val = head_inputs(model, val)
    v_feats, v_basis, v_desc = on_val
    prediction = head.predict(v_basis, v_feats, v_desc)
    pred = prediction.latency_ms
    # absolute accuracy, also after dividing out the device's speed change between the first
    # pass and the validation pass (the session check's latency ratio, when recorded)
    scale = float(row.get("session_scale", float("nan")))
    sig = np.maximum(prediction.log_sigma, 1e-12)
    absolute = {"cover80": float(np.mean(np.abs(np.log(y_val / pred)) / sig < Z80))}
    if np.isfinite(scale):
        absolute.update(
            {
                "session_scale": scale,
                "within10_scaled": float(np.mean(np.abs(pred * scale / y_val - 1.0) < 0.1)),
                "cover80_scaled": float(np.mean(np.abs(np.log(y_val / scale / pred)) / sig < Z80)),
            }
        )
    # every candidate alone, fit on the same references (diagnosis: what the rule chose from)
    on_refs = head_inputs(model, refs)
    alone = {
        k: spearman(pred_log, y_val)
        for k, (_, pred_log) in fit_candidates(model, kinds, on_refs, y_ref, on_val).items()
    }
    # issue 26's naive baseline: nnls on the six base descriptors of the same samples
    naive = naive_nnls(on_refs[2][:, :6], y_ref).predict_ms(v_desc[:, :6])
    oracle = spearman(pred, y_val)
    naive_rho = spearman(naive, y_val)
    return {
        "samples": len(refs),
        **absolute,
        "candidates": alone,
        "seed": row.get("seed"),
        "naive": naive_rho,
        "target_met": bool(oracle >= TARGET and oracle >= naive_rho + TARGET_MARGIN),
        "expected": head.expected_spearman,
        "flops_loo": head.flops_spearman,
        "space": row["space"],
        "threads": row["threads"],
        "oracle": oracle,
        "recorded": row["oracle_spearman"],
        "flops": spearman(sp.flops(val), y_val),
        "head": head.kind,
        "members": [m["kind"] for m in head.params.get("members", [])] or [head.kind],
        "within10": float(np.mean(np.abs(pred / y_val - 1.0) < 0.1)),
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--exclude", default="", help="comma-separated head kinds left out")
    p.add_argument("--cache-dir", type=Path, default=ROOT / ".oracle" / "bench-cache")
    p.add_argument(
        "--first",
        type=int,
        default=None,
        help="refit on only the first N registered archs of each row (e.g. 10: "
        "the references without the retest archs registered with them)",
    )
    p.add_argument(
        "--candidates",
        action="store_true",
        help="also each candidate head alone (fit on the same references)",
    )
    a = p.parse_args()
    start = time.perf_counter()
    excluded = {k for k in a.exclude.split(",") if k}
    models: dict = {}
    rows = []
    for f in a.files:
        data = json.loads(f.read_text())
        for row in data["rows"]:
            if "reference_archs" not in row:
                continue
            row.setdefault("seed", data.get("seed"))
            space = row["space"]
            if space not in models:
                models[space] = build_model(space, cache_dir=a.cache_dir)
            kinds = tuple(k for k in models[space].head_kinds if k not in excluded)
            rows.append({"file": f.name, **replay_row(models[space], row, kinds, a.first)})
    print(
        "+-10% / cover80: absolute accuracy and 80 % interval coverage on the validation set; "
        "'scaled': after dividing out the session check's latency ratio"
    )
    print(
        f"{'file':34s} {'space':12s} {'thr':>3s} {'seed':>4s} {'oracle':>7s} {'naive':>6s} "
        f"{'then':>7s} {'FLOPs':>7s} {'+-10%':>6s} {'scaled':>6s} {'cov80':>6s} {'scaled':>6s}"
        "  members"
    )
    for r in rows:
        print(
            f"{r['file']:34s} {r['space']:12s} {r['threads']:3d} {r['seed']!s:>4s} "
            f"{r['oracle']:7.3f} {r['naive']:6.3f} "
            f"{r['recorded']:7.3f} {r['flops']:7.3f} {r['within10']:6.2f} "
            f"{r.get('within10_scaled', float('nan')):6.2f} {r['cover80']:6.2f} "
            f"{r.get('cover80_scaled', float('nan')):6.2f}  "
            f"{'+'.join(r['members'])}"
        )
        if a.candidates:
            print(
                " " * 35
                + f"LOO expected {r['expected']:.3f}, FLOPs LOO {r['flops_loo']:.3f}; "
                + ", ".join(f"{k} {v:.3f}" for k, v in r["candidates"].items())
            )
    mean = {}
    for space in dict.fromkeys(r["space"] for r in rows):
        sel = [r for r in rows if r["space"] == space]
        keys = (
            "oracle",
            "naive",
            "recorded",
            "flops",
            "within10",
            "cover80",
            "within10_scaled",
            "cover80_scaled",
        )
        mean[space] = {
            k: float(np.mean([r[k] for r in sel])) for k in keys if all(k in r for r in sel)
        }
        print(
            f"mean {space:12s} ({len(sel)} rows): "
            + ", ".join(f"{k} {v:.3f}" for k, v in mean[space].items())
        )
    print(
        f"per (space, threads): mean oracle / naive / FLOPs; rows with oracle >= {TARGET} "
        f"and >= naive + {TARGET_MARGIN}"
    )
    for key in dict.fromkeys((r["space"], r["threads"]) for r in rows):
        sel = [r for r in rows if (r["space"], r["threads"]) == key]
        m = {k: float(np.mean([r[k] for r in sel])) for k in ("oracle", "naive", "flops")}
        met = sum(r["target_met"] for r in sel)
        mean[f"{key[0]}-{key[1]}t"] = {**m, "target_met": met, "rows": len(sel)}
        print(
            f"  {key[0]:12s} {key[1]}t ({len(sel)} rows): {m['oracle']:.3f} / "
            f"{m['naive']:.3f} / {m['flops']:.3f}; target met {met} of {len(sel)}"
        )
    if a.json:
        write_json(
            a.json,
            {
                "excluded": sorted(excluded),
                "rows": rows,
                "mean": mean,
                "seconds": time.perf_counter() - start,
                "loadavg": load_average(),
            },
            indent=1,
        )


if __name__ == "__main__":
    main()
