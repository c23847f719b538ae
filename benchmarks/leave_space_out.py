"""Layer-level transfer to a search space without tables (issue 26): ``leave-space-out``
(k = 10 / 20 measured archs of the held-out space per device, 5 seeds, 2,000 random other
archs of that space scored per device and seed — a subsample of the table, for runtime) and
``cross-space`` zero-shot (a device's table in one space ranks its whole other-space table;
FBNet<->OFA and FBNet<->NAS-Bench-201). FLOPs, the naive six-descriptor NNLS and a per-device
LightGBM ceiling beside. Prints a table and writes JSON (figures, settings, tuning devices).

    .venv/bin/python -m benchmarks.leave_space_out --json benchmarks/results/leave_space_out.json
"""

from __future__ import annotations

import sys
import time

from benchmarks._cli import finish, parser
from oracle_server import evaluation_spaces as ev
from oracle_server.predictor import layer_level, layer_zero_shot


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--score-rows", type=int, default=2000)
    ap.add_argument("--no-ceiling", dest="ceiling", action="store_false")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    start = time.perf_counter()
    result = {
        "settings": {
            "samples": args.samples,
            "seeds": args.seeds,
            "score_rows": args.score_rows,
            "ceiling": args.ceiling,
            "ceiling_model": f"LightGBM on genes, {ev.CEILING_TRAIN} own rows",
            "prior_devices": "HELP train devices of the other spaces",
            "head": {
                "ensemble": list(layer_level.ENSEMBLE),
                "zero_shot": list(layer_level.ZERO_SHOT_MEMBERS),
                "zero_shot_target_ridge": layer_zero_shot.TARGET_RIDGE,
                "zero_shot_min_source_rho": layer_zero_shot.MIN_SOURCE_RHO,
            },
        },
        "tuned_on": {s: list(v) for s, v in ev.TUNED_ON.items()},
        "leave_space_out": {
            s: ev.leave_space_out(
                s, tuple(args.samples), args.seeds, args.score_rows, args.ceiling, log
            )
            for s in layer_level.SPACES
        },
        "cross_space": {
            f"{a}->{b}": ev.cross_space(a, b, log, args.score_rows) for a, b in ev.DIRECTIONS
        },
    }
    result["seconds"] = time.perf_counter() - start
    print(ev.format_table(result))
    return finish(args.json, result, indent=1)


if __name__ == "__main__":
    raise SystemExit(main())
