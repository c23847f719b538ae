"""Serving benchmark (issue #9): Rank latency vs a raw gRPC floor, throughput, fit, start-up.

Everything runs on loopback in ONE run, each server in its own subprocess (the client's GIL
is separate from the server's, as in production):

* the oracle (``python -m oracle_server serve``, NAS-Bench-201, FBNet, OFA; proxy artifacts from
  ``--cache-dir``, built once if missing, not timed);
* a raw gRPC echo server (generic handler, same thread pool size, no interceptor, no
  protobuf): it receives a payload of the same size as the Rank request and answers with as
  many bytes as the Rank response. That is the floor: transport + gRPC Python per-call cost.

Measured:

* Rank of 1, 100, 1k, 10k, 100k architectures for one device and for 6 devices in one request,
  p50/p99 after warm-up, client sending pre-serialised requests through a raw-bytes stub (the
  same client work as the echo calls, so the ratio is what the server adds). Every call sends
  a FRESH random sample (generated outside the timed region), so no request-level cache can
  make a repeated payload look fast. Up to ``--calls`` calls per row within ``--budget-s``
  seconds; the ``calls`` column says how many were made.
* the echo floor for the same request/response sizes;
* Rank of 10k architectures for devices REGISTERED over RPC from 10 measurements (a non-test
  table device's latencies with noise, and made-up latencies): whatever head kind selection
  picks is timed (``head_kind`` in the JSON);
* throughput (architectures/s) of NAS-Bench-201 10k x 1-device Ranks through the SDK
  (``OracleClient.rank``) with 1, 4, 8, 16 concurrent client PROCESSES, and of FBNet (fresh
  architectures per call) with 1 and 8;
* RegisterDevice (head fit + registry write) with 10 measurements, end to end;
* cold start: process start to health SERVING with the proxy artifacts cached (median);
* server RSS after warm-up (``/proc/<pid>/status`` VmRSS; VmHWM = peak).

    python -m benchmarks.serving [--quick] [--json benchmarks/results/serving.json]

The machine's load average is recorded before and after: numbers from a loaded machine are
pessimistic; compare ratios to the floor of the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np

from benchmarks._cli import ROOT, finish, load_average, parser
from tests.support.launch import ServerProcess, stop_process

SPACES = ("nasbench201", "fbnet", "ofa_mbv3", "mobilenetv2", "proxyless")
SIZES = (1, 100, 1_000, 10_000, 100_000)
DEVICE_COUNTS = (1, 6)
CONCURRENCY = (1, 4, 8, 16)
THROUGHPUT_SPACE, THROUGHPUT_BATCH = "nasbench201", 10_000
OPEN_THROUGHPUT = ("fbnet", (1, 8))  # open-space throughput rows (proxy evaluated per call)
# Registered-device rows: devices registered over RPC from 10 measurements, as users do.
# Measurements come from a non-test table device (with 10% noise) or are made up; never from
# the HELP test devices.
REGISTER_SOURCE = {"fbnet": "samsung_a50", "ofa_mbv3": "v100_32"}
RANK_METHOD = "/latency_oracle.v1.LatencyOracle/Rank"
ECHO_METHOD = "/bench.Echo/Echo"
MAX_MESSAGE = 256 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]
TARGETS = {  # name -> (limit, unit); "<=" unless noted
    "rank_nasbench201_10k_1dev_p50_ms": 5.0,
    "rank_nasbench201_100k_1dev_p50_ms": 40.0,
    "rank_fbnet_10k_1dev_p50_ms": 15.0,
    "rank_fbnet_10k_registered_p50_ms": 5.0,  # every registered row (any head kind)
    # issue 26: a device registered on a space from a definition (no table), every row
    "rank_defined_space_10k_registered_p50_ms": 10.0,
    "rank_fbnet_10k_6dev_p50_ms": 15.0,
    "rank_fbnet_100k_1dev_p50_ms": 40.0,
    "rank_ofa_mbv3_100k_1dev_p50_ms": 40.0,
    "throughput_fbnet_8_clients_archs_per_s": 2_000_000.0,  # >=
    "rank_nasbench201_10k_1dev_x_floor": 2.0,
    "throughput_8_clients_archs_per_s": 2_000_000.0,  # >=
    "register_10_samples_p50_ms": 50.0,
    "cold_start_s": 3.0,
    "server_rss_mb": 500.0,
}


def proc_status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# ------------------------------------------------------------------ echo server (floor)
def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return bytes(int.from_bytes(request[:4], "little"))  # as many bytes as asked for


class _EchoHandler(grpc.GenericRpcHandler):
    def service(self, handler_call_details):
        if handler_call_details.method == ECHO_METHOD:
            return grpc.unary_unary_rpc_method_handler(_echo)
        return None


def echo_server_main(workers: int) -> int:
    """``--echo-server``: raw gRPC server on a free loopback port; prints it, runs until killed."""
    from oracle_server.runtime import tune_allocator

    tune_allocator()  # the same allocator settings as the oracle process (fair floor)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=CHANNEL_OPTIONS)
    server.add_generic_rpc_handlers((_EchoHandler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(json.dumps({"port": port}), flush=True)
    server.wait_for_termination()
    return 0


# ------------------------------------------------------------------------- processes
class EchoProcess:
    """The ``--echo-server`` subprocess; learns its port from the first line it prints."""

    def __init__(self, workers: int, timeout_s: float = 60.0) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.serving",
                "--echo-server",
                "--workers",
                str(workers),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.port = 0
        found = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self.port = int(json.loads(line)["port"])
            found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(timeout_s) or not self.port:
            self.kill()
            raise RuntimeError("echo server did not start")

    def kill(self) -> None:
        stop_process(self.proc, 10)


def oracle_args(cache_dir: Path, data_dir: Path, spaces: tuple[str, ...]) -> list[str]:
    """``oracle-server serve`` flags of the benchmarked server (ports: ServerProcess's)."""
    return [
        "--data-dir",
        str(data_dir),
        "--cache-dir",
        str(cache_dir),
        "--spaces",
        ",".join(spaces),
    ]


def ensure_proxy_cache(cache_dir: Path, spaces: tuple[str, ...]) -> float:
    """``build-proxy`` (untimed): loads the cached artifacts, or trains them if the cache key
    (which covers the proxy configuration and features) has no artifact yet. Seconds taken."""
    t0 = time.perf_counter()
    env = {**os.environ}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "oracle_server",
                "build-proxy",
                "--cache-dir",
                str(cache_dir),
                "--data-dir",
                tmp,
                "--spaces",
                ",".join(spaces),
                "--log-format",
                "text",
            ],
            check=True,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    seconds = time.perf_counter() - t0
    if seconds > 15:
        print(f"built the proxy artifacts in {cache_dir} ({seconds:.0f} s, not timed)", flush=True)
    return seconds


