"""Onboard this machine's CPU at 1 and 2 threads as two devices (issue #7 benchmark).

Starts an oracle server (subprocess, default proxy over all NB201 table devices, cached
artifact), then for each thread count: SuggestReferences -> measure the references with
torch -> RegisterDevice -> measure N validation architectures -> Spearman of the oracle's
ranking against them, beside the FLOPs baseline on the same N, and the Spearman between the
two CPU settings' measured validation latencies. Prints a table, writes JSON.

    python benchmarks/onboarding.py --samples 10 --validate 200
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from client_sdk import OracleClient  # noqa: E402
from client_sdk.measure.onboard import onboard  # noqa: E402
from tests.helpers import ServerProcess  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="nasbench201")
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--validate", type=int, default=200)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--cache-dir", default=str(REPO / ".oracle" / "bench-cache"))
    p.add_argument("--json", type=Path, default=REPO / "benchmarks/results/onboarding.json")
    args = p.parse_args()

    data_dir = tempfile.mkdtemp(prefix="oracle-onboard-")
    srv = ServerProcess(["--spaces", args.space, "--data-dir", data_dir,
                         "--cache-dir", args.cache_dir])
    results: dict[str, dict] = {}
    try:
        srv.wait_serving(300)
        with OracleClient(f"127.0.0.1:{srv.port}", timeout_s=120) as client:
            for threads in args.threads:
                name = f"this-cpu-{threads}t-{int(time.time())}"
                report = onboard(client, name, args.space, samples=args.samples,
                                 threads=threads, validate=args.validate,
                                 repeats=args.repeats, progress=True, seed=0)
                t = report.timings_s
                results[f"{threads}"] = {
                    # suggest + measure the references + register: the onboarding itself
                    "onboard_s": t["suggest_s"] + t["measure_s"] + t["register_s"],
                    "total_with_validation_s": t["total_s"],
                    "head_kind": report.head_kind,
                    "expected_spearman": report.expected_spearman,
                    "monotonicity": report.monotonicity,
                    "validation_spearman": report.validation_spearman,
                    "flops_spearman": report.flops_spearman,
                    "validation_latency_ms": np.asarray(report.validation_latency_ms).tolist(),
                    "timings_s": t,
                }
                client.delete_device(name, args.space)
    finally:
        srv.terminate()
    keys = list(results)
    between = None
    if len(keys) >= 2:
        a = np.asarray(results[keys[0]]["validation_latency_ms"])
        b = np.asarray(results[keys[1]]["validation_latency_ms"])
        between = float(spearmanr(a, b)[0])
    print(f"\n{'threads':>7} {'onboard s':>10} {'expected':>9} {'monot.':>7} "
          f"{'oracle SRCC':>12} {'FLOPs SRCC':>11}")
    for k, r in results.items():
        print(f"{k:>7} {r['onboard_s']:>10.1f} {r['expected_spearman']:>9.3f} "
              f"{r['monotonicity']:>7.3f} {r['validation_spearman']:>12.3f} "
              f"{r['flops_spearman']:>11.3f}")
    if between is not None:
        print(f"Spearman between the {keys[0]}- and {keys[1]}-thread settings "
              f"({args.validate} archs): {between:.3f}")
    out = {"space": args.space, "samples": args.samples, "validate": args.validate,
           "devices": results, "spearman_between_settings": between,
           "loadavg": Path("/proc/loadavg").read_text().split()[:3]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
