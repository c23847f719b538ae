"""Which harness defaults make a measurement repeatable between sessions? (issue #27, item 3)

For each configuration (runtime torch eager or ONNX Runtime, 1 or 2 threads, and
one-factor-at-a-time variants of the onboarding default) and each space, the SAME ``--archs``
architectures (drawn with ``--seed``) are measured in two **separate sessions**: two fresh
worker processes (``--pass-worker``), ``--gap-s`` seconds apart, each timing them with
``Harness.measure_interleaved`` and writing the raw ``(archs, rounds, runs)`` timings to a
temporary ``.npz``. From the two passes' raw timings the study reports, per configuration
and space:

* the **between-session retest**: Spearman between the passes' latencies, for every
  statistic (median, mean, min, p10, p25; drift-normalised per round as the harness does),
  and for the median without the normalisation (``raw``);
* the **within-session** retest and ceiling each pass estimates on its own (split halves,
  Spearman-Brown; what onboarding reports) and each pass's drift and median CV;
* the between-session retest of **fewer rounds**, from the first k rounds of the same raw
  timings (a cheaper measurement, not measured separately);
* the latency ratio between the passes, each pass's wall seconds (the worker process,
  start to end; ``export_s`` of them spent exporting ONNX files, outside any timed run) and
  the load average before each pass.

Configurations are named ``RT-T[-VARIANT]``: ``RT`` ``torch`` or ``ort``, ``T`` threads, and
the variant, one change to the default (``HarnessConfig()``: 10 warm-up runs, 6 rounds x 5
runs, 1 untimed run per visit, median):

* ``pin``: the process pinned to the last T CPUs it may use (``pin_cpus``);
* ``ftz``: float32 denormals flushed to zero (``flush_denormal``);
* ``warm0``: no warm-up runs after building (``warmup=0``);
* ``rwarm0``: no untimed run per visit (``round_warmup=0``);
* ``r10x3`` / ``r3x10``: the same 30 timed runs as 10 rounds x 3 runs or 3 rounds x 10.

**Process isolation per architecture** (every architecture timed in a fresh process) is
left out: a process costs ~2 s here (python, torch, the network's build) before its first
timed run, ~100 s per pass of 50 architectures on top of ~40 s of measuring; and it cannot
interleave: an architecture's runs would all fall in one process's few seconds, the
one-after-the-other timing that ``harness_study.json`` found to retest at 0.28-0.58 against
0.85-0.96 interleaved. Re-visiting each architecture in a fresh process per round would
cost rounds x archs process starts (300 for 50 archs). The isolation this study does
measure is per *session*: the two passes are separate processes, so their agreement
includes everything a new process changes (allocator state, thread pools, memory layout).

    python -m benchmarks.studies.harness_defaults --spaces fbnet ofa_mbv3 --configs 'torch-1*' \\
        --archs 50 --gap-s 30

``--configs`` takes names or shell patterns, comma-separated (default: all 28); ``--spaces``
defaults to every shipped space. Progress lines (which configuration and pass, ETA) go to
stderr; the table to stdout; the JSON to ``--json``. ``--keep-raw DIR`` keeps the passes'
``.npz`` files (the JSON holds the analysis only).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._cli import RESULTS, load_average, parser, print_table, write_json
from client_sdk.measure.measurement import STATISTICS, InterleavedMeasurement, spearman

#: runtime prefix of a configuration name -> ``HarnessConfig.runtime``
RUNTIMES = {"torch": "torch", "ort": "onnxruntime"}
THREADS = (1, 2)
#: one change each to the default (``HarnessConfig()``); "pin" is resolved per machine
VARIANTS: dict[str, dict[str, Any]] = {
    "": {},
    "pin": {"pin": True},
    "ftz": {"flush_denormal": True},
    "warm0": {"warmup": 0},
    "rwarm0": {"round_warmup": 0},
    "r10x3": {"rounds": 10, "runs": 3},
    "r3x10": {"rounds": 3, "runs": 10},
}
DEFAULT_SPACES = ("nasbench201", "fbnet", "ofa_mbv3", "mobilenetv2", "proxyless")
HEADLINE = "median"  # the statistic of the table's sub-columns (first-k rounds, within)


def config_names() -> list[str]:
    return [
        f"{rt}-{t}" + (f"-{v}" if v else "") for rt in RUNTIMES for t in THREADS for v in VARIANTS
    ]


def config_spec(name: str) -> dict[str, Any]:
    """The ``HarnessConfig`` keywords of configuration ``name`` (``pin``: True, not CPUs)."""
    rt, _, rest = name.partition("-")
    threads, _, variant = rest.partition("-")
    if rt not in RUNTIMES or not threads.isdigit() or variant not in VARIANTS:
        raise ValueError(f"unknown configuration '{name}' (have {', '.join(config_names())})")
    return {"runtime": RUNTIMES[rt], "threads": int(threads), **VARIANTS[variant]}


def base_of(name: str) -> str:
    """The default configuration a variant changes one thing of (``torch-1-pin`` -> ``torch-1``)."""
    return "-".join(name.split("-")[:2])


def select_configs(patterns: str | None) -> list[str]:
    """Configuration names matching ``patterns`` (comma-separated names or shell patterns)."""
    names = config_names()
    if not patterns:
        return names
    chosen: list[str] = []
    for pat in filter(None, (p.strip() for p in patterns.split(","))):
        hits = [n for n in names if fnmatch.fnmatchcase(n, pat)]
        if not hits:
            raise SystemExit(f"--configs: nothing matches '{pat}' (have {', '.join(names)})")
        chosen += [n for n in hits if n not in chosen]
    return chosen


# --- analysis (pure numpy: no timing)


def rounds_subsets(rounds: int) -> list[int]:
    """The fewer-rounds prefixes to score: 2, 3 and half the rounds, below ``rounds``."""
    return sorted(k for k in {2, 3, rounds // 2} if 2 <= k < rounds)


def _within(m: InterleavedMeasurement) -> dict[str, float]:
    return {
        "retest": m.retest_spearman,
        "ceiling": m.ceiling,
        "split_half": m.split_half_spearman,
        "drift": m.drift,
        "cv_median": float(np.median(m.cv)),
    }


def compare_passes(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Between-session and within-session figures of two passes' raw timings
    ``(archs, rounds, runs)`` of the same architectures (see the module docstring)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(
            f"two passes of the same shape (archs, rounds, runs), got {a.shape}, {b.shape}"
        )
    n, rounds, runs = a.shape

    def between(x: np.ndarray, y: np.ndarray, stat: str, normalised: bool = True) -> float:
        mx = InterleavedMeasurement(x, stat, normalised).latency_ms
        my = InterleavedMeasurement(y, stat, normalised).latency_ms
        return spearman(mx, my)

    ma, mb = (InterleavedMeasurement(x, HEADLINE) for x in (a, b))
    return {
        "archs": n,
        "rounds": rounds,
        "runs": runs,
        "between": {stat: between(a, b, stat) for stat in STATISTICS},
        "between_raw_median": between(a, b, "median", normalised=False),
        "first_rounds": {
            str(k): {stat: between(a[:, :k], b[:, :k], stat) for stat in STATISTICS}
            for k in rounds_subsets(rounds)
        },
        "within": {"A": _within(ma), "B": _within(mb)},
        "scale_b_over_a": float(np.median(mb.latency_ms / ma.latency_ms)),
    }


def summarise(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration, means over the spaces: between-session retest (every statistic),
    its difference from the configuration's default (``base_of``) on the same spaces,
    within-session retest, wall seconds per pass."""
    ok = [c for c in cells if "analysis" in c]
    by_key = {(c["space"], c["config"]): c["analysis"] for c in ok}
    out = []
    for name in dict.fromkeys(c["config"] for c in ok):
        rows = [c for c in ok if c["config"] == name]
        row: dict[str, Any] = {"config": name, "spaces": len(rows)}
        for stat in STATISTICS:
            row[f"between_{stat}"] = float(np.mean([c["analysis"]["between"][stat] for c in rows]))
        within = [c["analysis"]["within"][p]["retest"] for c in rows for p in "AB"]
        row["within"] = float(np.mean(within))
        row["wall_s"] = float(np.mean([p["wall_s"] for c in rows for p in c["passes"]]))
        base = base_of(name)
        pairs = [
            (c["analysis"]["between"][HEADLINE], by_key[(c["space"], base)]["between"][HEADLINE])
            for c in rows
            if base != name and (c["space"], base) in by_key
        ]
        row["delta_vs_default"] = float(np.mean([x - y for x, y in pairs])) if pairs else None
        out.append(row)
    return out


