"""Cold start and RSS of this checkout vs a baseline checkout, alternating, in one run.

    git archive <commit> | tar -x -C /tmp/base
    python benchmarks/startup_compare.py --baseline-root /tmp/base [--rounds 2]

Each round starts the baseline's and this checkout's server (3 spaces, the same proxy cache
``.oracle/bench-cache``), measures process start -> health SERVING, ranks 3 x 10k FBNet and OFA
architectures on one table device, and reads ``VmRSS``. Prints the load average beside each.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import benchmarks.serving as bs  # noqa: E402
from oracle_server.launch import ServerProcess  # noqa: E402


def run(root: Path, cache_dir: Path) -> tuple[float, float]:
    from client_sdk import OracleClient
    from client_sdk.spaces import get_space

    with tempfile.TemporaryDirectory() as tmp:
        # the server subprocess runs from (and imports) the checkout ``root``
        srv = ServerProcess(bs.oracle_args(cache_dir, Path(tmp), ("nasbench201", "fbnet",
                                                                  "ofa_mbv3")),
                            cwd=root, start_timeout_s=180)
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline-root", type=Path, required=True)
    ap.add_argument("--cache-dir", type=Path, default=ROOT / ".oracle" / "bench-cache")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    for _ in range(args.rounds):
        for label, root in (("baseline", args.baseline_root.resolve()), ("this", ROOT)):
            seconds, rss = run(root, args.cache_dir.resolve())
            print(f"{label:9s} cold start {seconds:5.2f} s  RSS after FBNet/OFA Ranks "
                  f"{rss:4.0f} MB  load {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
