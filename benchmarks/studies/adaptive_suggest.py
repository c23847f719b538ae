"""Does adaptive SuggestReferences pick more informative architectures? (issue #13, item 5)

Simulated onboarding on NAS-Bench-201 table devices, through ``Oracle`` (the server's
pipeline, no gRPC): the proxy is trained on HELP's meta-train devices only; the devices
onboarded are the other table devices **minus HELP's test devices** (never used to choose
anything). Each device registers the 10 first-time references, then grows to 10 + k in
rounds of 5 by one of three rules, the table latency standing in for the measurement:

* ``adaptive``: ``SuggestReferences`` with ``device`` (uncertainty x distance, this work);
* ``first-time``: more first-time references (another seed, duplicates skipped);
* ``random``: random table architectures.

Metric: Spearman of the device's predictions against its table over 3000 random table
architectures it has not measured (mean over devices and 3 seeds), beside the LOO
expected Spearman the server reports. Prints a table, writes JSON.

    python -m benchmarks.studies.adaptive_suggest --extra 10 20
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from benchmarks._cli import RESULTS, load_average, parser, write_json
from benchmarks.common import TEST_CACHE, help_nb201_split, nb201_non_train_devices
from oracle_server.oracle import Oracle
from oracle_server.predictor import build_model
from oracle_server.registry import Registry
from oracle_server.store import DeviceStore
from oracle_server.writes import DeviceWrite

RULES = ("adaptive", "first-time", "random")
ROUND = 5


def _keys(genes: np.ndarray) -> set[bytes]:
    return {g.astype(np.int16).tobytes() for g in genes}


def _next(
    oracle: Oracle,
    rule: str,
    name: str,
    have: np.ndarray,
    k: int,
    seed: int,
    rng: np.random.Generator,
) -> np.ndarray:
    sp = oracle.space("nasbench201")
    if rule == "adaptive":
        return oracle.suggest("nasbench201", k, seed=seed, device=name)
    seen = _keys(have)
    if rule == "first-time":
        pool = oracle.suggest("nasbench201", 4 * k, seed=1000 + seed)
    else:
        pool = sp.table.genes[rng.choice(sp.num_architectures, 4 * k, replace=False)]
    fresh = [g for g in pool if g.astype(np.int16).tobytes() not in seen]
    return np.asarray(fresh[:k])


def main() -> int:
    p = parser(__doc__.splitlines()[0], json_default=RESULTS / "studies" / "adaptive_suggest.json")
    p.add_argument("--extra", type=int, nargs="+", default=[10, 20])
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    t0 = time.perf_counter()
    model = build_model("nasbench201", nb201_non_train_devices(), cache_dir=TEST_CACHE)
    db = Path(tempfile.mkdtemp(prefix="oracle-adaptive-")) / "r.db"
    oracle = Oracle(DeviceStore({"nasbench201": model}, Registry(f"sqlite:///{db}")))
    sp = model.space
    help_train, help_test = help_nb201_split()
    devices = [d for d in sp.table.devices if d not in help_train and d not in help_test]
    table = {d: sp.table.device_column(d) for d in devices}
    max_extra = max(args.extra)
    # results[rule][extra] -> list of (device, seed, true Spearman, expected)
    results: dict[str, dict[int, list]] = {r: {e: [] for e in [0, *args.extra]} for r in RULES}
    for seed in range(args.seeds):
        refs = oracle.suggest("nasbench201", 10, seed=seed)
        for dev in devices:
            # the same evaluation architectures for every rule (minus what each measured)
            eval_rows = np.random.default_rng(100 + seed).choice(
                sp.num_architectures, 3000, replace=False
            )
            for rule in RULES:
                rng = np.random.default_rng(seed)
                name = f"sim-{dev}-{rule}-{seed}".replace("_", "-")
                genes = refs
                lat = table[dev][sp.table_rows(genes)]
                info = oracle.register(DeviceWrite("nasbench201", name, genes, lat))
                step = 0
                while True:
                    n_extra = len(genes) - len(refs)
                    if n_extra in results[rule]:
                        seen = _keys(genes)
                        rows = np.array(
                            [
                                r
                                for r in eval_rows
                                if sp.table.genes[r].astype(np.int16).tobytes() not in seen
                            ]
                        )
                        pred = oracle.rank("nasbench201", sp.table.genes[rows], [name])
                        rho = spearmanr(pred.rankings[0].latency_ms, table[dev][rows]).statistic
                        results[rule][n_extra].append(
                            (dev, seed, float(rho), float(info.head.expected_spearman))
                        )
                    if n_extra >= max_extra:
                        break
                    step += 1
                    new = _next(oracle, rule, name, genes, ROUND, seed * 100 + step, rng)
                    info = oracle.add_measurements(
                        DeviceWrite("nasbench201", name, new, table[dev][sp.table_rows(new)])
                    )
                    genes = np.concatenate([genes, new])
                oracle.delete(DeviceWrite("nasbench201", name))
    summary = {
        rule: {
            str(e): {
                "true_spearman": float(np.mean([x[2] for x in v])),
                "expected_spearman": float(np.nanmean([x[3] for x in v])),
                "n": len(v),
            }
            for e, v in per.items()
        }
        for rule, per in results.items()
    }
    print(
        f"NB201, proxy on HELP meta-train devices; {len(devices)} devices onboarded "
        f"(not train, not HELP test): {', '.join(devices)}; {args.seeds} seeds"
    )
    print(
        f"{'samples':>8} " + " ".join(f"{r:>12}" for r in RULES) + "   (true Spearman, "
        "3000 unmeasured table archs; LOO expected in brackets)"
    )
    for e in [0, *args.extra]:
        cells = [
            f"{summary[r][str(e)]['true_spearman']:.4f}"
            f"({summary[r][str(e)]['expected_spearman']:.2f})"
            for r in RULES
        ]
        print(f"{10 + e:>8} " + " ".join(f"{c:>12}" for c in cells))
    out = {
        "devices": devices,
        "seeds": args.seeds,
        "round": ROUND,
        "summary": summary,
        "per_device": {r: {str(e): v for e, v in per.items()} for r, per in results.items()},
        "seconds": time.perf_counter() - t0,
        "loadavg": load_average(),
    }
    write_json(args.json, out, indent=1)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