# -------------------------------------------------------------------------- latency
def timed_calls(call, make_request, calls: int, budget_s: float, warmup: int):
    """Warm-up, then up to ``calls`` timed calls (fresh request each) within ``budget_s``."""
    for _ in range(warmup):
        call(make_request())
    times: list[float] = []
    nbytes = 0
    deadline = time.perf_counter() + budget_s
    while len(times) < calls and (len(times) < 3 or time.perf_counter() < deadline):
        req = make_request()
        t0 = time.perf_counter()
        resp = call(req, timeout=600)
        times.append(time.perf_counter() - t0)
        nbytes = len(resp)
    return times, nbytes


@contextlib.contextmanager
def rank_and_echo(oracle_port: int, echo_port: int) -> Iterator[tuple[Callable, Callable]]:
    """Raw-bytes callables ``(rank, echo)``: the oracle's Rank and the echo server (floor)."""
    with (
        grpc.insecure_channel(f"127.0.0.1:{oracle_port}", options=CHANNEL_OPTIONS) as och,
        grpc.insecure_channel(f"127.0.0.1:{echo_port}", options=CHANNEL_OPTIONS) as ech,
    ):
        yield (
            och.unary_unary(RANK_METHOD, _registered_method=False),
            ech.unary_unary(ECHO_METHOD, _registered_method=False),
        )


def floor_times(
    echo: Callable, request_bytes: int, response_bytes: int, calls: int, budget_s: float
) -> list[float]:
    """Echo calls of the same request and response sizes as a Rank call (the floor)."""
    echo_req = response_bytes.to_bytes(4, "little") + bytes(max(request_bytes - 4, 0))
    times, _ = timed_calls(echo, lambda: echo_req, calls, budget_s, 5)
    return times


