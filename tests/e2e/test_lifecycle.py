"""Health transitions, persistence across restarts (SQLite, PostgreSQL), replicas sharing
PostgreSQL, and graceful drain (in-process and SIGTERM on a subprocess)."""

from __future__ import annotations

import re
import threading
import time
import urllib.request

import numpy as np
import pytest

from client_sdk import OracleClient, Unavailable
from client_sdk.spaces import get_space
from oracle_server import app as app_module
from oracle_server.app import App
from tests.e2e.conftest import make_settings, serve_args
from tests.helpers import (
    PG_URL,
    PROPAGATION_DEADLINE_S,
    postgres_available,
    server_process,
    unique_name,
)

SPACE = get_space("nasbench201")
PG_SKIP = postgres_available()


def _measurements(device: str = "raspi4", n: int = 10, seed: int = 0):
    genes = SPACE.sample(n, rng=seed)
    return genes, SPACE.table.device_column(device)[SPACE.table_rows(genes)]


def test_health_not_serving_until_proxy_loaded(nb201_model, tmp_path, monkeypatch) -> None:
    gate = threading.Event()

    def slow_load(_settings):
        gate.wait(30)
        return {"nasbench201": nb201_model}

    monkeypatch.setattr(app_module, "load_models", slow_load)
    app = App(make_settings(tmp_path)).start()
    try:
        with OracleClient(f"127.0.0.1:{app.port}", retries=False) as c:
            assert c.health() == "NOT_SERVING"
            assert c.health("latency_oracle.v1.LatencyOracle") == "NOT_SERVING"
            with pytest.raises(Unavailable, match="loading"):
                c.list_spaces()
            gate.set()
            c.wait_until_serving(timeout_s=30)
            assert c.health() == "SERVING"
            assert [s.name for s in c.list_spaces()] == ["nasbench201"]
            app.stop(0.5)
            with pytest.raises(Unavailable):
                c.health()
    finally:
        gate.set()
        app.stop(0)


def _restart_keeps_devices(nb201_model, settings) -> None:
    name = unique_name("persist")
    genes, lat = _measurements()
    first = App(settings, models={"nasbench201": nb201_model}).start(True, 60)
    try:
        with OracleClient(f"127.0.0.1:{first.port}") as c:
            before = c.register_device(name, "nasbench201", (genes, lat), {"threads": 2})
            c.add_measurements(name, _measurements(seed=1), "nasbench201")
            pred_before = c.rank("nasbench201", SPACE.table.genes[:500], name).latency_ms[name]
    finally:
        first.stop(0)
    second = App(settings, models={"nasbench201": nb201_model}).start(True, 60)
    try:
        with OracleClient(f"127.0.0.1:{second.port}") as c:
            after = c.get_device(name, "nasbench201")
            assert after.num_samples == 20 and after.contract["threads"] == 2
            assert after.created_at == before.created_at
            pred_after = c.rank("nasbench201", SPACE.table.genes[:500], name).latency_ms[name]
            np.testing.assert_allclose(pred_after, pred_before, rtol=1e-5)
            assert c.delete_device(name, "nasbench201")
    finally:
        second.stop(0)


def test_restart_keeps_registered_devices_sqlite(nb201_model, tmp_path) -> None:
    _restart_keeps_devices(nb201_model, make_settings(tmp_path))


@pytest.mark.postgres
@pytest.mark.skipif(PG_SKIP is not None, reason=str(PG_SKIP))
def test_restart_keeps_registered_devices_postgres(nb201_model, tmp_path) -> None:
    _restart_keeps_devices(nb201_model, make_settings(tmp_path, database_url=PG_URL))


@pytest.mark.postgres
@pytest.mark.skipif(PG_SKIP is not None, reason=str(PG_SKIP))
def test_two_servers_share_postgres_within_one_second(nb201_model, tmp_path) -> None:
    apps = [
        App(make_settings(tmp_path / str(i), database_url=PG_URL),
            models={"nasbench201": nb201_model}).start(True, 60)
        for i in range(2)
    ]
    name = unique_name("shared")
    try:
        with OracleClient(f"127.0.0.1:{apps[0].port}") as a, \
                OracleClient(f"127.0.0.1:{apps[1].port}") as b:
            a.register_device(name, "nasbench201", _measurements())
            t0 = time.monotonic()
            while time.monotonic() - t0 < 5:
                if any(d.name == name for d in b.list_devices("nasbench201")):
                    break
                time.sleep(0.02)
            seen_after = time.monotonic() - t0
            assert seen_after < PROPAGATION_DEADLINE_S, f"replica saw it after {seen_after:.2f} s"
            assert b.rank("nasbench201", SPACE.sample(5, rng=0), name).latency_ms[name].size == 5
            b.delete_device(name, "nasbench201")
            t0 = time.monotonic()
            while any(d.name == name for d in a.list_devices("nasbench201")):
                assert time.monotonic() - t0 < PROPAGATION_DEADLINE_S, "deletion never seen"
                time.sleep(0.02)
    finally:
        for app in apps:
            app.stop(0)