def table_rows(cells: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """The printed table: one row per configuration x space."""
    headers = ["space", "config", "RxK", *(f"btw {s}" for s in STATISTICS), "raw med",
               "first-k med", "within A/B", "scale", "wall A/B s", "load A/B"]  # fmt: skip
    rows: list[list[Any]] = []
    for c in cells:
        if "analysis" not in c:
            rows.append([c["space"], c["config"], "error: " + c.get("error", "?")[:60]])
            continue
        an = c["analysis"]
        first = "  ".join(f"{k}:{v[HEADLINE]:.3f}" for k, v in an["first_rounds"].items())
        wa, wb = (an["within"][p]["retest"] for p in "AB")
        load = [p["load_before"][0] if p["load_before"] else float("nan") for p in c["passes"]]
        rows.append(
            [c["space"], c["config"], f"{an['rounds']}x{an['runs']}",
             *(an["between"][s] for s in STATISTICS), an["between_raw_median"], first or "-",
             f"{wa:.3f}/{wb:.3f}", an["scale_b_over_a"],
             "/".join(f"{p['wall_s']:.0f}" for p in c["passes"]),
             "/".join(f"{x:.1f}" for x in load)]
        )  # fmt: skip
    return headers, rows


# --- one pass in a fresh process


def worker(args: argparse.Namespace) -> int:
    """``--pass-worker``: measure the space's ``--archs`` archs once, write the raw timings."""
    from client_sdk.measure.harness import Harness, HarnessConfig
    from client_sdk.measure.timing_env import allowed_cpus
    from client_sdk.spaces import get_space

    t0 = time.perf_counter()
    spec = config_spec(args.configs)  # one name: the parent passes it
    if spec.pop("pin", False):
        spec["pin_cpus"] = tuple(sorted(allowed_cpus())[-spec["threads"] :])
    cfg = HarnessConfig(seed=args.seed + args.pass_index, onnx_cache=args.onnx_cache, **spec)
    sp = get_space(args.space)
    genes = sp.sample(args.archs, args.seed)
    harness = Harness(cfg)
    t1 = time.perf_counter()
    m = harness.measure_interleaved(sp, genes, progress=False, desc=args.configs)
    t2 = time.perf_counter()
    ort = harness.ort_builder.stats() if harness.ort_builder is not None else {}
    meta = {
        "config": {k: v for k, v in asdict(cfg).items() if k != "onnx_cache"},
        "measure_s": t2 - t1,
        "setup_s": t1 - t0,
        "export_s": float(ort.get("onnx_export_s", 0.0)),
        "onnx_exported": ort.get("onnx_exported"),
    }
    np.savez(args.out, samples_ms=m.samples_ms, genes=genes, meta=np.array(json.dumps(meta)))
    return 0


def run_pass(
    space: str, config: str, index: int, args: argparse.Namespace, out: Path
) -> dict[str, Any]:
    """One pass in a fresh worker process: its meta, wall seconds and load before it."""
    cmd = [
        sys.executable, "-m", "benchmarks.studies.harness_defaults", "--pass-worker",
        "--space", space, "--configs", config, "--archs", str(args.archs),
        "--seed", str(args.seed), "--pass-index", str(index), "--out", str(out),
    ]  # fmt: skip
    if args.onnx_cache:
        cmd += ["--onnx-cache", args.onnx_cache]
    load = load_average()
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout_s, check=False)
    wall = time.perf_counter() - t0
    if run.returncode != 0 or not out.is_file():
        tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"pass worker exited {run.returncode}: {' | '.join(tail)}")
    with np.load(out) as z:
        meta = json.loads(str(z["meta"]))
    return {"pass": "AB"[index], "wall_s": wall, "load_before": load, **meta}


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as z:
        return z["samples_ms"], z["genes"]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _eta(done_s: list[float], passes_left: int, gaps_left: int, gap_s: float) -> str:
    if not done_s:
        return "ETA ?"
    left = float(np.mean(done_s)) * passes_left + gaps_left * gap_s
    return f"ETA {left / 60:.0f} min" if left >= 90 else f"ETA {left:.0f} s"


