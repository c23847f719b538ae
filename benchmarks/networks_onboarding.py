"""Issue 26 target: a device registered from 10 hand-written networks ranks 20 others.

1. Measures the 30 plain-torch networks of ``benchmarks.zoo`` on this CPU with the
   product's harness (``Harness.measure_interleaved``: torch eager, batch 1, ``--threads``
   threads, all networks built first, interleaved rounds with drift normalisation and a
   split-half retest) and writes ``benchmarks/results/networks_cpu.json`` (per network:
   name, family, resolution, traced descriptors, measured ms and its two half estimates;
   the measurement's retest Spearman and ceiling).
2. Evaluates: over ``--splits`` random splits, fit on ``--k`` networks and rank the others;
   Spearman against the measured latencies for FLOPs (dense + depthwise MACs), the naive
   non-negative fit on the 6 descriptors (scipy ``nnls`` on ``[1, d / mean_train(d)]``) and
   the layer-level head (``oracle_server.predictor.layer_level.fit_layer_head`` with the
   bundled ``CrossSpacePrior``) when that module exists.

Timing needs the machine to itself: run the full measurement alone. Smoke run (6 small
networks, few repeats, nothing written unless ``--json``)::

    .venv/bin/python -m benchmarks.networks_onboarding --quick

Full run (30 networks, 20 rounds x 5 runs; a few minutes on one core)::

    .venv/bin/python -m benchmarks.networks_onboarding

Re-evaluate a stored measurement (no timing)::

    .venv/bin/python -m benchmarks.networks_onboarding \
        --from-json benchmarks/results/networks_cpu.json

``--agreement N`` instead traces N random architectures of each bundled space's torch builder
and prints the relative difference to ``client_sdk.spaces.descriptors`` per column.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._cli import RESULTS, parser, write_json
from benchmarks.zoo import ZOO, ZooNet

RESULT = RESULTS / "networks_cpu.json"
QUICK = (
    "mobilenetv1_w025_r224",
    "plain4_r128",
    "shufflenetv2_x05_r224",
    "mobilenetv2_w050_r224",
    "resnet18_w32_r224",
    "vgg11_w025_r224",
)
BASE_NAMES = ("dense_macs", "dw_macs", "weights", "activations", "kernels", "elementwise")


# ---------------------------------------------------------------------- measure
def measure(
    nets: list[ZooNet], threads: int, warmup: int, rounds: int, runs: int, seed: int
) -> dict[str, Any]:
    """Trace and time ``nets`` with ``Harness.measure_interleaved``."""
    import torch

    from client_sdk.measure.harness import HarnessConfig
    from client_sdk.measure.layers import network_descriptors
    from client_sdk.measure.networks import time_networks

    built = {n.name: (n.build(seed), n.input_shape) for n in nets}
    desc = [network_descriptors(*built[n.name]) for n in nets]
    config = HarnessConfig(
        warmup=warmup,
        threads=threads,
        batch_size=1,
        backend="eager",
        rounds=rounds,
        runs=runs,
        seed=seed,
    )
    t0 = time.perf_counter()
    _, m = time_networks(built, config=config)
    seconds = time.perf_counter() - t0
    half_a, half_b = m.halves()
    cv = m.cv
    rows = [
        {
            "name": n.name,
            "family": n.family,
            "resolution": n.resolution,
            "descriptors": dict(zip(BASE_NAMES, map(float, d), strict=True)),
            "ms": float(ms),
            "ms_halves": [float(a), float(b)],
            "cv": float(c),
        }
        for n, d, ms, a, b, c in zip(nets, desc, m.latency_ms, half_a, half_b, cv, strict=True)
    ]
    return {
        "device": f"{platform.processor() or platform.machine()} (torch "
        f"{torch.__version__}, eager, batch 1, {threads} thread(s))",
        "config": {
            "threads": threads,
            "warmup": warmup,
            "rounds": rounds,
            "runs": runs,
            "seed": seed,
        },
        "measurement": m.summary(),
        "seconds": seconds,
        "networks": rows,
    }


# --------------------------------------------------------------------- evaluate
def layer_head_fitter() -> Any:
    """``(d_fit, y_fit, d) -> (predicted ms, head kind)`` of the layer-level head
    (``oracle_server.predictor.layer_level``)."""
    from oracle_server.predictor.layer_level import CrossSpacePrior, fit_layer_head

    prior = CrossSpacePrior.from_bundled()  # the zoo is no bundled space: nothing excluded

    def fit(d_fit: np.ndarray, y_fit: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, str]:
        head = fit_layer_head(d_fit, y_fit, prior)
        return head.predict_ms(d), head.kind

    return fit


def served_fitter(names: list[str]) -> Any:
    """``(fit rows, y_fit, test rows) -> (predicted ms, head kind)`` of what the server
    serves for these networks: their network space (``client_sdk.spaces.networks``, traced
    from the zoo), its model (basis transferred from the bundled spaces) and the head a
    device registered from the fit rows gets. No HELP device or table of the zoo is read."""
    from client_sdk.measure.networks import network_definition
    from client_sdk.spaces import register_space
    from oracle_server.evaluation import predict_inputs
    from oracle_server.predictor import build_model

    models = {n: (ZOO[n].make(), (1, 3, ZOO[n].resolution, ZOO[n].resolution)) for n in names}
    space = register_space(network_definition(models, name="zoo_networks"))
    model = build_model(space.name)
    genes = np.arange(len(names), dtype=np.int16)[:, None]

    def fit(
        fit_rows: np.ndarray, y_fit: np.ndarray, test_rows: np.ndarray
    ) -> tuple[np.ndarray, str]:
        head = model.fit_head(genes[fit_rows], y_fit)
        pred = head.predict(*predict_inputs(model, genes[test_rows]))
        return np.asarray(pred.latency_ms), head.kind

    return fit


def evaluate(result: dict[str, Any], k: int, splits: int) -> dict[str, Any]:
    from client_sdk.measure.harness import spearman
    from oracle_server.predictor.layer_level import naive_nnls

    rows = result["networks"]
    d = np.array([[r["descriptors"][n] for n in BASE_NAMES] for r in rows])
    y = np.array([r["ms"] for r in rows])
    n = len(rows)
    if not 3 <= k <= n - 3:
        raise SystemExit(f"need 3 <= k <= n - 3 networks (k={k}, n={n})")
    head = layer_head_fitter()
    served = served_fitter([r["name"] for r in rows])
    scores: dict[str, list[float]] = {"served": [], "flops": [], "nnls": [], "layer_head": []}
    kinds: dict[str, int] = {}
    served_kinds: dict[str, int] = {}
    for seed in range(splits):
        perm = np.random.default_rng(seed).permutation(n)
        fit, test = perm[:k], perm[k:]
        pred, kind = served(fit, y[fit], test)
        scores["served"].append(spearman(pred, y[test]))
        served_kinds[kind] = served_kinds.get(kind, 0) + 1
        scores["flops"].append(spearman(d[test, 0] + d[test, 1], y[test]))
        scores["nnls"].append(spearman(naive_nnls(d[fit], y[fit]).predict_ms(d[test]), y[test]))
        pred, kind = head(d[fit], y[fit], d[test])
        scores["layer_head"].append(spearman(pred, y[test]))
        kinds[kind] = kinds.get(kind, 0) + 1
    flops = np.array(scores["flops"])
    summary = {}
    for name, vals in scores.items():
        v = np.array(vals)
        summary[name] = {
            "mean": float(np.nanmean(v)),
            "std": float(np.nanstd(v)),
            "min": float(np.nanmin(v)),
            "above_flops": int((v > flops).sum()),
            "per_split": [float(x) for x in v],
        }
    all_flops = spearman(d[:, 0] + d[:, 1], y)
    corr = {name: spearman(d[:, j], y) for j, name in enumerate(BASE_NAMES)}
    return {
        "k": k,
        "splits": splits,
        "n": n,
        "predictors": summary,
        "head_kinds": kinds,
        "served_head_kinds": served_kinds,
        "all_networks_spearman": {"flops": all_flops, **corr},
    }


def print_report(result: dict[str, Any], ev: dict[str, Any]) -> None:
    meas = result.get("measurement", {})
    print(
        f"\n{result.get('device', '?')}: {ev['n']} networks, "
        f"retest {meas.get('retest_spearman', float('nan')):.3f}, "
        f"ceiling {meas.get('ceiling', float('nan')):.3f}, "
        f"drift {meas.get('drift', float('nan')):.3f}"
    )
    print(
        f"{'network':26s} {'ms':>9s} {'half A':>9s} {'half B':>9s} {'cv':>6s} "
        f"{'MMACs':>8s} {'kernels':>7s}"
    )
    for r in sorted(result["networks"], key=lambda r: r["ms"]):
        dd = r["descriptors"]
        print(
            f"{r['name']:26s} {r['ms']:9.2f} {r['ms_halves'][0]:9.2f} "
            f"{r['ms_halves'][1]:9.2f} {r['cv']:6.3f} "
            f"{(dd['dense_macs'] + dd['dw_macs']) / 1e6:8.1f} {dd['kernels']:7.0f}"
        )
    print(
        f"\nfit on {ev['k']}, rank the other {ev['n'] - ev['k']}, {ev['splits']} random "
        "splits: Spearman vs measured"
    )
    print(f"{'predictor':12s} {'mean':>6s} {'std':>6s} {'min':>6s} {'>FLOPs':>7s}")
    for name, s in ev["predictors"].items():
        print(
            f"{name:12s} {s['mean']:6.3f} {s['std']:6.3f} {s['min']:6.3f} "
            f"{s['above_flops']:4d}/{ev['splits']}"
        )
    print("served head kinds chosen:", ev.get("served_head_kinds", {}))
    print("layer head kinds chosen:", ev["head_kinds"])
    corr = ", ".join(f"{k} {v:.3f}" for k, v in ev["all_networks_spearman"].items())
    print(f"all {ev['n']} networks, single-descriptor Spearman: {corr}")


# -------------------------------------------------------------------- agreement
def agreement(n: int, seed: int = 5) -> dict[str, dict[str, list[float]]]:
    """Traced descriptors of each bundled space's torch builder vs the analytic ones:
    per column, the max |relative difference| and the mean relative difference."""
    from client_sdk.measure.builders import build_model, input_resolution
    from client_sdk.measure.layers import network_descriptors
    from client_sdk.spaces import get_space
    from client_sdk.spaces.descriptors import descriptors

    out = {}
    for name in ("nasbench201", "fbnet", "ofa_mbv3"):
        sp = get_space(name)
        genes = sp.sample(n, rng=seed)
        want = descriptors(name, genes)[:, : len(BASE_NAMES)]
        rel = []
        for g, w in zip(genes, want, strict=True):
            r = input_resolution(sp, g)
            got = network_descriptors(build_model(sp, g), (1, 3, r, r))
            rel.append((got - w) / np.maximum(np.abs(w), 1e-12))
        a = np.array(rel)
        out[name] = {"max_abs_rel": np.abs(a).max(0).tolist(), "mean_rel": a.mean(0).tolist()}
        print(
            f"{name:12s} n={n}  max|rel| "
            + " ".join(
                f"{c}={v:.4f}" for c, v in zip(BASE_NAMES, out[name]["max_abs_rel"], strict=True)
            )
        )
        print(
            f"{'':12s}       mean rel "
            + " ".join(
                f"{c}={v:+.4f}" for c, v in zip(BASE_NAMES, out[name]["mean_rel"], strict=True)
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__.split("\n\n")[0], json_aliases=("--out",))
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 6 small networks, few repeats, written only with --json",
    )
    ap.add_argument("--networks", type=int, default=None, help="measure the first N only")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=None, help="networks registered (default 10)")
    ap.add_argument("--splits", type=int, default=50)
    ap.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="evaluate a stored measurement instead of measuring",
    )
    ap.add_argument(
        "--agreement",
        type=int,
        default=0,
        metavar="N",
        help="only compare traced vs analytic descriptors of N archs per space",
    )
    args = ap.parse_args(argv)

    if args.agreement:
        agreement(args.agreement)
        return 0
    if args.from_json is not None:
        result = json.loads(args.from_json.read_text())
    else:
        if args.quick:
            nets = [ZOO[name] for name in QUICK]
            warmup, rounds, runs = 2, 4, 2
        else:
            nets = list(ZOO.values())
            warmup, rounds, runs = 5, 20, 5
        if args.networks is not None:
            nets = nets[: args.networks]
        result = measure(
            nets,
            args.threads,
            args.warmup if args.warmup is not None else warmup,
            args.rounds or rounds,
            args.runs or runs,
            args.seed,
        )
        result["quick"] = bool(args.quick)
    n = len(result["networks"])
    k = args.k if args.k is not None else (10 if n >= 13 else max(3, n - 3))
    ev = evaluate(result, k, args.splits)
    result["evaluation"] = ev
    print_report(result, ev)
    out = args.json if args.json is not None else (None if args.quick or args.from_json else RESULT)
    if out is not None:
        write_json(out, result, indent=1)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
