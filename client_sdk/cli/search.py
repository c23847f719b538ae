"""``oracle search``: NSGA-II over accuracy and predicted latency (optionally closing the
loop by measuring here)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from client_sdk.cli._common import _emit, _options, _progress
from client_sdk.client import OracleClient

#: ``oracle search`` options passed to ``search`` under their own names.
SEARCH_OPTIONS = (
    "objective", "evaluations", "population", "seed", "latency_mode", "checkpoint", "resume",
    "latency_objective",
)  # fmt: skip


def cmd_search(args: argparse.Namespace, c: OracleClient) -> None:
    from client_sdk.search import search

    budget = args.max_latency_ms
    loop: dict = {}
    if args.measure_local:
        from client_sdk.search.loop import local_measure

        loop = {
            "measure": local_measure(
                args.space,
                len(args.device),
                threads=args.threads,
                device=args.measure_device,
                progress=_progress(args),
            ),
            "measure_budget": args.budget,
            "rounds": args.rounds,
        }
    elif args.budget:
        raise SystemExit("--budget needs --measure-local (or use the SDK with a measure callback)")
    resolution = args.resolution
    if resolution not in (None, "auto"):
        resolution = float(resolution)
    try:
        result = search(
            c,
            args.space,
            args.device,
            max_latency_ms=budget,
            progress=_progress(args),
            time_limit_s=args.time_limit,
            latency_resolution_ms=resolution,
            **_options(args, *SEARCH_OPTIONS),
            **loop,
        )
    except ValueError as exc:  # a bad objective, budget or setting: said, not a traceback
        raise SystemExit(f"oracle search: {exc}") from None
    front = result.front
    written = []
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        front.to_json(out / "front.json")
        front.to_csv(out / "front.csv")
        written += [out / "front.json", out / "front.csv"]
        if args.plot:
            front.plot(
                out / "pareto.png",
                max_latency_ms=budget,
                log_latency=args.log_latency,
                top_worth=args.top_worth,
            )
            written.append(out / "pareto.png")
    measured = result.archive.get("measured_ms", {})
    num_measured = int(
        sum(np.isfinite(v).sum() for v in measured.values()) // max(1, len(measured))
    )
    data = {
        "summary": result.summary(),
        "measured": num_measured,
        "measure_s": round(float(result.archive.get("measure_s", 0.0)), 3),
        "front": [
            {
                "arch": a,
                "accuracy": float(front.accuracy[i]),
                "latency_ms": {d: float(front.latency_ms[d][i]) for d in front.devices},
            }
            for i, a in enumerate(front.archs)
        ],
        "written": [str(p) for p in written],
    }
    text = front.table() + "\n" + result.summary()
    if num_measured:
        text += (
            f"\nclosed loop: {num_measured} architectures measured here and added to the "
            f"device ({data['measure_s']:.1f} s measuring, not in the search time)"
        )
    if written:
        text += "\nwrote " + ", ".join(str(p) for p in written)
    _emit(args, data, text)
