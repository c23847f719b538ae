"""Chaos benchmark: replicas die and the database restarts under mixed load.

``--replicas`` (3) ``oracle-server serve`` subprocesses on loopback share one PostgreSQL
database (a fresh ``--db-name``, dropped and re-created, so nothing else is touched).
``--clients`` (8) threads, each with its own SDK client balancing round-robin over every
replica's address, mix Rank (reads) and writes (RegisterDevice, then AddMeasurements to it)
for ``--duration`` (60) seconds, with a short think time between calls. Meanwhile:

- at ``--kill-at`` (20 s) replica 0 is SIGKILLed (no drain);
- at ``--restart-at`` (40 s) it is started again on the same port;
- at ``--pg-restart-at`` (50 s) PostgreSQL is restarted (``--pg-restart``: ``auto`` tries
  ``pg_ctlcluster``, ``pg_ctl`` and ``service``, in that order, and falls back to
  terminating every backend of the benchmark database, ``terminate``; ``none`` skips it).

Writes are retried by the client on UNAVAILABLE / DEADLINE_EXCEEDED with the *same* request
id (as a careful caller would), so every logical write is eventually acknowledged or given
up. At the end every acknowledged write is checked against the database: each of its
measurements must be stored exactly once (0 = lost, 2+ = applied twice).

Targets: failed read calls 0; acknowledged writes lost or duplicated 0; Rank p99 in the
5 s after the kill at most 10x the steady-state p99 (``--warmup`` to the kill) of the same
run. Prints a table and writes ``--json`` (``benchmarks/results/chaos.json``).

    python -m benchmarks.chaos --json benchmarks/results/chaos.json
    python -m benchmarks.chaos --duration 30 --kill-at 10 --restart-at 18 \\
        --pg-restart-at 24 --pg-restart terminate      # quick, leaves PostgreSQL alone

Bounded and loopback-only; the servers are killed on exit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks._cli import add_options, finish, load_average, parser
from client_sdk import OracleClient
from client_sdk.errors import OracleError
from client_sdk.spaces import get_space
from tests.support.launch import ServerProcess

SPACE = get_space("nasbench201")
NB = "nasbench201"
TABLE_DEVICES = ("pixel3", "samsung_a50", "1080ti_1", "silver_4114", "essential_ph_1")
#: Client-side retries of a write (same request id) stop after this long.
WRITE_GIVE_UP_S = 20.0
RETRYABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED")
#: The kill waits (at most 2 s) until this many calls are in flight, on any replica.
KILL_WITH_IN_FLIGHT = 3


# ---------------------------------------------------------------------- replicas
class Replica:
    """One ``oracle-server serve`` subprocess (``tests.support.launch.ServerProcess``) that
    can be SIGKILLed and started again on the same port."""

    def __init__(self, index: int, args: list[str]) -> None:
        self.index = index
        self.args = args
        self.port = 0
        self.server: ServerProcess | None = None

    def start(self, port: int = 0) -> Replica:
        # The launcher passes --port 0; a later --port wins (the restart keeps the address).
        self.server = ServerProcess([*self.args, *(["--port", str(port)] if port else [])])
        self.port = self.server.port
        return self

    def wait_serving(self, timeout_s: float = 180.0) -> None:
        assert self.server is not None
        self.server.wait_serving(timeout_s)

    def replays(self) -> float:
        """Writes this process answered from the record of their request id (a retry)."""
        assert self.server is not None
        url = f"http://127.0.0.1:{self.server.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        return sum(
            float(v)
            for v in re.findall(
                r"^oracle_idempotent_replays_total\{[^}]*\} ([0-9.e+]+)$", text, re.M
            )
        )

    def kill(self) -> None:
        if self.server is not None:
            self.server.kill()

    def terminate(self, timeout_s: float = 30.0) -> int | None:
        if self.server is None or self.server.proc.poll() is not None:
            return None if self.server is None else self.server.proc.returncode
        try:
            return self.server.terminate(timeout_s)
        except subprocess.TimeoutExpired:
            self.server.kill()
            return None


# ---------------------------------------------------------------------- database
def _psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def fresh_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(_psycopg_url(admin_url), autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(_psycopg_url(admin_url), autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_ready(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(_psycopg_url(url), connect_timeout=1) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _run(cmd: list[str], timeout_s: float = 60.0) -> tuple[bool, str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{' '.join(cmd)}: {exc}"
    text = (proc.stdout + proc.stderr).strip().replace("\n", " | ")[-300:]
    return proc.returncode == 0, f"{' '.join(cmd)}: rc={proc.returncode} {text}"


def _restart_commands(admin_url: str) -> dict[str, list[str]]:
    """Candidate restart commands of the PostgreSQL server at ``admin_url``, by method."""
    import psycopg

    commands: dict[str, list[str]] = {}
    port = "5432"
    data_dir = ""
    try:
        with psycopg.connect(_psycopg_url(admin_url), connect_timeout=3) as conn:
            port = str(conn.execute("SHOW port").fetchone()[0])
            data_dir = str(conn.execute("SHOW data_directory").fetchone()[0])
    except psycopg.Error:
        pass
    if shutil.which("pg_lsclusters") and shutil.which("pg_ctlcluster"):
        try:
            listing = subprocess.run(
                ["pg_lsclusters", "-h"], capture_output=True, text=True, timeout=10
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            listing = ""
        for line in listing.splitlines():  # "15 main 5432 online postgres <dir> <log>"
            parts = line.split()
            if len(parts) >= 3 and parts[2] == port:
                commands["pg_ctlcluster"] = [
                    "pg_ctlcluster",
                    "--skip-systemctl-redirect",
                    parts[0],
                    parts[1],
                    "restart",
                    "--mode",
                    "fast",
                ]
    if data_dir and shutil.which("pg_ctl"):
        cmd = [shutil.which("pg_ctl") or "pg_ctl", "-D", data_dir, "restart", "-m", "fast", "-w"]
        commands["pg_ctl"] = ["su", "postgres", "-c", " ".join(cmd)] if os.geteuid() == 0 else cmd
    if shutil.which("service"):
        commands["service"] = ["service", "postgresql", "restart"]
    return commands


def restart_postgres(method: str, admin_url: str, db_url: str, db_name: str) -> dict:
    """Restart PostgreSQL (or simulate it); returns what was done and how long it took."""
    import psycopg

    tried: list[str] = []
    t0 = time.monotonic()
    if method != "terminate":
        commands = _restart_commands(admin_url)
        order = ["pg_ctlcluster", "pg_ctl", "service"] if method == "auto" else [method]
        for name in order:
            if name not in commands:
                tried.append(f"{name}: not available")
                continue
            ok, out = _run(commands[name])
            tried.append(out)
            if ok:
                while not _pg_ready(db_url) and time.monotonic() - t0 < 60:
                    time.sleep(0.05)
                return {
                    "method": name,
                    "command": " ".join(commands[name]),
                    "seconds_until_accepting": round(time.monotonic() - t0, 2),
                    "tried": tried,
                }
    with psycopg.connect(_psycopg_url(admin_url), autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (db_name,),
        ).fetchall()
    return {
        "method": "terminate",
        "command": "pg_terminate_backend (all of the database)",
        "backends_terminated": len(rows),
        "seconds_until_accepting": round(time.monotonic() - t0, 2),
        "tried": tried,
    }


# ------------------------------------------------------------------------ load
@dataclass
class Write:
    client: int
    kind: str  # RegisterDevice | AddMeasurements
    device: str
    request_id: str
    genes: np.ndarray
    latency_ms: np.ndarray
    acked: bool = False
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class Call:
    start: float  # seconds since the load started
    seconds: float
    kind: str  # read | write
    ok: bool
    error: str = ""


class Load:
    def __init__(
        self,
        targets: list[str],
        clients: int,
        think_ms: float,
        write_prob: float,
        rank_archs: int,
        adds_per_device: int,
        run_id: str,
    ) -> None:
        self.targets = targets
        self.clients = clients
        self.think_s = think_ms / 1e3
        self.write_prob = write_prob
        self.rank_archs = rank_archs
        self.adds_per_device = adds_per_device
        self.run_id = run_id
        self.stop = threading.Event()
        self.t0 = 0.0
        self.calls: list[Call] = []
        self.writes: list[Write] = []
        self.lock = threading.Lock()
        self.table_lat = SPACE.table.device_column("raspi4")
        self.seq = 0
        self.in_flight = 0  # calls started and not finished, all clients

    def _enter(self) -> None:
        with self.lock:
            self.in_flight += 1

    def _leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def _now(self) -> float:
        return time.monotonic() - self.t0

    def _measurements(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        rows = rng.choice(SPACE.table.genes.shape[0], n, replace=False)
        with self.lock:
            self.seq += 1
            tag = self.seq
        # A unique relative perturbation (< 1e-4) makes every stored measurement traceable.
        lat = self.table_lat[rows] * (1.0 + 1e-7 * (tag * 16 + np.arange(n)))
        return SPACE.table.genes[rows].astype(np.int16), lat.astype(np.float64)

    def _write(self, c: OracleClient, w: Write) -> None:
        deadline = time.monotonic() + WRITE_GIVE_UP_S
        while not w.acked and time.monotonic() < deadline:
            w.attempts += 1
            start = self._now()
            t0 = time.perf_counter()
            self._enter()
            try:
                if w.kind == "RegisterDevice":
                    c.register_device(
                        w.device, NB, (w.genes, w.latency_ms), request_id=w.request_id
                    )
                else:
                    c.add_measurements(
                        w.device, (w.genes, w.latency_ms), NB, request_id=w.request_id
                    )
                w.acked = True
                self.calls.append(Call(start, time.perf_counter() - t0, "write", True))
            except OracleError as exc:
                error = f"{w.kind}: {exc.code.name}: {exc.message[:160]}"
                w.errors.append(error)
                self.calls.append(Call(start, time.perf_counter() - t0, "write", False, error))
                if exc.code.name not in RETRYABLE:
                    return
            finally:
                self._leave()
            if not w.acked:
                time.sleep(0.2)

    def client(self, index: int) -> None:
        rng = np.random.default_rng(1000 + index)
        devices: list[tuple[str, float]] = []  # (name, acknowledged at)
        adds = 0
        with OracleClient(self.targets, timeout_s=10) as c:
            while not self.stop.is_set():
                if rng.random() < self.write_prob:
                    if not devices or adds >= self.adds_per_device:
                        name = f"chaos-{self.run_id}-{index}-{len(devices)}"
                        w = Write(
                            index,
                            "RegisterDevice",
                            name,
                            str(uuid.uuid4()),
                            *self._measurements(rng, 10),
                        )
                    else:
                        w = Write(
                            index,
                            "AddMeasurements",
                            devices[-1][0],
                            str(uuid.uuid4()),
                            *self._measurements(rng, 2),
                        )
                    with self.lock:
                        self.writes.append(w)
                    self._write(c, w)
                    if w.acked and w.kind == "RegisterDevice":
                        devices.append((w.device, self._now()))
                        adds = 0
                    elif w.acked:
                        adds += 1
                else:
                    rows = rng.integers(0, SPACE.table.genes.shape[0], self.rank_archs)
                    names = list(rng.choice(TABLE_DEVICES, 2, replace=False))
                    # Own devices once every replica has surely polled them (eventual reads).
                    settled = [d for d, at in devices if self._now() - at > 3.0]
                    if settled:
                        names.append(settled[int(rng.integers(len(settled)))])
                    start = self._now()
                    t0 = time.perf_counter()
                    self._enter()
                    try:
                        c.rank(NB, SPACE.table.genes[rows], names, top_k=10)
                        self.calls.append(Call(start, time.perf_counter() - t0, "read", True))
                    except OracleError as exc:
                        error = f"Rank: {exc.code.name}: {exc.message[:160]}"
                        self.calls.append(
                            Call(start, time.perf_counter() - t0, "read", False, error)
                        )
                    finally:
                        self._leave()
                self.stop.wait(self.think_s * float(rng.uniform(0.5, 1.5)))


# ---------------------------------------------------------------------- verify
def verify(db_url: str, writes: list[Write]) -> dict:
    """Every acknowledged write's measurements stored exactly once (straight from the DB)."""
    import sqlalchemy as sa

    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT d.name, m.genes, m.latency_ms FROM oracle_measurements m "
                "JOIN oracle_devices d ON d.id = m.device_id WHERE d.space = :space"
            ),
            {"space": NB},
        ).all()
        request_rows = conn.execute(sa.text("SELECT count(*) FROM oracle_requests")).scalar()
    engine.dispose()
    stored = Counter((name, bytes(genes), float(lat)) for name, genes, lat in rows)

    def keys(w: Write) -> list[tuple[str, bytes, float]]:
        g8 = np.ascontiguousarray(w.genes, dtype=np.uint8)
        return [(w.device, g8[i].tobytes(), float(w.latency_ms[i])) for i in range(len(g8))]

    lost = duplicated = applied_unacked = 0
    problems: list[str] = []
    for w in writes:
        counts = [stored.get(k, 0) for k in keys(w)]
        if w.acked and any(n == 0 for n in counts):
            lost += 1
            problems.append(f"lost: {w.kind} {w.device} {w.request_id}")
        if any(n > 1 for n in counts):
            duplicated += 1
            problems.append(f"applied twice: {w.kind} {w.device} {w.request_id}")
        if not w.acked and all(n >= 1 for n in counts):
            applied_unacked += 1
    return {
        "acknowledged_writes": sum(w.acked for w in writes),
        "abandoned_writes": sum(not w.acked for w in writes),
        "lost_acknowledged_writes": lost,
        "duplicated_writes": duplicated,
        "applied_but_unacknowledged": applied_unacked,
        "writes_needing_client_retry": sum(w.acked and w.attempts > 1 for w in writes),
        "stored_measurements": len(rows),
        "recorded_request_ids": int(request_rows or 0),
        "problems": problems[:20],
    }


