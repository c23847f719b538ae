"""Test helpers: servers on port 0 (in-process or as a subprocess), PostgreSQL access."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
#: Proxy artifacts shared by every test run on this checkout (built once, then loaded).
TEST_CACHE = Path(os.environ.get("ORACLE_TEST_CACHE", REPO / ".oracle" / "test-cache"))
PG_URL = os.environ.get("ORACLE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

HELP_NB201_TRAIN = (
    "1080ti_1", "1080ti_32", "1080ti_256", "silver_4114", "silver_4210r", "samsung_a50",
    "pixel3", "essential_ph_1", "samsung_s7",
)
HELP_NB201_TEST = ("titan_rtx_256", "gold_6226", "fpga", "pixel2", "raspi4", "eyeriss")
HELP_NB201_REFS = (11982, 431, 55, 9, 14451, 8636, 9881, 13479, 6196, 1462)


def nb201_non_train_devices() -> tuple[str, ...]:
    """Every NB201 table device outside HELP's meta-train set (held out of the proxy)."""
    from client_sdk.spaces import get_space

    return tuple(d for d in get_space("nasbench201").table.devices if d not in HELP_NB201_TRAIN)


def postgres_available() -> str | None:
    """None if the local PostgreSQL answers, else the reason."""
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL at {PG_URL} not reachable: {exc.__class__.__name__}"
    return None


def unique_name(prefix: str = "dev") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_serving(port: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"server on {port} not SERVING after {timeout_s} s")


class ServerProcess:
    """``oracle-server serve`` in a subprocess; learns its ports from the JSON log."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oracle_server", "serve", "--port", "0", "--host",
             "127.0.0.1", "--metrics-port", "0", "--log-format", "json", *args],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=full_env,
            cwd=REPO,
        )
        self.lines: list[str] = []
        self.port = 0
        self.metrics_port = -1
        self._found = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._found.wait(120) or not self.port:
            self.kill()
            raise RuntimeError("server did not start:\n" + "\n".join(self.lines[-30:]))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("msg") == "listening":
                self.port, self.metrics_port = rec["port"], rec["metrics_port"]
                self._found.set()
        self._found.set()

    def wait_serving(self, timeout_s: float = 180.0) -> ServerProcess:
        wait_serving(self.port, timeout_s)
        return self

    def terminate(self, timeout_s: float = 30.0) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def server_process(args: list[str], env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    srv = ServerProcess(args, env)
    try:
        yield srv
    finally:
        srv.kill()


#: How long a test waits for a write on one replica to show on another: the poll interval
#: (0.2-0.5 s) plus a head refit. Generous so that a loaded CI machine does not fail a
#: correctness test; the typical figure (< 1 s) is reported by `make cluster-demo`.
PROPAGATION_DEADLINE_S = 5.0
