"""Quality benchmark of the latency predictor (writes benchmarks/results/quality.json).

Sections (each a key of the JSON):
* ``proxy_comparison``: LightGBM-per-device vs torch MLP vs a single proxy device (pixel3,
  OneProxy's setting), scored on the HELP *validation* devices only (the choice);
* ``help``: HELP protocol for each space at 10 and 20 samples (HELP references);
* ``references``: random vs suggested vs HELP's list at 10 samples;
* ``samples_curve``: N = 3, 5, 10, 20, 50 random references (HELP split);
* ``leave_family_out``: 10 random samples, 5 seeds;
* ``calibration``: share of true latencies inside the stated 80 % interval;
* ``head_fit_ms``: median wall time of 100 head fits from 10 samples (selection + LOO).

Run: ``OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks.quality [--quick]``.
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np

from benchmarks._cli import RESULTS, parser, write_json
from benchmarks.common import EVAL_CACHE as CACHE
from oracle_server.evaluation import (
    HELP_SPLITS,
    EvalOptions,
    _model_for,
    adapt_device,
    clean_json,
    evaluate_help,
    evaluate_leave_family_out,
)
from oracle_server.predictor import ProxyConfig


def proxy_comparison(space: str, seeds: int) -> dict:
    """Validation-device quality for each proxy variant (10 random samples)."""
    split = HELP_SPLITS[space]
    variants = {
        "lgbm": (ProxyConfig(), split.train),
        "mlp": (ProxyConfig(kind="mlp"), split.train),
        "single_pixel3": (ProxyConfig(), ("pixel3",)),
    }
    out = {}
    for name, (config, basis) in variants.items():
        opts = EvalOptions(space, 10, "random", seeds, 0.2, CACHE, config)
        start = time.perf_counter()
        model, allowed, score = _model_for(opts, basis)
        build_s = time.perf_counter() - start
        val = {
            d: adapt_device(model, d, opts, allowed, score)["spearman"] for d in split.validation
        }
        out[name] = {
            "validation": val,
            "mean": float(np.mean(list(val.values()))),
            "build_s": build_s,
            "basis_devices": list(basis),
        }
    out["chosen"] = max((k for k in out), key=lambda k: out[k]["mean"])
    return out


def reference_comparison(space: str, seeds: int) -> dict:
    out = {}
    for ref in ("random", "suggested", "help"):
        r = evaluate_help(EvalOptions(space, 10, ref, seeds, 0.2, CACHE))
        out[ref] = {
            "validation_mean": float(np.mean(list(r["validation"].values()))),
            "test_mean": r["mean"],
            "validation": r["validation"],
            "test": r["devices"],
        }
    return out


def samples_curve(space: str, seeds: int, ns: tuple[int, ...]) -> dict:
    out = {}
    for n in ns:
        r = evaluate_help(EvalOptions(space, n, "random", seeds, 0.2, CACHE))
        out[str(n)] = {
            "validation_mean": float(np.mean(list(r["validation"].values()))),
            "test_mean": r["mean"],
            "test": r["devices"],
        }
    return out


def calibration(help_result: dict) -> dict:
    det = help_result["details"]
    val = [det[d]["cover80"] for d in help_result["validation"]]
    test = [det[d]["cover80"] for d in help_result["devices"]]
    return {
        "validation_cover80": float(np.mean(val)),
        "test_cover80": float(np.mean(test)),
        "per_device": {d: v["cover80"] for d, v in det.items()},
    }


def head_fit_ms(space: str, fits: int = 100) -> dict:
    opts = EvalOptions(space, 10, "random", 1, 0.2, CACHE)
    model, allowed, _ = _model_for(opts, HELP_SPLITS[space].train)
    table = model.space.table
    y = table.device_column(HELP_SPLITS[space].validation[0])
    rng = np.random.default_rng(0)
    times = []
    for _ in range(fits):
        rows = rng.choice(allowed, 10, replace=False)
        start = time.perf_counter()
        model.fit_head(table.genes[rows], y[rows])
        times.append(1000 * (time.perf_counter() - start))
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90))}


def main() -> None:
    ap = parser(__doc__, json_default=RESULTS / "quality.json", json_aliases=("--out",))
    ap.add_argument("--quick", action="store_true", help="2 seeds, fewer sections")
    ap.add_argument("--spaces", nargs="+", default=["nasbench201", "fbnet", "ofa_mbv3"])
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    seeds = 2 if args.quick else 5
    report: dict = {"seeds": seeds, "spaces": {}}
    for space in args.spaces:
        start = time.perf_counter()
        r: dict = {"help": {}}
        for n in (10, 20):
            r["help"][str(n)] = evaluate_help(EvalOptions(space, n, "help", seeds, 0.2, CACHE))
        r["calibration"] = calibration(r["help"]["10"])
        r["head_fit_ms"] = head_fit_ms(space)
        r["references"] = reference_comparison(space, seeds)
        r["samples_curve"] = samples_curve(space, seeds, (3, 5, 10, 20, 50))
        r["leave_family_out"] = evaluate_leave_family_out(
            EvalOptions(space, 10, "random", seeds, 0.2, CACHE)
        )
        if space != "ofa_mbv3":
            r["proxy_comparison"] = proxy_comparison(space, seeds)
        r["seconds"] = time.perf_counter() - start
        report["spaces"][space] = r
        print(json.dumps(summary(space, r), indent=1))
        write_json(args.json, clean_json(report), indent=1, allow_nan=False)


def summary(space: str, r: dict) -> dict:
    out = {"space": space}
    for n, h in r["help"].items():
        out[f"help_{n}"] = {
            **{d: round(v, 3) for d, v in h["devices"].items()},
            "mean": round(h["mean"], 3),
            "validation": {d: round(v, 3) for d, v in h["validation"].items()},
        }
    out["calibration"] = r["calibration"]
    out["head_fit_ms"] = r["head_fit_ms"]
    out["references"] = {
        k: (round(v["validation_mean"], 3), round(v["test_mean"], 3))
        for k, v in r["references"].items()
    }
    out["samples_curve"] = {
        k: (round(v["validation_mean"], 3), round(v["test_mean"], 3))
        for k, v in r["samples_curve"].items()
    }
    lfo = r["leave_family_out"]
    out["leave_family_out"] = {
        "mean": round(lfo["mean"], 3),
        **{f: round(v["mean"], 3) for f, v in lfo["families"].items()},
    }
    if "proxy_comparison" in r:
        pc = r["proxy_comparison"]
        out["proxy_comparison"] = {k: round(v["mean"], 3) for k, v in pc.items() if k != "chosen"}
    return out


if __name__ == "__main__":
    main()