def _big_rank_in_flight(app: App, seed: int) -> tuple[threading.Thread, dict]:
    """Start a 400k x 27-device Rank (a ~43 MB reply) against ``app``; return once the
    server has started it. ``out["result"]`` is set when the client has the whole reply."""
    genes = SPACE.sample(400_000, rng=seed)
    devices = list(app.models["nasbench201"].basis_devices)
    out: dict = {}

    def call() -> None:
        with OracleClient(f"127.0.0.1:{app.port}", retries=False) as c:
            out["result"] = c.rank("nasbench201", genes, devices, return_latencies=False)

    baseline = _rank_started(app.metrics_port)
    worker = threading.Thread(target=call)
    worker.start()
    _wait_rank_started(app.metrics_port, baseline)
    return worker, out


def test_stop_finishes_in_flight_rank(nb201_model, tmp_path) -> None:
    app = App(make_settings(tmp_path, max_batch=2_000_000),
              models={"nasbench201": nb201_model}).start(True, 60)
    worker, out = _big_rank_in_flight(app, seed=0)
    app.stop(30)
    worker.join(60)
    assert "result" in out and out["result"].num_architectures == 400_000


def _rank_started(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    m = re.search(r'grpc_server_started_total\{[^}]*grpc_method="Rank"[^}]*\} (\S+)', text)
    return float(m.group(1)) if m else 0.0


def _wait_rank_started(metrics_port: int, baseline: float = 0.0) -> None:
    t0 = time.monotonic()
    while _rank_started(metrics_port) <= baseline:
        assert time.monotonic() - t0 < 30, "Rank never started"
        time.sleep(0.005)


def test_sigterm_drains_in_flight_rank_and_exits_zero(tmp_path) -> None:
    with server_process(serve_args(tmp_path, "--max-batch", "2000000", grace_s=30)) as srv:
        srv.wait_serving()
        genes = SPACE.sample(400_000, rng=1)
        out: dict = {}

        def call() -> None:
            with OracleClient(f"127.0.0.1:{srv.port}", retries=False) as c:
                devs = [d.name for d in c.list_devices("nasbench201")]
                out["result"] = c.rank("nasbench201", genes, devs, return_latencies=False)

        worker = threading.Thread(target=call)
        worker.start()
        _wait_rank_started(srv.metrics_port)
        assert srv.terminate(60) == 0
        worker.join(30)
        assert "result" in out, "\n".join(srv.lines[-20:])
        assert out["result"].num_architectures == 400_000
        assert any('"draining"' in line for line in srv.lines)


def test_new_calls_during_drain_get_unavailable_while_in_flight_finishes(
        nb201_model, tmp_path) -> None:
    app = App(make_settings(tmp_path, max_batch=2_000_000),
              models={"nasbench201": nb201_model}).start(True, 60)
    worker, out = _big_rank_in_flight(app, seed=2)
    stopper = threading.Thread(target=app.stop, args=(30,))
    stopper.start()
    t0 = time.monotonic()
    while not app.drain.draining:
        assert time.monotonic() - t0 < 10
        time.sleep(0.001)
    with OracleClient(f"127.0.0.1:{app.port}", retries=False) as c, \
            pytest.raises(Unavailable, match="shutting down"):
        c.list_spaces()
    worker.join(60)
    stopper.join(60)
    assert "result" in out and out["result"].num_architectures == 400_000


def test_calls_that_never_send_their_request_do_not_stall_the_server(
        nb201_model, tmp_path) -> None:
    """Clients that open Rank calls without a deadline and never send the request would
    hold every worker thread; the read watchdog cancels them, and others are served."""
    import grpc

    settings = make_settings(tmp_path, workers=2, request_read_timeout_s=0.5)
    app = App(settings, models={"nasbench201": nb201_model}).start(True, 60)
    release = threading.Event()
    errors: list = []

    def never_sends():
        release.wait(30)
        return
        yield b""  # a generator that yields nothing until released

    def slow_client() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{app.port}") as ch:
            call = ch.stream_unary("/latency_oracle.v1.LatencyOracle/Rank",
                                   _registered_method=False)
            try:
                call(never_sends())
            except grpc.RpcError as err:
                errors.append(err.code())

    slow = [threading.Thread(target=slow_client, daemon=True) for _ in range(settings.workers)]
    try:
        for t in slow:
            t.start()
        time.sleep(0.3)  # both workers now wait for a request that never comes
        with OracleClient(f"127.0.0.1:{app.port}", retries=False, timeout_s=10) as c:
            assert [s.name for s in c.list_spaces()] == ["nasbench201"]
        for t in slow:
            t.join(10)
        assert errors == [grpc.StatusCode.CANCELLED] * settings.workers
        t0 = time.monotonic()  # the cancelled handlers return (the client may see it first)
        while app.drain.in_flight:
            assert time.monotonic() - t0 < 10, "a cancelled handler never returned"
            time.sleep(0.01)
    finally:
        release.set()
        app.stop(0)