def bench_rank(
    oracle_port: int,
    echo_port: int,
    spaces: tuple[str, ...],
    sizes: tuple[int, ...],
    calls: int,
    budget_s: float,
    seed: int = 0,
) -> list[dict]:
    from client_sdk import _requests as rq
    from client_sdk.spaces import get_space

    rows = []
    rng = np.random.default_rng(seed)
    with rank_and_echo(oracle_port, echo_port) as (rank, echo):
        for space_name in spaces:
            space = get_space(space_name)
            devices = list(space.table.devices[:6])
            if not devices:  # a space from a definition: registered devices only (below)
                continue
            for n in sizes:
                for nd in DEVICE_COUNTS:
                    names = devices[:nd]

                    def make(n=n, names=names, space=space):
                        genes = space.sample(n, rng)
                        msg, _ = rq.archs_pb(genes)
                        return rq.rank_request(
                            space.name, msg, names, None, None, False, None
                        ).SerializeToString()

                    warm = 5 if n <= 10_000 else 2
                    times, resp_bytes = timed_calls(rank, make, calls, budget_s, warm)
                    req_bytes = len(make())
                    floor = floor_times(echo, req_bytes, resp_bytes, calls, budget_s)
                    row = {
                        "space": space_name,
                        "archs": n,
                        "devices": nd,
                        "calls": len(times),
                        "p50_ms": pct(times, 50) * 1e3,
                        "p99_ms": pct(times, 99) * 1e3,
                        "mean_ms": float(np.mean(times)) * 1e3,
                        "floor_calls": len(floor),
                        "floor_p50_ms": pct(floor, 50) * 1e3,
                        "floor_p99_ms": pct(floor, 99) * 1e3,
                        "request_bytes": req_bytes,
                        "response_bytes": resp_bytes,
                    }
                    row["ratio_p50"] = row["p50_ms"] / row["floor_p50_ms"]
                    row["ratio_p99"] = row["p99_ms"] / row["floor_p99_ms"]
                    row["archs_per_s_p50"] = n * nd / (row["p50_ms"] / 1e3)
                    rows.append(row)
                    print(
                        f"  {space_name:12s} {n:>7d} x {nd} dev: {len(times):4d} calls "
                        f"p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms  "
                        f"floor {row['floor_p50_ms']:6.2f} ms  x{row['ratio_p50']:.1f}",
                        flush=True,
                    )
    return rows


def bench_sdk(oracle_port: int, calls: int) -> dict:
    """SDK end to end (request building + response parsing) for NB201 10k x 1 device."""
    from client_sdk import OracleClient
    from client_sdk.spaces import get_space

    space = get_space("nasbench201")
    device = space.table.devices[0]
    genes = [space.sample(10_000, i) for i in range(8)]
    times = []
    with OracleClient(f"127.0.0.1:{oracle_port}", timeout_s=60) as c:
        for i in range(calls + 5):
            t0 = time.perf_counter()
            c.rank("nasbench201", genes[i % 8], device)
            if i >= 5:
                times.append(time.perf_counter() - t0)
    return {
        "space": "nasbench201",
        "archs": 10_000,
        "devices": 1,
        "calls": len(times),
        "p50_ms": pct(times, 50) * 1e3,
        "p99_ms": pct(times, 99) * 1e3,
    }


# ----------------------------------------------------------------------- throughput
def _throughput_worker(
    port: int, seed: int, ready, start, stop_at, out, space_name: str = THROUGHPUT_SPACE
) -> None:
    from client_sdk import OracleClient
    from client_sdk.spaces import get_space

    space = get_space(space_name)
    device = space.table.devices[seed % 6]
    # fresh architectures per call where the space is open (no repeats in 9^22)
    genes = [
        space.sample(THROUGHPUT_BATCH, seed * 100 + i)
        for i in range(4 if space_name == "nasbench201" else 40)
    ]
    with OracleClient(f"127.0.0.1:{port}", timeout_s=60) as c:
        c.rank(space_name, genes[0], device)  # connect + warm
        ready.release()
        start.wait()
        n = calls = 0
        lat = []
        t_end = stop_at.value
        t0 = time.time()
        while time.time() < t_end:
            t1 = time.perf_counter()
            res = c.rank(space_name, genes[calls % len(genes)], device)
            lat.append(time.perf_counter() - t1)
            n += res.num_architectures
            calls += 1
        out.put(
            {"archs": n, "calls": calls, "seconds": time.time() - t0, "p50_ms": pct(lat, 50) * 1e3}
        )


