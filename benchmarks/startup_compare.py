"""Cold start and RSS of this checkout vs a baseline checkout, alternating, in one run.

    git archive <commit> | tar -x -C /tmp/base
    python -m benchmarks.startup_compare --baseline-root /tmp/base [--rounds 2] [--json PATH]

Each round starts the baseline's and this checkout's server (3 spaces, the same proxy cache
``.oracle/bench-cache``), measures process start -> health SERVING, ranks 3 x 10k FBNet and OFA
architectures on one table device, and reads ``VmRSS``. Prints the load average beside each
(``--json``: the rows as JSON).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import benchmarks.serving as bs
from benchmarks._cli import ROOT, finish, load_average, parser
from tests.support.launch import ServerProcess


def run(root: Path, cache_dir: Path) -> tuple[float, float]:
    from client_sdk import OracleClient
    from client_sdk.spaces import get_space

    with tempfile.TemporaryDirectory() as tmp:
        # the server subprocess runs from (and imports) the checkout ``root``
        srv = ServerProcess(
            bs.oracle_args(cache_dir, Path(tmp), ("nasbench201", "fbnet", "ofa_mbv3")),
            cwd=root,
            start_timeout_s=180,
        )
        try:
            seconds = srv.wait_serving(poll_s=0.01).startup_s
            assert seconds is not None
            with OracleClient(f"127.0.0.1:{srv.port}", timeout_s=120) as c:
                for name in ("fbnet", "ofa_mbv3"):
                    sp = get_space(name)
                    for i in range(3):
                        c.rank(name, sp.sample(10_000, i), sp.table.devices[0])
            time.sleep(3)
            rss = bs.proc_status_mb(srv.pid, "VmRSS")
        finally:
            srv.stop()
    return seconds, rss


def main() -> int:
    ap = parser(__doc__.split("\n")[0])
    ap.add_argument("--baseline-root", type=Path, required=True)
    ap.add_argument("--cache-dir", type=Path, default=ROOT / ".oracle" / "bench-cache")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    rows = []
    for i in range(args.rounds):
        for label, root in (("baseline", args.baseline_root.resolve()), ("this", ROOT)):
            seconds, rss = run(root, args.cache_dir.resolve())
            load = load_average()
            rows.append(
                {
                    "round": i,
                    "checkout": label,
                    "cold_start_s": seconds,
                    "rss_mb": rss,
                    "loadavg": load,
                }
            )
            print(
                f"{label:9s} cold start {seconds:5.2f} s  RSS after FBNet/OFA Ranks "
                f"{rss:4.0f} MB  load {load[0] if load else float('nan'):.1f}",
                flush=True,
            )
    return finish(args.json, {"baseline_root": str(args.baseline_root), "rows": rows})


if __name__ == "__main__":
    raise SystemExit(main())
