"""Does averaging two measurement passes make a device's head predict a later pass better?

On a device whose ranking changes between passes (the onboarding session check shows it on
this shared VM), a head fit to one pass learns that pass's regime. This measures, per seed
and thread count, the onboarding set S (10 suggested references + 20 random archs) in pass A,
again in pass B a little later, then 100 fresh validation archs together with S in pass C,
and scores heads fit (in-process, the server's default proxy) on A, on B, on the per-arch
mean of A and B (B rescaled to A by the median ratio), and on A and B registered as repeats
(what the onboarding's session check does: the registry's per-architecture median, the
interval widened by the repeats' spread) against pass C's validation latencies, beside
FLOPs: Spearman, 80 % interval coverage and the share within +-10 %. Between-pass Spearman
of S: A-B, A-C, B-C.

    python -m benchmarks.studies.two_pass --space fbnet --threads 1 2 --seeds 51 53 55
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._cli import RESULTS, ROOT, load_average, parser, write_json
from client_sdk.measure.harness import Harness, HarnessConfig
from oracle_server.evaluation import head_inputs
from oracle_server.predictor.heads import spearman
from oracle_server.predictor.model import build_model

Z80 = 1.2815515655446004  # two-sided 80 % interval of a normal, in sigmas


def _predict(model, genes: np.ndarray, y: np.ndarray, on_val: tuple):
    """The head fit on ``(genes, y)``, predicting ``on_val = head_inputs(model, val)``."""
    feats, basis, desc = on_val
    return model.fit_head(genes, y).predict(basis, feats, desc)


def _score(model, genes: np.ndarray, y: np.ndarray, on_val: tuple, y_val: np.ndarray) -> float:
    """Spearman on the validation set of the head fit on ``(genes, y)``."""
    return spearman(_predict(model, genes, y, on_val).latency_ms, y_val)


def _absolute(
    model, genes: np.ndarray, y: np.ndarray, on_val: tuple, y_val: np.ndarray
) -> tuple[float, float]:
    """(80 % interval coverage, share within +-10 %) on the validation set of the head fit
    on ``(genes, y)`` (repeated genes: the registry's median fit and widened interval)."""
    p = _predict(model, genes, y, on_val)
    cover = float(np.mean(np.abs(np.log(y_val / p.latency_ms)) < Z80 * p.log_sigma))
    return cover, float(np.mean(np.abs(p.latency_ms / y_val - 1.0) < 0.1))


def main() -> int:
    p = parser(__doc__.splitlines()[0], json_default=RESULTS / "studies" / "two_pass.json")
    p.add_argument("--space", default="fbnet")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seeds", type=int, nargs="+", default=[51, 53, 55])
    p.add_argument("--validate", type=int, default=100)
    p.add_argument("--gap-s", type=float, default=30.0, help="pause between passes A and B")
    p.add_argument("--cache-dir", type=Path, default=ROOT / ".oracle" / "cache")
    a = p.parse_args()
    model = build_model(a.space, cache_dir=a.cache_dir)
    sp = model.space
    rows = []
    for seed in a.seeds:
        for threads in a.threads:
            harness = Harness(HarnessConfig(threads=threads, seed=seed))
            refs = model.suggest_references(10, seed=seed)
            s = np.concatenate([refs, sp.sample(20, np.random.default_rng(seed + 2))])
            val = sp.sample(a.validate, np.random.default_rng(seed + 1))
            t0 = time.perf_counter()
            pass_a = harness.measure_interleaved(sp, s).latency_ms
            time.sleep(a.gap_s)
            pass_b = harness.measure_interleaved(sp, s).latency_ms
            time.sleep(a.gap_s)
            c = harness.measure_interleaved(sp, np.concatenate([val, s]))
            y_val, pass_c = c.latency_ms[: len(val)], c.latency_ms[len(val) :]
            scale = float(np.median(pass_b / pass_a))
            mean_ab = 0.5 * (pass_a + pass_b / scale)
            on_val = head_inputs(model, val)  # once per row: every head predicts the same

            def score(y_fit: np.ndarray, n: int = len(s), s=s, on_val=on_val, y_val=y_val) -> float:
                return _score(model, s[:n], y_fit[:n], on_val, y_val)

            cover_a, within_a = _absolute(model, s, pass_a, on_val, y_val)
            both = np.concatenate([s, s])
            cover_ab, within_ab = _absolute(model, both, np.r_[pass_a, pass_b], on_val, y_val)
            row = {
                "seed": seed,
                "threads": threads,
                "cover80_a": cover_a,
                "cover80_a_and_b_repeats": cover_ab,
                "within10_a": within_a,
                "within10_a_and_b_repeats": within_ab,
                "head_a_and_b_repeats": _score(model, both, np.r_[pass_a, pass_b], on_val, y_val),
                "head_a": score(pass_a),
                "head_b": score(pass_b),
                "head_mean_ab": score(mean_ab),
                "head_a_refs_only": score(pass_a, 10),
                "head_mean_ab_refs_only": score(mean_ab, 10),
                "flops": spearman(sp.flops(val), y_val),
                "s_ab": spearman(pass_a, pass_b),
                "s_ac": spearman(pass_a, pass_c),
                "s_bc": spearman(pass_b, pass_c),
                "scale_ab": scale,
                "validation_retest": c.retest_spearman,
                "seconds": time.perf_counter() - t0,
                "loadavg": load_average(),
            }
            rows.append(row)
            print(
                " ".join(
                    f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in row.items()
                    if k != "loadavg"
                ),
                flush=True,
            )
            write_json(a.json, {"space": a.space, "rows": rows}, indent=1)
    keys = (
        "head_a",
        "head_b",
        "head_mean_ab",
        "head_a_and_b_repeats",
        "head_a_refs_only",
        "head_mean_ab_refs_only",
        "flops",
        "s_ab",
        "s_ac",
        "s_bc",
        "cover80_a",
        "cover80_a_and_b_repeats",
        "within10_a",
        "within10_a_and_b_repeats",
    )
    for threads in a.threads:
        sel = [r for r in rows if r["threads"] == threads]
        print(
            f"{threads} thread(s), mean of {len(sel)}: "
            + ", ".join(f"{k} {np.mean([r[k] for r in sel]):.3f}" for k in keys)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
