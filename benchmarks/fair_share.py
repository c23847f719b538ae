"""Fair share benchmark (issue #18): a heavy tenant at 10x its quota vs a light tenant's p99.

One oracle subprocess (NAS-Bench-201 by default, proxy artifacts from the test cache) with a
tokens file of two tenants:

* ``heavy``: quota ``max_concurrent_rpcs: 1`` (tokens-file override). It runs ``--heavy-
  clients`` (10) threads in their own process, each looping over Rank calls of
  ``--heavy-archs`` (100k) fresh architectures x ``--heavy-devices`` devices: 10x its quota.
  A refused call (RESOURCE_EXHAUSTED) waits the server's RetryInfo delay, as the SDK's
  ``Overloaded.retry_after`` advises, then tries again.
  ``--heavy-rate-limit`` adds a calls-per-second quota, ``--heavy-work-limit`` a work quota
  (architectures x devices per second, tokens-file ``work_limit``).
* ``light``: one closed-loop client (this process) of small Rank calls (``--light-archs``,
  100 architectures, 1 device), fresh architectures each call, timed per call.

Phases, all in this one run and on the same machine:

1. ``idle``: the light tenant alone (the baseline);
2. ``contended``: light + heavy, fair share on;
3. ``idle-again``: the light tenant alone once more (drift check of the baseline);
4. ``heavy-elsewhere`` (with ``--interference``): the heavy tenant against a second server
   on the same machine: the machine's CPU contention alone;
5. ``no-fair-share`` (unless ``--skip-unlimited``): light + heavy against a second server
   whose tenants have no limits: what the fair share buys.

Target: light p99 in ``contended`` within 2x of ``idle``. The machine's load average is
recorded per phase: the VM is shared, so compare phases of one run, not runs.

    python -m benchmarks.fair_share [--duration-s 20] [--json benchmarks/results/fair_share.json]

``--redis`` (issue 28) runs the shared-limits suite instead, against a ``redis-server`` of
its own (no persistence, on a free port): the light tenant's p99 idle vs contended, client-
side and server-side (``oracle_tenant_request_seconds{method="Rank", tenant="light"}``
scraped from every replica before and after each phase), on one replica and on three
replicas sharing the Redis limits (round-robin client; the light tenant has a rate limit far
above its traffic so each of its calls takes a shared token); the accepted rate of a tenant
limited to R calls/s (``--capped-rate``) offering 10 R through round robin over three
replicas, with shared and with per-replica limits (target R +/- 10 %; per replica ~3 R);
Redis killed halfway through such a run while another tenant reads (target: 0 failed
reads, fail-open counted); and the Lua call's p50 on loopback (target <= 0.2 ms)::

    python -m benchmarks.fair_share --redis [--json benchmarks/results/fair_share_redis.json]

Server settings under test (recorded under ``meta.server_settings``): ``--large-call-work
N`` (a Rank above N architectures x devices computes in chunks and yields to small calls in
flight; 0 = off), ``--gil-switch-interval-ms X`` (``sys.setswitchinterval`` in every server),
``--server-args "..."`` (any other ``oracle-server serve`` flags). ``--heavy-nice N`` runs the
heavy tenant's client process at a lower OS priority (``os.nice(N)``), to tell the load
generator's own share of the 2 cores from what the server does; ``--interference`` measures
the machine's contention alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import multiprocessing as mp
import os
import secrets
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks._cli import RESULTS, ROOT, add_options, load_average, parser, write_json
from benchmarks.common import TEST_CACHE, nb201_non_train_devices
from tests.support.launch import (
    RedisProcess,
    RedisUnavailable,
    ServerProcess,
)

RANK_METHOD = "/latency_oracle.v1.LatencyOracle/Rank"
MAX_MESSAGE = 256 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]
TARGET_RATIO = 2.0


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _requests(space_name: str, n: int, devices: list[str], count: int, seed: int) -> list[bytes]:
    from client_sdk import _requests as rq
    from client_sdk.spaces import get_space

    space = get_space(space_name)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        msg, _ = rq.archs_pb(space.sample(n, rng))
        out.append(
            rq.rank_request(space.name, msg, devices, None, None, False, None).SerializeToString()
        )
    return out


def _retry_after(err: grpc.RpcError) -> float:
    from client_sdk.errors import from_rpc_error

    return from_rpc_error(err).retry_after or 0.1


def _target(where: int | str) -> str:
    """A port (one server on loopback) or a target string (``ipv4:a,b,c``: round robin)."""
    return f"127.0.0.1:{where}" if isinstance(where, int) else where


def _options(target: str) -> list:
    if target.startswith("ipv4:"):  # several replicas: one subchannel each, round robin
        return [*CHANNEL_OPTIONS, ("grpc.lb_policy_name", "round_robin")]
    return CHANNEL_OPTIONS


def heavy_main(port: int | str, token: str, args: dict, ready, stop, out) -> None:
    """The heavy tenant: ``clients`` threads, each a Rank loop; refused calls back off.
    ``heavy_nice`` > 0: this process runs at that lower OS priority (``os.nice``)."""
    if args.get("heavy_nice"):
        os.nice(args["heavy_nice"])
    reqs = _requests(
        args["heavy_space"], args["heavy_archs"], args["heavy_devices_list"], 4, seed=1
    )
    stats = {"ok": 0, "refused": 0, "other": 0, "ok_s": []}
    lock = threading.Lock()
    meta = (("authorization", f"Bearer {token}"),)

    def run(i: int) -> None:
        target = _target(port)
        with grpc.insecure_channel(target, options=_options(target)) as ch:
            rank = ch.unary_unary(RANK_METHOD, _registered_method=False)
            k = i
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    rank(reqs[k % len(reqs)], timeout=120, metadata=meta)
                    with lock:
                        stats["ok"] += 1
                        stats["ok_s"].append(time.perf_counter() - t0)
                except grpc.RpcError as err:
                    if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        with lock:
                            stats["refused"] += 1
                        stop.wait(_retry_after(err))
                    else:
                        with lock:
                            stats["other"] += 1
                k += 1

    threads = [
        threading.Thread(target=run, args=(i,), daemon=True) for i in range(args["heavy_clients"])
    ]
    ready.set()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(stats)


def light_run(port: int | str, token: str, args: dict, duration_s: float) -> dict:
    reqs = _requests("nasbench201", args["light_archs"], ["pixel3"], 64, seed=2)
    meta = (("authorization", f"Bearer {token}"),)
    times: list[float] = []
    errors = 0
    target = _target(port)
    with grpc.insecure_channel(target, options=_options(target)) as ch:
        rank = ch.unary_unary(RANK_METHOD, _registered_method=False)
        for req in reqs[:10]:  # warm-up
            rank(req, timeout=60, metadata=meta)
        load0 = load_average()
        deadline = time.perf_counter() + duration_s
        k = 0
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                rank(reqs[k % len(reqs)], timeout=60, metadata=meta)
                times.append(time.perf_counter() - t0)
            except grpc.RpcError:
                errors += 1
            k += 1
    return {
        "calls": len(times),
        "errors": errors,
        "p50_ms": pct(times, 50) * 1e3,
        "p90_ms": pct(times, 90) * 1e3,
        "p99_ms": pct(times, 99) * 1e3,
        "mean_ms": float(np.mean(times)) * 1e3,
        "max_ms": float(np.max(times)) * 1e3,
        "loadavg_start": load0,
        "loadavg_end": load_average(),
    }


def phase(
    name: str,
    port: int | str,
    tokens: dict[str, str],
    args: dict,
    heavy: bool,
    heavy_port: int | str | None = None,
    metrics_ports: list[int] | None = None,
) -> dict:
    """``heavy_port``: the heavy tenant calls another server (same machine): what the light
    tenant then sees is CPU contention alone, which no server-side share can remove."""
    ctx = mp.get_context("spawn")
    proc = None
    if heavy:
        ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
        proc = ctx.Process(
            target=heavy_main,
            args=(heavy_port or port, tokens["heavy"], args, ready, stop, out),
            daemon=True,
        )
        proc.start()
        ready.wait(120)
        time.sleep(args["settle_s"])  # heavy tenant at steady state before timing
    before = scrape(metrics_ports) if metrics_ports else None
    t0 = time.perf_counter()
    light = light_run(port, tokens["light"], args, args["duration_s"])
    elapsed = time.perf_counter() - t0
    if before is not None:  # the same calls, timed by the servers (admission + handling)
        after = scrape(metrics_ports)
        for q in (50, 99):
            light[f"server_p{q}_ms"] = hist_quantile(before, after, "Rank", "light", q / 100) * 1e3
    row = {"phase": name, "light": light}
    if proc is not None:
        stop.set()
        stats = out.get(timeout=180)
        proc.join(30)
        ok_s = stats.pop("ok_s")
        n_arch = args["heavy_archs"] * len(args["heavy_devices_list"])
        row["heavy"] = {
            **stats,
            "ok_p50_ms": pct(ok_s, 50) * 1e3 if ok_s else None,
            "archs_per_s": stats["ok"] * n_arch / (elapsed + args["settle_s"]),
            "concurrent_clients": args["heavy_clients"],
        }
    print(_line(row), flush=True)
    return row


def _line(row: dict) -> str:
    li = row["light"]
    text = (
        f"  {row['phase']:14s} light {li['calls']:5d} calls  p50 {li['p50_ms']:7.2f}  "
        f"p99 {li['p99_ms']:7.2f}  max {li['max_ms']:7.1f} ms  err {li['errors']}"
    )
    if "heavy" in row:
        h = row["heavy"]
        text += (
            f" | heavy ok {h['ok']:4d} refused {h['refused']:5d} "
            f"{h['archs_per_s'] / 1e6:6.2f} M archs/s"
        )
    if "server_p99_ms" in li:
        text += f" | server p50 {li['server_p50_ms']:6.2f} p99 {li['server_p99_ms']:6.2f} ms"
    return text + f" | load {li['loadavg_end'][0]:.2f}"


def _write_tokens(path: Path, tokens: dict[str, str], quotas: dict[str, str | None]) -> Path:
    """A tokens file at ``path``: for each tenant of ``quotas`` (in order) its token's sha256
    and its quota text (None: the bare ``sha256:`` form, no quota)."""
    lines = []
    for name, quota in quotas.items():
        digest = hashlib.sha256(tokens[name].encode()).hexdigest()
        if quota is None:
            lines.append(f"{name}: sha256:{digest}\n")
        else:
            lines.append(f"{name}: {{sha256: {digest}{', ' if quota else ''}{quota}}}\n")
    path.write_text("".join(lines))
    return path


def _heavy_quota(rate_limit: float = 0.0, work_limit: float = 0.0) -> str:
    """The heavy tenant's quota: one RPC at a time, and the rate / work limits when > 0."""
    quota = "max_concurrent_rpcs: 1"
    if rate_limit > 0:
        quota += f", rate_limit: {rate_limit}, burst: 1"
    if work_limit > 0:
        quota += f", work_limit: {work_limit:.0f}"
    return quota