def converged(targets: list[str], db_url: str, run_id: str, timeout_s: float = 30.0) -> dict:
    """Every replica serves each benchmark device with the database's measurement count."""
    import sqlalchemy as sa

    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        want = dict(
            conn.execute(
                sa.text(
                    "SELECT d.name, count(m.id) FROM oracle_devices d "
                    "LEFT JOIN oracle_measurements m ON m.device_id = d.id "
                    "WHERE d.name LIKE :p GROUP BY d.name"
                ),
                {"p": f"chaos-{run_id}-%"},
            ).all()
        )
    engine.dispose()
    t0 = time.monotonic()
    mismatched: list[str] = []
    while time.monotonic() - t0 < timeout_s:
        mismatched = []
        for target in targets:
            with OracleClient(target, timeout_s=10) as c:
                have = {
                    d.name: d.num_samples
                    for d in c.list_devices(NB)
                    if d.name.startswith(f"chaos-{run_id}-")
                }
            if have != want:
                mismatched.append(target)
        if not mismatched:
            break
        time.sleep(0.5)
    return {
        "devices": len(want),
        "replicas_converged": not mismatched,
        "seconds": round(time.monotonic() - t0, 2),
        "mismatched": mismatched,
    }


# --------------------------------------------------------------------- report
def window_stats(calls: list[Call], kind: str, lo: float, hi: float) -> dict:
    sel = [c for c in calls if c.kind == kind and lo <= c.start < hi]
    ok = np.array([c.seconds for c in sel if c.ok]) * 1e3
    out = {
        "window_s": [round(lo, 1), round(hi, 1)],
        "calls": len(sel),
        "failed": sum(not c.ok for c in sel),
    }
    if ok.size:
        out.update(
            p50_ms=round(float(np.percentile(ok, 50)), 2),
            p99_ms=round(float(np.percentile(ok, 99)), 2),
            max_ms=round(float(ok.max()), 2),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__.split("\n\n")[0])
    add_options(
        ap, duration=60.0, replicas=3, clients=8, kill_at=20.0, restart_at=40.0, pg_restart_at=50.0
    )
    ap.add_argument(
        "--pg-restart",
        default="auto",
        choices=("auto", "pg_ctlcluster", "pg_ctl", "service", "terminate", "none"),
    )
    add_options(
        ap,
        warmup=(5.0, "seconds of load before the steady-state window starts"),
        think_ms=(50.0, "mean pause of a client between calls"),
        write_prob=(0.05, "share of client calls that are writes"),
        rank_archs=1000,
        adds_per_device=(
            6,
            "AddMeasurements per device before a client registers a new one "
            "(keeps head fits small)",
        ),
    )
    ap.add_argument(
        "--admin-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="PostgreSQL URL used to create/drop the benchmark database",
    )
    ap.add_argument("--db-name", default="chaos_bench")
    ap.add_argument("--keep-db", action="store_true")
    args = ap.parse_args(argv)
    if not (
        0 < args.warmup < args.kill_at < args.restart_at < args.duration
        and args.pg_restart_at < args.duration
    ):
        ap.error("need 0 < warmup < kill-at < restart-at < duration, pg-restart-at < duration")
    if args.replicas < 2:
        ap.error("--replicas must be at least 2")

    from benchmarks.common import nb201_serve_args
    from oracle_server.registry import Registry

    db_url = args.admin_url.rsplit("/", 1)[0] + f"/{args.db_name}"
    fresh_database(args.admin_url, args.db_name)
    Registry(db_url).close()  # the schema once, before the replicas race to create it
    tmp = Path(tempfile.mkdtemp(prefix="oracle-chaos-"))
    common = [
        *nb201_serve_args(),
        "--database-url",
        db_url,
        "--grace-s",
        "1",
        "--workers",
        "8",
        "--sync-interval-s",
        "0.5",
    ]
    replicas = [
        Replica(i, [*common, "--data-dir", str(tmp / f"r{i}")]) for i in range(args.replicas)
    ]
    run_id = uuid.uuid4().hex[:6]
    events: list[dict] = []
    load_samples: list[float] = []
    restarter = threading.Thread(target=lambda: None)
    restarter.start()
    try:
        for r in replicas:
            r.start()
        for r in replicas:
            r.wait_serving()
        targets = [f"127.0.0.1:{r.port}" for r in replicas]
        load = Load(
            targets,
            args.clients,
            args.think_ms,
            args.write_prob,
            args.rank_archs,
            args.adds_per_device,
            run_id,
        )
        threads = [
            threading.Thread(target=load.client, args=(i,), daemon=True)
            for i in range(args.clients)
        ]
        load.t0 = time.monotonic()
        for t in threads:
            t.start()

        def at(second: float) -> None:
            while load._now() < second:
                load_samples.append(load_average()[0])
                time.sleep(min(0.5, max(0.0, second - load._now())))

        victim = replicas[0]
        schedule = sorted(
            [
                (args.kill_at, "kill"),
                (args.restart_at, "restart"),
                *([] if args.pg_restart == "none" else [(args.pg_restart_at, "pg_restart")]),
            ]
        )
        for second, action in schedule:
            at(second)
            t_event = load._now()
            if action == "kill":
                # Kill with calls in flight (up to 2 s later): some are likely on the victim.
                while load.in_flight < KILL_WITH_IN_FLIGHT and load._now() < second + 2.0:
                    time.sleep(0.001)
                t_event = load._now()
                victim.kill()
                events.append(
                    {"t": round(t_event, 2), "event": f"SIGKILL replica 0 (port {victim.port})"}
                )
            elif action == "restart":  # in the background: the schedule goes on

                def restart(t_event: float = t_event) -> None:
                    victim.start(victim.port)
                    victim.wait_serving()
                    events.append(
                        {
                            "t": round(t_event, 2),
                            "event": f"replica 0 restarted on port {victim.port}",
                            "serving_after_s": round(load._now() - t_event, 2),
                        }
                    )

                restarter = threading.Thread(target=restart, daemon=True)
                restarter.start()
            else:
                info = restart_postgres(args.pg_restart, args.admin_url, db_url, args.db_name)
                events.append({"t": round(t_event, 2), "event": "PostgreSQL restart", **info})
        at(args.duration)
        load.stop.set()
        restarter.join(120)
        for t in threads:
            t.join(WRITE_GIVE_UP_S + 30)
        wall = load._now()
        result_verify = verify(db_url, load.writes)
        result_converged = converged(targets, db_url, run_id)
        replays = [r.replays() for r in replicas]
        exits = [r.terminate() for r in replicas]
    finally:
        for r in replicas:
            r.kill()
        if not args.keep_db:
            try:
                drop_database(args.admin_url, args.db_name)
            except Exception as exc:  # reported, not fatal
                print(f"could not drop database {args.db_name}: {exc}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)

    calls = load.calls
    windows = {
        "steady": (args.warmup, args.kill_at),
        "kill_5s": (args.kill_at, args.kill_at + 5.0),
        "one_replica_down": (args.kill_at, args.restart_at),
        "after_restart": (args.restart_at, min(args.pg_restart_at, args.duration)),
        "pg_restart": (args.pg_restart_at, args.duration),
        "whole_run": (0.0, wall + 1),
    }
    reads = {k: window_stats(calls, "read", lo, hi) for k, (lo, hi) in windows.items()}
    writes = {k: window_stats(calls, "write", lo, hi) for k, (lo, hi) in windows.items()}
    failed_reads = sum(1 for c in calls if c.kind == "read" and not c.ok)
    kill_t = next((e["t"] for e in events if e["event"].startswith("SIGKILL")), args.kill_at)
    in_flight = Counter(c.kind for c in calls if c.start <= kill_t <= c.start + c.seconds)
    steady_p99 = reads["steady"].get("p99_ms", float("nan"))
    kill_p99 = reads["kill_5s"].get("p99_ms", float("nan"))
    ratio = kill_p99 / steady_p99 if steady_p99 else float("nan")
    targets_met = {
        "failed_reads_0": failed_reads == 0,
        "no_lost_or_duplicated_writes": result_verify["lost_acknowledged_writes"] == 0
        and result_verify["duplicated_writes"] == 0,
        "kill_p99_within_10x_steady": bool(ratio <= 10.0),
    }
    result = {
        "config": {
            k: getattr(args, k)
            for k in (
                "duration",
                "replicas",
                "clients",
                "kill_at",
                "restart_at",
                "pg_restart_at",
                "pg_restart",
                "warmup",
                "think_ms",
                "write_prob",
                "rank_archs",
                "adds_per_device",
                "db_name",
            )
        },
        "events": sorted(events, key=lambda e: e["t"]),
        "failed_reads": failed_reads,
        "read_error_samples": sorted({c.error for c in calls if c.kind == "read" and not c.ok})[
            :10
        ],
        "write_attempt_errors": sorted({c.error for c in calls if c.kind == "write" and not c.ok})[
            :10
        ],
        "writes": result_verify,
        "calls_in_flight_at_kill": dict(in_flight),
        "write_replays_by_replica": replays,
        "convergence": result_converged,
        "reads_by_window": reads,
        "writes_by_window": writes,
        "kill_p99_over_steady_p99": round(ratio, 2),
        "targets_met": targets_met,
        "ok": all(targets_met.values()),
        "replica_exit_codes": exits,
        "load_average_1m": {
            "mean": round(float(np.mean(load_samples)), 2),
            "max": round(float(np.max(load_samples)), 2),
        },
        "machine": {
            "note": "replicas, clients and PostgreSQL on one host, CPUs shared with other work"
        },
        "wall_s": round(wall, 1),
    }

    print(
        f"{'window':18s} {'reads':>6s} {'failed':>6s} {'p50 ms':>8s} {'p99 ms':>8s} "
        f"{'max ms':>8s} {'writes':>6s} {'w.fail':>6s} {'w.p99':>8s}"
    )
    for name in windows:
        r, w = reads[name], writes[name]
        print(
            f"{name:18s} {r['calls']:6d} {r['failed']:6d} {r.get('p50_ms', 0):8.1f} "
            f"{r.get('p99_ms', 0):8.1f} {r.get('max_ms', 0):8.1f} {w['calls']:6d} "
            f"{w['failed']:6d} {w.get('p99_ms', 0):8.1f}"
        )
    for e in sorted(events, key=lambda e: e["t"]):
        print(
            f"  t={e['t']:5.1f} s  {e['event']}"
            + (f" via {e['method']} ({e['seconds_until_accepting']} s)" if "method" in e else "")
            + (f", SERVING after {e['serving_after_s']} s" if "serving_after_s" in e else "")
        )
    v = result_verify
    print(
        f"failed reads {failed_reads}; writes: {v['acknowledged_writes']} acknowledged, "
        f"{v['lost_acknowledged_writes']} lost, {v['duplicated_writes']} applied twice, "
        f"{v['abandoned_writes']} abandoned ({v['applied_but_unacknowledged']} of them "
        f"applied), {v['writes_needing_client_retry']} needed a client retry, "
        f"{sum(replays):.0f} answered from their request id's record (replays)"
    )
    print(f"calls in flight at the kill (on any replica): {dict(in_flight)}")
    print(
        f"Rank p99: steady {steady_p99} ms, first 5 s after the kill {kill_p99} ms "
        f"({ratio:.1f}x); load average {result['load_average_1m']}; replicas converged: "
        f"{result_converged['replicas_converged']}; targets met: {result['ok']}"
    )
    return finish(args.json, result, ok=result["ok"])


if __name__ == "__main__":
    sys.exit(main())
