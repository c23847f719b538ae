"""Start ``oracle-server serve`` in a subprocess on free ports: the one launcher that the tests
and the benchmarks share (not part of the server package: benchmarks run from the checkout
root, so they import it as ``tests.support.launch``).

    from tests.support.launch import ServerProcess

    with ServerProcess(["--spaces", "nasbench201", "--data-dir", tmp]) as srv:
        srv.wait_serving()
        client = OracleClient(srv.target)

The server binds gRPC and metrics on port 0 (``--port 0 --metrics-port 0``) and logs JSON; the
launcher reads the real ports from its ``listening`` log record, so parallel servers never
collide. Leaving the ``with`` block kills the process (SIGKILL); :meth:`ServerProcess.terminate`
is the graceful SIGTERM (drain) path and :meth:`ServerProcess.stop` tries it first.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = [
    "RedisProcess",
    "RedisUnavailable",
    "ServerProcess",
    "free_port",
    "stop_process",
    "wait_serving",
]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the kernel's pick for a bind to port 0; it may be
    taken again before the caller binds it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGTERM ``proc`` if it still runs and wait up to ``timeout_s``; SIGKILL (and reap) it
    when it has not exited by then."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)


def wait_serving(
    port: int,
    timeout_s: float = 120.0,
    host: str = "127.0.0.1",
    proc: subprocess.Popen[str] | None = None,
    poll_s: float = 0.1,
) -> None:
    """Block until the health service on ``host:port`` reports SERVING (checked every
    ``poll_s``). Raises TimeoutError after ``timeout_s``, and RuntimeError at once if ``proc``
    (the server's process, when known) exits meanwhile.
    """
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server on {port} exited with {proc.returncode}")
            time.sleep(poll_s)
    raise TimeoutError(f"server on {port} not SERVING after {timeout_s} s")


class ServerProcess:
    """``oracle-server serve`` in a subprocess; learns its ports from the JSON log.

    ``args`` are further ``serve`` flags (``--spaces``, ``--data-dir``, ...); ``env`` is added
    to this process's environment. ``cwd`` is the directory the server runs from and imports
    first (default: the current one), e.g. another checkout to compare against.
    ``python`` is the interpreter (default: this one).
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        *,
        cwd: str | Path | None = None,
        python: str = sys.executable,
        host: str = "127.0.0.1",
        start_timeout_s: float = 120.0,
    ) -> None:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        if cwd is not None:
            cwd = Path(cwd).resolve()
            path = full_env.get("PYTHONPATH")
            full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(cwd), path]))
        self.host = host
        self.started = time.perf_counter()
        self.proc: subprocess.Popen[str] = subprocess.Popen(
            [
                python,
                "-m",
                "oracle_server",
                "serve",
                "--port",
                "0",
                "--host",
                host,
                "--metrics-port",
                "0",
                "--log-format",
                "json",
                *args,
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=full_env,
            cwd=cwd,
        )
        #: every log line so far (stderr), for error messages and log assertions
        self.lines: list[str] = []
        self.port = 0
        self.metrics_port = -1
        #: seconds from process start to SERVING, once :meth:`wait_serving` has returned
        self.startup_s: float | None = None
        self._found = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._found.wait(start_timeout_s) or not self.port:
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
            if isinstance(rec, dict) and rec.get("msg") == "listening":
                self.port, self.metrics_port = int(rec["port"]), int(rec["metrics_port"])
                self._found.set()
        self._found.set()  # the process ended (or closed stderr) without listening

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def target(self) -> str:
        """``host:port`` for a client."""
        return f"{self.host}:{self.port}"

    def wait_serving(self, timeout_s: float = 180.0, poll_s: float = 0.1) -> ServerProcess:
        """Block until the health check says SERVING; sets :attr:`startup_s` (as precise as
        ``poll_s``)."""
        try:
            wait_serving(self.port, timeout_s, self.host, self.proc, poll_s)
        except (TimeoutError, RuntimeError) as exc:
            log = "\n".join(self.lines[-30:])
            raise type(exc)(f"{exc}; last log lines:\n{log}") from None
        self.startup_s = time.perf_counter() - self.started
        return self

    def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (the server drains in-flight RPCs), then wait: the exit code."""
        self.proc.terminate()
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL if still running, and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (drain), falling back to SIGKILL after ``timeout_s``: :func:`stop_process`."""
        stop_process(self.proc, timeout_s)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()


class RedisUnavailable(RuntimeError):
    """``redis-server`` is not installed, or the private one did not start."""


class RedisProcess:
    """A private, throw-away ``redis-server`` on a loopback port (no persistence), for the
    tests and benchmarks that must stop Redis mid-run (fail-open of the shared limits).

    ``RedisUnavailable`` when the binary is missing or the server does not answer within
    ``timeout_s`` (callers skip or exit with its message)."""

    def __init__(self, port: int = 0, password: str = "", timeout_s: float = 10.0) -> None:
        import shutil

        import redis

        exe = shutil.which("redis-server")
        if exe is None:
            raise RedisUnavailable("redis-server is not installed (apt-get install redis-server)")
        port = port or free_port()
        self.port, self.password = port, password
        args = [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ] + (["--requirepass", password] if password else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=port, password=password or None, socket_timeout=1)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        self.stop()
                        raise RedisUnavailable(
                            f"private redis-server on port {port} did not start"
                        ) from None
                    time.sleep(0.05)
        finally:
            client.close()

    def url(self, prefix: str = "t:", password: str | None = None) -> str:
        pw = self.password if password is None else password
        auth = f":{pw}@" if pw else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0?prefix={prefix}"

    def stop(self) -> None:
        """Kill it (SIGKILL: Redis gone at once, as in an outage)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    kill = stop

    def __enter__(self) -> RedisProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