def _tokens_file(
    directory: Path,
    tokens: dict[str, str],
    limited: bool,
    rate_limit: float = 0.0,
    work_limit: float = 0.0,
) -> Path:
    heavy = _heavy_quota(rate_limit, work_limit) if limited else ""
    path = directory / f"tokens-{'limited' if limited else 'open'}.yaml"
    return _write_tokens(path, tokens, {"heavy": heavy, "light": None})


def server_args(args: dict, data_dir: Path, tokens_file: Path, limited: bool) -> list[str]:
    """``oracle-server serve`` flags (ServerProcess adds the ports and the JSON log)."""
    spaces = sorted({"nasbench201", args["heavy_space"]})
    argv = [
        "--data-dir",
        str(data_dir),
        "--cache-dir",
        str(args["cache_dir"]),
        "--spaces",
        ",".join(spaces),
        "--tokens-file",
        str(tokens_file),
        "--max-batch",
        str(max(args["heavy_archs"], 1000)),
    ]
    if "nasbench201" in spaces:
        argv += ["--holdout-devices", ",".join(nb201_non_train_devices())]
    if limited:
        argv += ["--tenant-max-concurrent-rpcs", str(args["tenant_limit"])]
    return argv + server_settings_args(args)


def server_settings_args(args: dict) -> list[str]:
    """The server settings under test: ``--large-call-work``, ``--gil-switch-interval-ms``
    (when given) and the free-form ``--server-args``."""
    argv = []
    if args.get("large_call_work") is not None:
        argv += ["--large-call-work", str(args["large_call_work"])]
    if args.get("gil_switch_interval_ms") is not None:
        argv += ["--gil-switch-interval-ms", str(args["gil_switch_interval_ms"])]
    return argv + shlex.split(args.get("extra_server_args") or "")


