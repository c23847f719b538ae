"""Sustained mixed load against a subprocess server on loopback.

``--clients`` concurrent clients (threads, one channel each) for ``--duration`` seconds:
mostly Rank of 1,000-10,000 NAS-Bench-201 architectures for 1-3 devices, with an
occasional RegisterDevice (+ DeleteDevice, so the registry stays bounded) and GetDevice.
Reports requests, errors (must be 0), p50/p99 latency per RPC, throughput, and the server's
RSS after warm-up and at the end (growth must stay under 10 %).

    python -m benchmarks.load --duration 60 --clients 8 --json benchmarks/results/load.json

Bounded and loopback-only: the server binds 127.0.0.1, the run stops after ``--duration``.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks._cli import ROOT, add_options, finish, parser, print_table
from client_sdk import OracleClient
from client_sdk.errors import OracleClientError
from client_sdk.spaces import get_space

SPACE = get_space("nasbench201")
DEVICES = ("pixel3", "samsung_a50", "1080ti_1", "silver_4114", "essential_ph_1")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def client_loop(
    target: str,
    seed: int,
    stop: threading.Event,
    out: dict,
    lock: threading.Lock,
    register_every: int,
) -> None:
    rng = np.random.default_rng(seed)
    lat: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    archs = 0
    with OracleClient(target, timeout_s=60, retries=False) as c:
        i = 0
        while not stop.is_set():
            i += 1
            if i % register_every == 0:
                name = f"load-{seed}-{i}"
                genes = SPACE.sample(10, rng=int(rng.integers(1 << 31)))
                meas = SPACE.table.device_column("raspi4")[SPACE.table_rows(genes)]
                calls = [
                    (
                        "RegisterDevice",
                        lambda c=c, n=name, g=genes, m=meas: c.register_device(
                            n, "nasbench201", (g, m)
                        ),
                    ),
                    ("GetDevice", lambda c=c, n=name: c.get_device(n, "nasbench201")),
                    ("DeleteDevice", lambda c=c, n=name: c.delete_device(n, "nasbench201")),
                ]
            else:
                n = int(rng.integers(1_000, 10_001))
                genes = SPACE.table.genes[rng.integers(0, SPACE.table.genes.shape[0], n)]
                k = int(rng.integers(1, 4))
                devs = list(rng.choice(DEVICES, k, replace=False))
                top_k = int(rng.choice([0, 10, 100]))
                archs += n * k
                calls = [
                    (
                        "Rank",
                        lambda c=c, g=genes, d=devs, t=top_k: c.rank(
                            "nasbench201", g, d, top_k=t or None
                        ),
                    )
                ]
            for method, call in calls:
                t0 = time.perf_counter()
                try:
                    call()
                except OracleClientError as exc:
                    errors.append(f"{method}: {exc.code.name}: {exc.message[:200]}")
                lat[method].append(time.perf_counter() - t0)
    with lock:
        for method, values in lat.items():
            out["latencies"][method].extend(values)
        out["errors"].extend(errors)
        out["archs"] += archs


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__.split("\n\n")[0])
    add_options(
        ap,
        duration=60.0,
        clients=8,
        warmup=5.0,
        register_every=(25, "one registration cycle every N calls per client"),
    )
    args = ap.parse_args(argv)
    if not 0 < args.duration <= 600 or not 0 < args.clients <= 64:
        ap.error("--duration must be in (0, 600] and --clients in (0, 64]")

    from benchmarks.common import nb201_serve_args
    from tests.support.launch import ServerProcess

    tmp = tempfile.TemporaryDirectory(prefix="oracle-load-")
    srv = ServerProcess(
        [
            *nb201_serve_args(),
            "--data-dir",
            tmp.name,
            "--grace-s",
            "10",
            "--workers",
            str(max(8, args.clients)),
        ],
        cwd=ROOT,
    ).wait_serving()
    target = f"127.0.0.1:{srv.port}"
    pid = srv.proc.pid
    try:
        rss_ready = rss_mb(pid)
        out: dict = {"latencies": defaultdict(list), "errors": [], "archs": 0}
        lock = threading.Lock()
        if args.warmup > 0:  # same mix, not recorded: allocator pools, caches, lazy imports
            stop = threading.Event()
            warm = {"latencies": defaultdict(list), "errors": [], "archs": 0}
            threads = [
                threading.Thread(
                    target=client_loop,
                    args=(target, 10_000 + i, stop, warm, lock, args.register_every),
                )
                for i in range(args.clients)
            ]
            for t in threads:
                t.start()
            time.sleep(args.warmup)
            stop.set()
            for t in threads:
                t.join(120)
            out["errors"].extend(warm["errors"])
        rss_start = rss_mb(pid)
        samples = [rss_start]
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=client_loop, args=(target, i, stop, out, lock, args.register_every)
            )
            for i in range(args.clients)
        ]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        while time.monotonic() - t0 < args.duration:
            time.sleep(min(1.0, args.duration))
            samples.append(rss_mb(pid))
        stop.set()
        for t in threads:
            t.join(120)
        wall = time.monotonic() - t0
        rss_end = rss_mb(pid)
        exit_code = srv.terminate(60)
    finally:
        srv.kill()
        tmp.cleanup()

    per_rpc = {}
    total = 0
    for method, values in sorted(out["latencies"].items()):
        ms = np.asarray(values) * 1e3
        total += ms.size
        per_rpc[method] = {
            "requests": int(ms.size),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2),
        }
    growth = (rss_end - rss_start) / rss_start * 100
    result = {
        "duration_s": round(wall, 1),
        "clients": args.clients,
        "requests": total,
        "errors": len(out["errors"]),
        "error_samples": out["errors"][:20],
        "requests_per_s": round(total / wall, 1),
        "archs_ranked_per_s": round(out["archs"] / wall),
        "per_rpc": per_rpc,
        "rss_mb": {
            "ready": round(rss_ready, 1),
            "start": round(rss_start, 1),
            "end": round(rss_end, 1),
            "max": round(max(samples), 1),
        },
        "rss_growth_pct": round(growth, 2),
        "server_exit_code": exit_code,
        "machine": {"note": "2 cores shared with other work; server and clients on one host"},
    }
    result["ok"] = result["errors"] == 0 and growth < 10 and exit_code == 0
    print_table(
        ("rpc", "requests", "p50 ms", "p99 ms", "max ms"),
        [(m, r["requests"], r["p50_ms"], r["p99_ms"], r["max_ms"]) for m, r in per_rpc.items()],
        floatfmt=".1f",
    )
    print(
        f"requests {total} in {wall:.0f} s ({result['requests_per_s']}/s), errors "
        f"{result['errors']}, RSS {rss_start:.0f} -> {rss_end:.0f} MB ({growth:+.1f} %), "
        f"ready {rss_ready:.0f} MB, exit {exit_code}"
    )
    return finish(args.json, result, ok=result["ok"])


if __name__ == "__main__":
    sys.exit(main())
