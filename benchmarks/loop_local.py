"""Closed loop on THIS machine's CPU, end to end (NAS-Bench-201), static vs loop.

1. an in-process oracle (the bundled NB201 proxy) on port 0;
2. the oracle's 10 suggested references are timed here with the torch harness
   (``client_sdk.search.loop.local_measure``) and two devices are registered from them;
3. ``static``: a plain search (3,000 evaluations) on the first device;
   ``loop``: the same search with ``measure=local_measure, measure_budget=20, rounds=2`` on
   the second (20 more architectures timed here and sent with AddMeasurements);
4. validation: every architecture of both returned fronts is timed here, and each front is
   scored with MEASURED latency: hypervolume relative to the front of everything measured
   (both fronts + references + loop measurements), reference point = worst error + 0.5,
   worst latency x 1.01.

Timing uses ``--warmup``/``--repeats`` (default 3/10, median) at ``--threads`` (1): a
shared, loaded machine makes single timings noisy; the load average is recorded.

Usage: ``python -m benchmarks.loop_local --json benchmarks/results/loop_local.json
--plot docs/loop_local.png``
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from benchmarks._cli import add_options, load_average, parser, write_json
from benchmarks.common import nb201_client
from client_sdk.search import pareto_mask, search
from client_sdk.search.loop import local_measure
from client_sdk.spaces import get_space

SPACE = get_space("nasbench201")
METRIC = "cifar10"


def hv(err: np.ndarray, lat: np.ndarray, ref: np.ndarray) -> float:
    from pymoo.indicators.hv import HV

    return float(HV(ref_point=ref)(np.column_stack([err, lat])))


def main() -> int:
    ap = parser(__doc__.split("\n")[0])
    ap.add_argument("--plot", type=Path)
    add_options(ap, budget=20, rounds=2, evaluations=3000, threads=1, warmup=3, repeats=10, seed=0)
    opts = ap.parse_args()
    load_start = load_average()
    measure = local_measure(
        "nasbench201", threads=opts.threads, warmup=opts.warmup, repeats=opts.repeats
    )
    timed: dict[bytes, float] = {}

    def timed_measure(genes: np.ndarray) -> np.ndarray:
        ms = measure(genes)
        for g, v in zip(genes, ms, strict=True):
            timed[g.tobytes()] = float(v)
        return ms

    client, close = nb201_client("loop-local-", workers=2)  # nothing held out
    try:
        refs = client.suggest_references("nasbench201", 10, seed=opts.seed)
        ref_ms = timed_measure(refs)
        for name in ("cpu-static", "cpu-loop"):
            client.register_device(
                name,
                "nasbench201",
                (refs, ref_ms),
                contract={"threads": opts.threads, "runtime": "torch"},
            )
        kw = {
            "objective": METRIC,
            "evaluations": opts.evaluations,
            "seed": opts.seed,
            "progress": False,
            "latency_resolution_ms": "auto",
        }
        static = search(client, "nasbench201", ["cpu-static"], **kw)
        loop = search(
            client,
            "nasbench201",
            ["cpu-loop"],
            measure=timed_measure,
            measure_budget=opts.budget,
            rounds=opts.rounds,
            **kw,
        )
        loop_measured = np.isfinite(loop.archive["measured_ms"]["cpu-loop"])
        # validation: time every returned architecture here
        union = np.unique(np.concatenate([static.front.genes, loop.front.genes]), axis=0)
        todo = np.array([g for g in union if g.tobytes() not in timed])
        t0 = time.perf_counter()
        if len(todo):
            timed_measure(todo)
        validate_s = time.perf_counter() - t0
    finally:
        close()
    acc = SPACE.table.accuracy[METRIC]

    def truth(genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (100.0 - acc[SPACE.table_rows(genes)], np.array([timed[g.tobytes()] for g in genes]))

    all_genes = np.array([np.frombuffer(k, dtype=SPACE.table.genes.dtype) for k in timed])
    e_all, l_all = truth(all_genes)
    ref = np.array([e_all.max() + 0.5, l_all.max() * 1.01])
    best = pareto_mask(np.column_stack([e_all, l_all]))
    hv_best = hv(e_all[best], l_all[best], ref)
    out = {
        "load_start": load_start,
        "load_end": load_average(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
        "num_timed": len(timed),
        "validate_s": validate_s,
        "best_known_front_size": int(best.sum()),
    }
    for label, res in (("static", static), ("loop", loop)):
        e, lat = truth(res.front.genes)
        dev = res.front.devices[0]
        pred = res.front.latency_ms[dev]
        out[label] = {
            "front_size": len(res.front),
            "hv_vs_best_known": hv(e, lat, ref) / hv_best,
            "search_wall_s": res.wall_s,
            "measure_s": float(res.archive.get("measure_s", 0.0)),
            "num_rpcs": res.num_rpcs,
            "median_abs_rel_error_on_front": float(np.median(np.abs(pred / lat - 1.0))),
        }
    out["loop"]["measured_in_loop"] = int(loop_measured.sum())
    print(json.dumps(out, indent=2))
    if opts.json:
        write_json(opts.json, out)
    if opts.plot:
        plot(opts.plot, truth, static, loop, refs, loop, loop_measured, out)
    return 0


def plot(path, truth, static, loop, refs, loop_res, loop_measured, out) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    e, lat = truth(refs)
    ax.scatter(lat, 100 - e, marker="s", color="0.6", s=22, label="10 references (timed)")
    e, lat = truth(loop_res.archive["genes"][loop_measured])
    ax.scatter(
        lat,
        100 - e,
        marker="x",
        color="tab:green",
        s=40,
        label=f"measured by the loop ({int(loop_measured.sum())})",
    )
    for label, res, color in (("static", static, "tab:blue"), ("loop", loop, "tab:orange")):
        e, lat = truth(res.front.genes)
        order = np.argsort(lat)
        m = pareto_mask(np.column_stack([e, lat]))
        o2 = np.argsort(lat[m])
        ax.step(lat[m][o2], 100 - e[m][o2], where="post", color=color, lw=1)
        ax.scatter(
            lat[order],
            100 - e[order],
            color=color,
            s=16,
            label=f"{label} front ({len(res.front)}), HV "
            f"{out[label]['hv_vs_best_known']:.4f} of best known",
        )
    ax.set_xlabel("latency measured on this CPU (ms, median, 1 thread)")
    ax.set_ylabel("CIFAR-10 test accuracy (%)")
    ax.set_title("NB201 on this CPU: returned fronts scored with measured latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