def study(args: argparse.Namespace, spaces: list[str], configs: list[str]) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="harness_defaults_"))
    keep = Path(args.keep_raw) if args.keep_raw else None
    cells: list[dict[str, Any]] = []
    durations: list[float] = []
    total = len(spaces) * len(configs)
    t_start = time.perf_counter()
    result: dict[str, Any] = {}
    try:
        for i, (space, config) in enumerate((s, c) for s in spaces for c in configs):
            cell: dict[str, Any] = {"space": space, "config": config, "passes": []}
            files = [tmp / f"{space}__{config}__{p}.npz" for p in "AB"]
            try:
                for k in range(2):
                    if k:
                        time.sleep(args.gap_s)
                    left = 2 * (total - i) - k
                    _log(
                        f"[{i + 1}/{total}] {space} {config} pass {'AB'[k]} "
                        f"(load {load_average()}), "
                        f"{_eta(durations, left, total - i - 1 + (1 - k), args.gap_s)}"
                    )
                    cell["passes"].append(run_pass(space, config, k, args, files[k]))
                    durations.append(cell["passes"][-1]["wall_s"])
                raw, genes = zip(*(_load(f) for f in files), strict=True)
                if not np.array_equal(*genes):
                    raise RuntimeError("the two passes measured different architectures")
                cell["analysis"] = compare_passes(*raw)
                an = cell["analysis"]
                _log(
                    f"    between-session retest (median) {an['between']['median']:.3f}, within "
                    f"{an['within']['A']['retest']:.3f}/{an['within']['B']['retest']:.3f}"
                )
                if keep:
                    keep.mkdir(parents=True, exist_ok=True)
                    for f in files:
                        shutil.copy2(f, keep / f.name)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                cell["error"] = str(exc)
                _log(f"    failed: {exc}")
            cells.append(cell)
            result = {
                "archs": args.archs, "seed": args.seed, "gap_s": args.gap_s,
                "spaces": spaces, "configs": {c: config_spec(c) for c in configs},
                "statistics": list(STATISTICS), "seconds": time.perf_counter() - t_start,
                "cells": cells, "summary": summarise(cells),
            }  # fmt: skip
            if args.json:  # after every cell: a long run keeps what it measured
                write_json(args.json, result, indent=1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = parser(
        __doc__.splitlines()[0],
        json_default=RESULTS / "studies" / "harness_defaults.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--spaces", nargs="+", default=list(DEFAULT_SPACES))
    p.add_argument("--configs", default=None, help="names or patterns, a,b,... (default all)")
    p.add_argument("--archs", type=int, default=50, help="architectures per pass")
    p.add_argument("--gap-s", type=float, default=30.0, help="pause between the two passes")
    p.add_argument("--seed", type=int, default=0, help="draw of the architectures")
    p.add_argument("--onnx-cache", default=None, help="ONNX files (default: the SDK's cache)")
    p.add_argument("--keep-raw", default=None, metavar="DIR", help="keep the passes' .npz")
    p.add_argument("--timeout-s", type=float, default=3600.0, help="per pass")
    p.add_argument("--pass-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--space", help=argparse.SUPPRESS)
    p.add_argument("--pass-index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.pass_worker:
        return worker(args)
    if args.archs < 3:
        raise SystemExit("--archs must be >= 3 (a Spearman needs three points)")
    configs = select_configs(args.configs)
    result = study(args, list(args.spaces), configs)
    headers, rows = table_rows(result["cells"])
    print(
        f"{args.archs} archs (seed {args.seed}) per space, two sessions {args.gap_s:.0f} s "
        f"apart per configuration; between-session Spearman per statistic; first-k med: "
        f"the median of the first k rounds only; within: each pass's own retest"
    )
    print_table(headers, rows)
    summary = result["summary"]
    if summary:
        print()
        print_table(
            ["config", "spaces", *(f"btw {s}" for s in STATISTICS), "within", "Δ default",
             "wall s"],
            [[r["config"], r["spaces"], *(r[f"between_{s}"] for s in STATISTICS), r["within"],
              "-" if r["delta_vs_default"] is None else r["delta_vs_default"], r["wall_s"]]
             for r in summary],
        )  # fmt: skip
    if args.json:
        print(f"wrote {args.json}")
    return 0 if all("analysis" in c for c in result["cells"]) else 1


if __name__ == "__main__":
    sys.exit(main())