def server_settings(args: dict) -> dict:
    """What the servers ran with (defaults filled in), for the JSON."""
    from oracle_server.settings import Settings

    defaults = Settings()
    return {
        "large_call_work": defaults.large_call_work
        if args.get("large_call_work") is None
        else args["large_call_work"],
        "gil_switch_interval_ms": defaults.gil_switch_interval_ms
        if args.get("gil_switch_interval_ms") is None
        else args["gil_switch_interval_ms"],
        "extra_args": shlex.split(args.get("extra_server_args") or ""),
        "heavy_nice": args.get("heavy_nice", 0),
    }


# ------------------------------------------------------------------ server-side figures
def scrape(ports: list[int]) -> dict[tuple, float]:
    """Every sample of the replicas' /metrics, summed over the replicas."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple, float] = {}
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                out[key] = out.get(key, 0.0) + sample.value
    return out


def metric_sum(snapshot: dict[tuple, float], name: str) -> float:
    return sum(v for (n, _), v in snapshot.items() if n == name)


def hist_quantile(before: dict, after: dict, method: str, tenant: str, q: float) -> float:
    """``histogram_quantile`` of ``oracle_tenant_request_seconds{method, tenant}`` over the
    calls between two scrapes (linear within a bucket, as Prometheus does)."""
    name = "oracle_tenant_request_seconds_bucket"
    buckets = []
    for (n, labels), value in after.items():
        d = dict(labels)
        if n == name and d.get("method") == method and d.get("tenant") == tenant:
            le = float(d["le"])
            buckets.append((le, value - before.get((n, labels), 0.0)))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = le, count
    return lower


# ------------------------------------------------------------- shared limits (issue 28)
def RedisServer(port: int = 0) -> RedisProcess:
    """A private ``redis-server`` (no persistence) that the benchmark can stop mid-run."""
    try:
        return RedisProcess(port)
    except RedisUnavailable as exc:
        raise SystemExit(str(exc)) from None


def lua_bench(url: str, calls: int = 3000) -> dict:
    """The added cost per admitted call: one EVALSHA of the bucket script on loopback."""
    from oracle_server.limits import TAKE, BucketSpec, SharedLimits

    shared = SharedLimits(url)
    shared.check()
    spec = [BucketSpec("rate", 1e9, 1e9, 1.0, TAKE)]
    for _ in range(200):
        shared.run("bench", spec, "admit")
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        shared.run("bench", spec, "admit")
        times.append(time.perf_counter() - t0)
    shared.close()
    return {
        "calls": calls,
        "p50_ms": pct(times, 50) * 1e3,
        "p90_ms": pct(times, 90) * 1e3,
        "p99_ms": pct(times, 99) * 1e3,
        "target_p50_ms": 0.2,
    }


def rate_run(
    target: str,
    token: str,
    offered: float,
    duration_s: float,
    settle_s: float,
    metrics_ports: list[int],
    kill=None,
    kill_at_s: float = 0.0,
    reader_token: str | None = None,
) -> dict:
    """The capped tenant offers ``offered`` calls/s (open loop, small Ranks) through
    ``target``; counts what is accepted per second after ``settle_s`` (the first burst),
    and failures other than RESOURCE_EXHAUSTED. ``kill`` is called at ``kill_at_s``
    (e.g. stop Redis); ``reader_token``: another tenant reads in a closed loop meanwhile."""
    reqs = _requests("nasbench201", 10, ["pixel3"], 16, seed=3)
    meta = (("authorization", f"Bearer {token}"),)
    events: list[tuple[float, str]] = []
    lock = threading.Lock()
    threads_n = 4
    start = time.perf_counter() + 0.5
    end = start + duration_s

    def offer(i: int) -> None:
        with grpc.insecure_channel(target, options=_options(target)) as ch:
            rank = ch.unary_unary(RANK_METHOD, _registered_method=False)
            k = i
            while True:
                due = start + k / offered
                if due >= end:
                    return
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                try:
                    rank(reqs[k % len(reqs)], timeout=30, metadata=meta)
                    what = "ok"
                except grpc.RpcError as err:
                    what = (
                        "refused"
                        if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                        else f"failed:{err.code().name}"
                    )
                with lock:
                    events.append((due - start, what))
                k += threads_n

    reads = {"ok": 0, "failed": 0, "refused": 0}

    def reader() -> None:
        rmeta = (("authorization", f"Bearer {reader_token}"),)
        with grpc.insecure_channel(target, options=_options(target)) as ch:
            rank = ch.unary_unary(RANK_METHOD, _registered_method=False)
            k = 0
            while time.perf_counter() < end:
                try:
                    rank(reqs[k % len(reqs)], timeout=30, metadata=rmeta)
                    reads["ok"] += 1
                except grpc.RpcError as err:
                    key = (
                        "refused" if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED else "failed"
                    )
                    reads[key] += 1
                k += 1
                time.sleep(0.005)

    before = scrape(metrics_ports)
    workers = [threading.Thread(target=offer, args=(i,), daemon=True) for i in range(threads_n)]
    if reader_token:
        workers.append(threading.Thread(target=reader, daemon=True))
    for t in workers:
        t.start()
    if kill is not None:
        time.sleep(max(0.0, start + kill_at_s - time.perf_counter()))
        kill()
    for t in workers:
        t.join(duration_s + 60)
    after = scrape(metrics_ports)

    def window(lo: float, hi: float) -> dict:
        ok = sum(1 for t, w in events if lo <= t < hi and w == "ok")
        return {"seconds": hi - lo, "accepted": ok, "accepted_per_s": ok / max(hi - lo, 1e-9)}

    row = {
        "offered_per_s": offered,
        "duration_s": duration_s,
        "settle_s": settle_s,
        "ok": sum(1 for _, w in events if w == "ok"),
        "refused": sum(1 for _, w in events if w == "refused"),
        "failed": sum(1 for _, w in events if w.startswith("failed")),
    }
    if kill is None:
        row["steady"] = window(settle_s, duration_s)
    else:
        row["before_stop"] = window(settle_s, kill_at_s)
        row["after_stop"] = window(kill_at_s + settle_s, duration_s)
    if reader_token:
        row["reads"] = reads
    for name in ("oracle_limits_fail_open_total", "oracle_limits_backend_errors_total"):
        row[name] = metric_sum(after, name) - metric_sum(before, name)
    row["oracle_limits_backend_up"] = metric_sum(after, "oracle_limits_backend_up")
    return row


def _redis_tokens(directory: Path, tokens: dict[str, str], a) -> Path:
    quotas = {
        "heavy": _heavy_quota(a.heavy_rate_limit, a.heavy_work_limit),
        # a limit far above what it sends: every light call still takes its shared token
        "light": "rate_limit: 100000, burst: 100000",
        "capped": f"rate_limit: {a.capped_rate}",
    }
    return _write_tokens(directory / "tokens-redis.yaml", tokens, quotas)


def _replicas(n: int, args: dict, d: Path, tokens_file: Path, limits_url: str) -> list:
    servers = []
    for i in range(n):
        argv = server_args(args, d / f"r{i}", tokens_file, True)
        if limits_url:
            argv += ["--limits-url", limits_url]
        servers.append(ServerProcess(argv, cwd=ROOT))
    for srv in servers:
        srv.wait_serving()
    return servers


def _stop_all(servers: list) -> None:
    for srv in servers:
        srv.kill()


def _round_robin(servers: list) -> str:
    """The gRPC target of ``servers``: round robin over their addresses (one: its own)."""
    if len(servers) == 1:
        return servers[0].target
    return f"ipv4:{','.join(s.target for s in servers)}"


def _capped_rate_run(a, servers: list, token: str, **kw: Any) -> dict:
    """:func:`rate_run` of the capped tenant offering 10 R calls/s (R = ``--capped-rate``)
    round robin over ``servers``; ``kw``: its further options."""
    ports = [s.metrics_port for s in servers]
    offered = 10 * a.capped_rate
    return rate_run(
        _round_robin(servers), token, offered, a.rate_duration_s, a.settle_s, ports, **kw
    )


def redis_suite(a, args: dict, d: Path) -> dict:
    """Issue 28: light p99 idle vs contended, client- and server-side, on one replica and on
    three replicas sharing Redis limits (round robin); the capped tenant's accepted rate over
    three replicas with per-replica vs shared limits; Redis stopped mid-run."""
    import uuid

    tokens = {name: secrets.token_urlsafe(24) for name in ("heavy", "light", "capped")}
    tokens_file = _redis_tokens(d, tokens, a)
    out: dict = {"phases": []}
    r = a.capped_rate
    with RedisServer(a.redis_port) as rs:
        url = rs.url(f"bench:{uuid.uuid4().hex[:8]}:")
        out["lua_call"] = lua_bench(url)
        print(
            f"  Lua bucket call on loopback: p50 {out['lua_call']['p50_ms']:.3f} ms, p99 "
            f"{out['lua_call']['p99_ms']:.3f} ms",
            flush=True,
        )
        for n in (1, 3):
            servers = _replicas(n, args, d / f"shared{n}", tokens_file, url)
            try:
                target = _round_robin(servers)
                mports = [s.metrics_port for s in servers]
                for heavy in (False, True):
                    name = f"{n}r-{'contended' if heavy else 'idle'}"
                    out["phases"].append(
                        phase(name, target, tokens, args, heavy=heavy, metrics_ports=mports)
                    )
                if n == 3:
                    row = _capped_rate_run(a, servers, tokens["capped"])
                    out["accepted_shared"] = row
                    print(
                        f"  capped tenant R={r:g}/s offering 10R over 3 replicas, shared: "
                        f"{row['steady']['accepted_per_s']:.1f}/s accepted",
                        flush=True,
                    )
            finally:
                _stop_all(servers)
        servers = _replicas(3, args, d / "local3", tokens_file, "")
        try:
            row = _capped_rate_run(a, servers, tokens["capped"])
            out["accepted_per_replica"] = row
            print(
                f"  ... per-replica limits (no Redis): {row['steady']['accepted_per_s']:.1f}/s "
                "accepted",
                flush=True,
            )
        finally:
            _stop_all(servers)
    # Redis stopped mid-run: a Redis of our own, killed halfway
    with RedisServer() as rs:
        servers = _replicas(3, args, d / "outage3", tokens_file, rs.url("outage:"))
        try:
            row = _capped_rate_run(
                a,
                servers,
                tokens["capped"],
                kill=rs.stop,
                kill_at_s=a.rate_duration_s / 2,
                reader_token=tokens["light"],
            )
            out["redis_stopped"] = row
            print(
                f"  Redis stopped at {a.rate_duration_s / 2:g} s: accepted "
                f"{row['before_stop']['accepted_per_s']:.1f}/s before, "
                f"{row['after_stop']['accepted_per_s']:.1f}/s after (per-replica); failed "
                f"calls {row['failed']}, failed reads {row['reads']['failed']}, fail-open "
                f"decisions {row['oracle_limits_fail_open_total']:.0f}",
                flush=True,
            )
        finally:
            _stop_all(servers)
    by = {p["phase"]: p["light"] for p in out["phases"]}
    summary = {"capped_rate_limit": r}
    for n in (1, 3):
        idle, cont = by[f"{n}r-idle"], by[f"{n}r-contended"]
        summary[f"{n}r"] = {
            "server_p99_idle_ms": idle["server_p99_ms"],
            "server_p99_contended_ms": cont["server_p99_ms"],
            "server_p99_ratio": cont["server_p99_ms"] / idle["server_p99_ms"],
            "client_p99_idle_ms": idle["p99_ms"],
            "client_p99_contended_ms": cont["p99_ms"],
            "client_p99_ratio": cont["p99_ms"] / idle["p99_ms"],
            "met_server_side": bool(cont["server_p99_ms"] <= TARGET_RATIO * idle["server_p99_ms"]),
        }
    shared = out["accepted_shared"]["steady"]["accepted_per_s"]
    summary["accepted_shared_per_s"] = shared
    summary["accepted_shared_vs_R"] = shared / r
    summary["accepted_shared_met"] = bool(abs(shared / r - 1.0) <= 0.10)
    summary["accepted_per_replica_vs_R"] = (
        out["accepted_per_replica"]["steady"]["accepted_per_s"] / r
    )
    stop = out["redis_stopped"]
    summary["redis_stopped"] = {
        "failed_calls": stop["failed"],
        "failed_reads": stop["reads"]["failed"],
        "fail_open_counted": stop["oracle_limits_fail_open_total"],
        "met": bool(
            stop["failed"] == 0
            and stop["reads"]["failed"] == 0
            and stop["oracle_limits_fail_open_total"] > 0
        ),
    }
    summary["lua_call_p50_ms"] = out["lua_call"]["p50_ms"]
    summary["lua_call_met"] = bool(out["lua_call"]["p50_ms"] <= 0.2)
    out["summary"] = summary
    return out


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__.split("\n")[0])
    add_options(
        ap,
        duration_s=(20.0, "timed light calls per phase"),
        settle_s=(2.0, "heavy warm-up before timing"),
        heavy_clients=(10, "heavy concurrency (quota 1)"),
        heavy_archs=100_000,
        heavy_devices=1,
        heavy_space="nasbench201",
        light_archs=100,
        tenant_limit=(4, "server-wide per-tenant concurrency (light's share; heavy's is 1)"),
        heavy_rate_limit=(
            0.0,
            "heavy's quota also caps its calls per second (0: concurrency only)",
        ),
        heavy_work_limit=(
            0.0,
            "heavy's quota also caps its Rank work: architectures x devices per "
            "second (tokens file work_limit; 0: off)",
        ),
    )
    ap.add_argument(
        "--interference",
        action="store_true",
        help="also a phase with the heavy tenant on a second server: the machine's "
        "CPU contention alone (2 cores shared by both servers and clients)",
    )
    ap.add_argument(
        "--skip-unlimited", action="store_true", help="skip the no-fair-share comparison phase"
    )
    ap.add_argument(
        "--redis",
        action="store_true",
        help="issue 28 instead: shared Redis limits on 1 and 3 replicas "
        "(server-side p99 from oracle_tenant_request_seconds), the capped "
        "tenant's accepted rate, Redis stopped mid-run; starts its own "
        "redis-server (default JSON benchmarks/results/fair_share_redis.json)",
    )
    add_options(
        ap,
        redis_port=(0, "port of the benchmark's own redis-server (0: a free one)"),
        capped_rate=(20.0, "R: the capped tenant's rate limit (it offers 10 R calls/s)"),
        rate_duration_s=(20.0, "length of each accepted-rate run"),
    )
    ap.add_argument(
        "--large-call-work",
        type=int,
        default=None,
        help="servers' --large-call-work: Ranks above this many architectures x devices "
        "yield to small calls between chunks (0: off; default: the server's)",
    )
    ap.add_argument(
        "--gil-switch-interval-ms",
        type=float,
        default=None,
        help="servers' --gil-switch-interval-ms (default: the server's, 5 ms)",
    )
    ap.add_argument(
        "--server-args",
        dest="extra_server_args",
        default="",
        metavar='"FLAGS"',
        help="more oracle-server serve flags for every server started, one shell-quoted string",
    )
    ap.add_argument(
        "--heavy-nice",
        type=int,
        default=0,
        metavar="N",
        help="run the heavy tenant's client process at os.nice(N) (0: same priority)",
    )
    ap.add_argument(
        "--cache-dir",
        type=Path,
        default=TEST_CACHE,
        help="proxy artifacts (default: the test suite's cache)",
    )
    a = ap.parse_args(argv)
    if a.heavy_nice < 0:
        ap.error("--heavy-nice must be >= 0 (a lower priority; raising it needs root)")
    from client_sdk.spaces import get_space

    args = {k: v for k, v in vars(a).items() if k != "json"}
    args["cache_dir"] = a.cache_dir.resolve()
    args["heavy_devices_list"] = list(get_space(a.heavy_space).table.devices[: a.heavy_devices])
    tokens = {name: secrets.token_urlsafe(24) for name in ("heavy", "light")}
    t_start = time.perf_counter()
    res: dict = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "loadavg_before": load_average(),
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in args.items()},
            "server_settings": server_settings(args),
            "heavy": f"{a.heavy_clients} concurrent clients, quota max_concurrent_rpcs=1 (10x)"
            + (f" and rate_limit={a.heavy_rate_limit}/s" if a.heavy_rate_limit else "")
            + (
                f" and work_limit={a.heavy_work_limit:.0f} archs x devices/s"
                if a.heavy_work_limit
                else ""
            )
            + ", "
            f"Rank {a.heavy_archs} x {a.heavy_devices} device(s) in {a.heavy_space}, "
            "backs off by the RetryInfo delay when refused",
            "light": f"1 closed-loop client, Rank {a.light_archs} archs x 1 device (nasbench201)",
            "server": "subprocess oracle-server serve, 8 workers, max_concurrent_rpcs 64, "
            f"tenant_max_concurrent_rpcs {a.tenant_limit} (heavy: 1 by tokens file)"
            + (f", {' '.join(server_settings_args(args))}" if server_settings_args(args) else ""),
            "heavy_client": "its own process"
            + (f", os.nice({a.heavy_nice})" if a.heavy_nice else ", same OS priority"),
        }
    }
    if a.redis:
        print("fair share with shared Redis limits (issue 28):", flush=True)
        with tempfile.TemporaryDirectory(prefix="oracle-fair-redis-") as tmp:
            res.update(redis_suite(a, args, Path(tmp)))
        res["meta"]["loadavg_after"] = load_average()
        res["meta"]["wall_s"] = time.perf_counter() - t_start
        res["meta"]["light"] += " (rate_limit 100000/s: every call takes a shared token)"
        res["meta"]["replicas"] = (
            "subprocess servers, each its own SQLite registry (table "
            "devices only), sharing one redis-server on loopback"
        )
        print(json.dumps(res["summary"], indent=2))
        path = a.json or RESULTS / "fair_share_redis.json"
        write_json(path, res)
        print(f"wrote {path}")
        return 0
    phases = []
    with tempfile.TemporaryDirectory(prefix="oracle-fair-") as tmp:
        d = Path(tmp)
        print(
            "fair share (light tenant's Rank latency; heavy tenant at 10x its quota):", flush=True
        )
        heavy_quota = (a.heavy_rate_limit, a.heavy_work_limit)
        limited = server_args(args, d / "a", _tokens_file(d, tokens, True, *heavy_quota), True)
        with ServerProcess(limited, cwd=ROOT) as srv:
            srv.wait_serving()
            phases.append(phase("idle", srv.port, tokens, args, heavy=False))
            phases.append(phase("contended", srv.port, tokens, args, heavy=True))
            phases.append(phase("idle-again", srv.port, tokens, args, heavy=False))
            if a.interference:
                other = server_args(
                    args, d / "c", _tokens_file(d, tokens, True, *heavy_quota), True
                )
                with ServerProcess(other, cwd=ROOT) as srv2:
                    srv2.wait_serving()
                    phases.append(
                        phase(
                            "heavy-elsewhere",
                            srv.port,
                            tokens,
                            args,
                            heavy=True,
                            heavy_port=srv2.port,
                        )
                    )
        if not a.skip_unlimited:
            unlimited = server_args(args, d / "b", _tokens_file(d, tokens, False), False)
            with ServerProcess(unlimited, cwd=ROOT) as srv:
                srv.wait_serving()
                phases.append(phase("no-fair-share", srv.port, tokens, args, heavy=True))
    res["phases"] = phases
    by = {p["phase"]: p for p in phases}
    idle, cont = by["idle"]["light"], by["contended"]["light"]
    ratio = cont["p99_ms"] / idle["p99_ms"]
    # The strict reading: against the better (quieter) of the two idle phases of this run.
    strict = cont["p99_ms"] / min(idle["p99_ms"], by["idle-again"]["light"]["p99_ms"])
    res["summary"] = {
        "light_p99_idle_ms": idle["p99_ms"],
        "light_p99_contended_ms": cont["p99_ms"],
        "light_p99_idle_again_ms": by["idle-again"]["light"]["p99_ms"],
        "p99_ratio_contended_vs_idle": ratio,
        "target_ratio": TARGET_RATIO,
        "p99_ratio_contended_vs_best_idle": strict,
        "p50_ratio_contended_vs_idle": cont["p50_ms"] / idle["p50_ms"],
        "met_vs_idle": bool(ratio <= TARGET_RATIO),
        "met": bool(strict <= TARGET_RATIO),
        "heavy_refused_fraction": (
            by["contended"]["heavy"]["refused"]
            / max(1, by["contended"]["heavy"]["refused"] + by["contended"]["heavy"]["ok"])
        ),
    }
    if "no-fair-share" in by:
        res["summary"]["light_p99_no_fair_share_ms"] = by["no-fair-share"]["light"]["p99_ms"]
        res["summary"]["p99_ratio_no_fair_share_vs_idle"] = (
            by["no-fair-share"]["light"]["p99_ms"] / idle["p99_ms"]
        )
    res["meta"]["loadavg_after"] = load_average()
    res["meta"]["wall_s"] = time.perf_counter() - t_start
    print_table(res)
    if a.json:
        write_json(a.json, res)
        print(f"wrote {a.json}")
    return 0


def print_table(res: dict) -> None:
    print(
        "\nphase           light calls   p50 ms   p99 ms   p99/idle | heavy ok  refused  "
        "M archs/s | load avg (1 min)"
    )
    idle = res["phases"][0]["light"]["p99_ms"]
    for row in res["phases"]:
        li, h = row["light"], row.get("heavy")
        heavy = (
            f"{h['ok']:8d} {h['refused']:8d} {h['archs_per_s'] / 1e6:10.2f}"
            if h
            else f"{'-':>8s} {'-':>8s} {'-':>10s}"
        )
        print(
            f"{row['phase']:15s} {li['calls']:11d} {li['p50_ms']:8.2f} {li['p99_ms']:8.2f} "
            f"{li['p99_ms'] / idle:10.2f} | {heavy} | {li['loadavg_start'][0]:.2f} -> "
            f"{li['loadavg_end'][0]:.2f}"
        )
    s = res["summary"]

    def flag(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print(
        f"\nlight p99 contended / idle = {s['p99_ratio_contended_vs_idle']:.2f} "
        f"({flag(s['met_vs_idle'])}), / the better idle phase "
        f"{s['p99_ratio_contended_vs_best_idle']:.2f} ({flag(s['met'])}; target <= "
        f"{s['target_ratio']:.0f}); p50 ratio {s['p50_ratio_contended_vs_idle']:.2f}; "
        "heavy calls refused "
        f"{s['heavy_refused_fraction']:.0%}; load avg before {res['meta']['loadavg_before']}, "
        f"after {res['meta']['loadavg_after']}; {res['meta']['wall_s']:.0f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