def bench_throughput(
    port: int, clients: int, duration_s: float, space: str = THROUGHPUT_SPACE
) -> dict:
    ctx = mp.get_context("spawn")
    ready, start = ctx.Semaphore(0), ctx.Event()
    stop_at, out = ctx.Value("d", 0.0), ctx.Queue()
    procs = [
        ctx.Process(target=_throughput_worker, args=(port, i, ready, start, stop_at, out, space))
        for i in range(clients)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        if not ready.acquire(timeout=120):
            raise RuntimeError("throughput worker did not start")
    stop_at.value = time.time() + duration_s
    t0 = time.time()
    start.set()
    results = [out.get(timeout=duration_s + 120) for _ in procs]
    wall = time.time() - t0
    for p in procs:
        p.join(30)
    archs = sum(r["archs"] for r in results)
    return {
        "clients": clients,
        "batch": THROUGHPUT_BATCH,
        "space": space,
        "seconds": wall,
        "calls": sum(r["calls"] for r in results),
        "archs": archs,
        "archs_per_s": archs / wall,
        "client_p50_ms": float(np.median([r["p50_ms"] for r in results])),
    }


# ------------------------------------------------------------------ registered devices
def bench_registered(
    oracle_port: int,
    echo_port: int,
    spaces: tuple[str, ...],
    calls: int,
    budget_s: float,
    n: int = 10_000,
) -> list[dict]:
    """Rank latency of devices registered over RPC from 10 measurements (as users do):
    one from a non-test table device's latencies (+-10% noise), one from made-up latencies.
    Whatever head selection picks (``head_kind``) is what is timed. Rows of a space from a
    definition (no table) are marked ``defined_space``."""
    from client_sdk import OracleClient
    from client_sdk import _requests as rq
    from client_sdk.spaces import get_space

    rows_out = []
    rng = np.random.default_rng(7)
    stamp = int(time.time())
    with (
        OracleClient(f"127.0.0.1:{oracle_port}", timeout_s=60) as c,
        rank_and_echo(oracle_port, echo_port) as (rank, echo),
    ):
        for space_name in spaces:
            space = get_space(space_name)
            defined = not space.table.devices  # a space from a definition (no table)
            if space_name in REGISTER_SOURCE:
                truth = space.table.device_column(REGISTER_SOURCE[space_name])
                rows = rng.choice(len(truth), 10, replace=False)
                genes = space.table.genes[rows]
                cases = {
                    f"from {REGISTER_SOURCE[space_name]}": truth[rows] * rng.uniform(0.9, 1.1, 10),
                    "made-up latencies": rng.uniform(1.0, 100.0, 10),
                }
            elif defined:
                genes = space.sample(10, rng)
                d = space.descriptors(genes)[:, :6]
                roofline = 2e-9 * d[:, 0] + 1.5e-8 * d[:, 1] + 4e-8 * d[:, 3] + 0.02 * d[:, 4]
                cases = {
                    "roofline-like": roofline * rng.uniform(0.9, 1.1, 10),
                    "made-up latencies": rng.uniform(1.0, 100.0, 10),
                }
            else:
                continue
            for label, lat in cases.items():
                name = f"bench-{space_name}-{stamp}-{len(rows_out)}"
                dev = c.register_device(name, space_name, (genes, lat))

                def make(space=space, name=name):
                    msg, _ = rq.archs_pb(space.sample(n, rng))
                    return rq.rank_request(
                        space.name, msg, [name], None, None, False, None
                    ).SerializeToString()

                times, resp_bytes = timed_calls(rank, make, calls, budget_s, 3)
                floor = floor_times(echo, len(make()), resp_bytes, calls, budget_s)
                row = {
                    "space": space_name,
                    "defined_space": defined,
                    "archs": n,
                    "devices": 1,
                    "registered": label,
                    "head_kind": dev.head_kind,
                    "calls": len(times),
                    "p50_ms": pct(times, 50) * 1e3,
                    "p99_ms": pct(times, 99) * 1e3,
                    "floor_p50_ms": pct(floor, 50) * 1e3,
                }
                row["ratio_p50"] = row["p50_ms"] / row["floor_p50_ms"]
                rows_out.append(row)
                print(
                    f"  {space_name:12s} {n:>7d} x registered ({label}, head {dev.head_kind}): "
                    f"p50 {row['p50_ms']:8.2f} ms  floor {row['floor_p50_ms']:6.2f} ms",
                    flush=True,
                )
    return rows_out


# ---------------------------------------------------------------------------- other
def bench_register(port: int, calls: int, samples: int = 10) -> dict:
    from client_sdk import OracleClient
    from client_sdk.spaces import get_space

    space = get_space("nasbench201")
    truth = space.table.device_column("pixel2")
    rng = np.random.default_rng(1)
    times, fit_ms = [], []
    stamp = int(time.time())
    with OracleClient(f"127.0.0.1:{port}", timeout_s=60) as c:
        for i in range(calls + 3):
            rows = rng.choice(len(truth), samples, replace=False)
            meas = (space.table.genes[rows], truth[rows] * rng.uniform(0.9, 1.1, samples))
            t0 = time.perf_counter()
            dev = c.register_device(f"bench-{stamp}-{i}", "nasbench201", meas)
            if i >= 3:
                times.append(time.perf_counter() - t0)
                fit_ms.append(dev.head_fit_ms)
    return {
        "samples": samples,
        "calls": len(times),
        "p50_ms": pct(times, 50) * 1e3,
        "p99_ms": pct(times, 99) * 1e3,
        "head_fit_p50_ms": pct(fit_ms, 50),
    }


def check_targets(res: dict) -> list[dict]:
    def rank_p50(space: str, n: int) -> float:
        for r in res["rank"]:
            if r["space"] == space and r["archs"] == n and r["devices"] == 1:
                return r["p50_ms"]
        return float("nan")

    def rank_row(space: str, n: int, nd: int) -> dict | None:
        for r in res["rank"]:
            if r["space"] == space and r["archs"] == n and r["devices"] == nd:
                return r
        return None

    tp8 = [
        t["archs_per_s"]
        for t in res["throughput"]
        if t["clients"] == 8 and t["space"] == THROUGHPUT_SPACE
    ]
    tp8_open = [t["archs_per_s"] for t in res.get("throughput_open", []) if t["clients"] == 8]
    reg = [r["p50_ms"] for r in res.get("registered", []) if r["space"] == "fbnet"]
    reg_defined = [r["p50_ms"] for r in res.get("registered", []) if r["defined_space"]]
    nb = rank_row("nasbench201", 10_000, 1)
    f6, f100, o100 = (
        rank_row("fbnet", 10_000, 6),
        rank_row("fbnet", 100_000, 1),
        rank_row("ofa_mbv3", 100_000, 1),
    )
    nan = float("nan")
    values = {
        "rank_fbnet_10k_registered_p50_ms": max(reg) if reg else nan,
        "rank_defined_space_10k_registered_p50_ms": max(reg_defined) if reg_defined else nan,
        "rank_fbnet_10k_6dev_p50_ms": f6["p50_ms"] if f6 else nan,
        "rank_fbnet_100k_1dev_p50_ms": f100["p50_ms"] if f100 else nan,
        "rank_ofa_mbv3_100k_1dev_p50_ms": o100["p50_ms"] if o100 else nan,
        "throughput_fbnet_8_clients_archs_per_s": tp8_open[0] if tp8_open else nan,
        "rank_nasbench201_10k_1dev_x_floor": nb["ratio_p50"] if nb else nan,
        "rank_nasbench201_10k_1dev_p50_ms": rank_p50("nasbench201", 10_000),
        "rank_nasbench201_100k_1dev_p50_ms": rank_p50("nasbench201", 100_000),
        "rank_fbnet_10k_1dev_p50_ms": rank_p50("fbnet", 10_000),
        "throughput_8_clients_archs_per_s": tp8[0] if tp8 else float("nan"),
        "register_10_samples_p50_ms": res["register"]["p50_ms"],
        "cold_start_s": res["cold_start"]["median_s"],
        "server_rss_mb": res["server_memory"]["rss_after_warmup_mb"],
    }
    out = []
    for name, limit in TARGETS.items():
        v = values[name]
        met = v >= limit if name.startswith("throughput") else v <= limit
        out.append(
            {
                "name": name,
                "target": limit,
                "value": v,
                "met": bool(met) if np.isfinite(v) else None,
            }
        )
    return out


def print_report(res: dict) -> None:
    meta = res["meta"]
    print(
        f"\nServing benchmark ({'quick' if meta['quick'] else 'full'}), {os.cpu_count()} CPUs, "
        f"load average before {meta['loadavg_before']} after {meta['loadavg_after']}"
    )
    print(
        "Rank: raw-bytes client, fresh random architectures per call; floor = echo server "
        "with the same request/response sizes"
    )
    head = (
        f"{'space':12s} {'archs':>7s} {'dev':>3s} {'calls':>5s} {'p50 ms':>9s} "
        f"{'p99 ms':>9s} {'floor p50':>9s} {'floor p99':>9s} {'x p50':>6s} {'x p99':>6s} "
        f"{'archs/s':>10s}"
    )
    print(head)
    print("-" * len(head))
    for r in res["rank"]:
        print(
            f"{r['space']:12s} {r['archs']:>7d} {r['devices']:>3d} {r['calls']:>5d} "
            f"{r['p50_ms']:>9.2f} {r['p99_ms']:>9.2f} {r['floor_p50_ms']:>9.2f} "
            f"{r['floor_p99_ms']:>9.2f} {r['ratio_p50']:>6.1f} {r['ratio_p99']:>6.1f} "
            f"{r['archs_per_s_p50']:>10.3g}"
        )
    s = res.get("sdk")
    if s is not None:
        print(
            f"SDK OracleClient.rank, NB201 10k x 1: p50 {s['p50_ms']:.2f} ms, p99 "
            f"{s['p99_ms']:.2f} ms ({s['calls']} calls)"
        )
    for r in res.get("registered", []):
        print(
            f"{r['space']:12s} {r['archs']:>7d} x 1 registered ({r['registered']}, head "
            f"{r['head_kind']}): p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, floor "
            f"{r['floor_p50_ms']:.2f} ms, x{r['ratio_p50']:.1f} ({r['calls']} calls)"
        )
    print(
        f"\nThroughput ({THROUGHPUT_BATCH} archs x 1 table device per Rank, SDK, one "
        "process per client; open spaces: fresh architectures per call)"
    )
    for t in res["throughput"] + res.get("throughput_open", []):
        print(
            f"  {t['space']:12s} {t['clients']:>2d} clients: {t['archs_per_s']:>12,.0f} archs/s "
            f"({t['calls']} calls in {t['seconds']:.1f} s, "
            f"client p50 {t['client_p50_ms']:.1f} ms)"
        )
    r = res["register"]
    print(
        f"RegisterDevice, {r['samples']} samples: p50 {r['p50_ms']:.1f} ms, p99 "
        f"{r['p99_ms']:.1f} ms, server head fit p50 {r['head_fit_p50_ms']:.1f} ms "
        f"({r['calls']} calls)"
    )
    c = res["cold_start"]
    print(
        f"Cold start to SERVING (proxy cached): median {c['median_s']:.2f} s "
        f"({', '.join(f'{x:.2f}' for x in c['runs_s'])})"
    )
    m = res["server_memory"]
    print(
        f"Server RSS after warm-up {m['rss_after_warmup_mb']:.0f} MB, at end "
        f"{m['rss_end_mb']:.0f} MB, peak {m['hwm_end_mb']:.0f} MB"
    )
    print("\nTargets")
    for t in res["targets"]:
        flag = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        print(f"  {t['name']:36s} {t['value']:>14,.2f}  target {t['target']:>12,.1f}  {flag}")


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fast smoke run (~40 s)")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / ".oracle" / "bench-cache")
    ap.add_argument("--calls", type=int, default=None, help="max timed calls per Rank row")
    ap.add_argument("--budget-s", type=float, default=None, help="time budget per Rank row")
    ap.add_argument("--duration-s", type=float, default=None, help="per throughput level")
    ap.add_argument("--sizes", help="comma list of batch sizes (default 1,100,1000,10000,100000)")
    ap.add_argument("--spaces", default=",".join(SPACES), help="comma list of spaces")
    ap.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=8, help="echo server thread pool size")
    args = ap.parse_args(argv)
    if args.echo_server:
        return echo_server_main(args.workers)

    quick = args.quick
    calls = args.calls or (30 if quick else 200)
    budget = args.budget_s or (1.0 if quick else 6.0)
    duration = args.duration_s or (1.5 if quick else 4.0)
    sizes = (1, 1_000, 10_000, 100_000) if quick else SIZES
    if args.sizes:
        sizes = tuple(int(x) for x in args.sizes.split(","))
    concurrency = (1, 8) if quick else CONCURRENCY
    t_start = time.perf_counter()
    load_before = load_average()
    spaces = tuple(args.spaces.split(","))
    cache_dir = args.cache_dir.resolve()
    build_s = ensure_proxy_cache(cache_dir, spaces)

    res: dict = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "quick": quick,
            "loadavg_before": load_before,
            "build_proxy_s_untimed": build_s,
            "calls_max": calls,
            "budget_s_per_row": budget,
            "throughput_duration_s": duration,
            "server": "subprocess: oracle-server serve --spaces "
            + ",".join(spaces)
            + " (default settings: 8 workers)",
        }
    }
    echo = EchoProcess(args.workers)
    oracle: ServerProcess | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="oracle-bench-") as tmp:
            runs = []
            for i in range(1 if quick else 3):
                if oracle is not None:
                    oracle.stop()
                oracle = ServerProcess(
                    oracle_args(cache_dir, Path(tmp) / f"d{i}", spaces),
                    cwd=ROOT,
                    start_timeout_s=180,
                )
                runs.append(oracle.wait_serving(poll_s=0.01).startup_s)
            res["cold_start"] = {"runs_s": runs, "median_s": float(np.median(runs))}
            print(f"cold start to SERVING: {res['cold_start']['median_s']:.2f} s", flush=True)
            assert oracle is not None
            print("Rank latency:", flush=True)
            res["rank"] = bench_rank(oracle.port, echo.port, spaces, sizes, calls, budget)
            res["registered"] = bench_registered(oracle.port, echo.port, spaces, calls, budget)
            if "nasbench201" in spaces:  # the SDK row is NB-201's (a --spaces run may omit it)
                res["sdk"] = bench_sdk(oracle.port, 30 if quick else 100)
            res["server_memory"] = {"rss_after_warmup_mb": proc_status_mb(oracle.pid, "VmRSS")}
            res["register"] = bench_register(oracle.port, 10 if quick else 50)
            print("throughput:", flush=True)
            res["throughput"] = []
            for k in concurrency:
                res["throughput"].append(bench_throughput(oracle.port, k, duration))
                print(
                    f"  {k:>2d} clients: {res['throughput'][-1]['archs_per_s']:,.0f} archs/s",
                    flush=True,
                )
            res["throughput_open"] = []
            if OPEN_THROUGHPUT[0] in spaces:
                for k in OPEN_THROUGHPUT[1]:
                    res["throughput_open"].append(
                        bench_throughput(oracle.port, k, duration, OPEN_THROUGHPUT[0])
                    )
                    print(
                        f"  {OPEN_THROUGHPUT[0]} {k:>2d} clients: "
                        f"{res['throughput_open'][-1]['archs_per_s']:,.0f} archs/s",
                        flush=True,
                    )
            res["server_memory"]["rss_end_mb"] = proc_status_mb(oracle.pid, "VmRSS")
            res["server_memory"]["hwm_end_mb"] = proc_status_mb(oracle.pid, "VmHWM")
    finally:
        if oracle is not None:
            oracle.stop()
        echo.kill()
    res["meta"]["loadavg_after"] = load_average()
    res["meta"]["wall_s"] = time.perf_counter() - t_start
    res["targets"] = check_targets(res)
    print_report(res)
    print(f"\n(total {res['meta']['wall_s']:.0f} s)")
    return finish(args.json, res, announce=True)


if __name__ == "__main__":
    sys.exit(main())
