"""Replica failure: the SDK balances over two replicas (round-robin over a list of addresses)
and a read loop sees no failed call when one replica is SIGKILLed mid-loop -- calls in flight
on it are re-sent to the other by the gRPC retry policy (UNAVAILABLE). ``benchmarks/chaos.py``
is the long version (3 replicas, writes, a PostgreSQL restart)."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from pathlib import Path

from client_sdk import OracleClient
from client_sdk.errors import OracleError
from client_sdk.spaces import get_space
from oracle_server import app as app_module
from oracle_server.app import App
from tests.e2e.conftest import make_settings
from tests.helpers import TEST_CACHE, nb201_non_train_devices, server_process

SPACE = get_space("nasbench201")


def _args(data_dir: Path, url: str) -> list[str]:
    return ["--spaces", "nasbench201", "--data-dir", str(data_dir), "--cache-dir",
            str(TEST_CACHE), "--holdout-devices", ",".join(nb201_non_train_devices()),
            "--database-url", url, "--grace-s", "1", "--workers", "4"]


def _ranks_served(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read()
    pattern = r'grpc_server_handled_total\{[^}]*grpc_method="Rank"[^}]*\} ([0-9.e+]+)'
    return sum(float(v) for v in re.findall(pattern, text.decode()))


def test_sigkill_of_one_of_two_replicas_fails_no_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with server_process(_args(tmp_path / "a", url)) as a, server_process(
        _args(tmp_path / "b", url)
    ) as b:
        a.wait_serving()
        b.wait_serving()
        genes = SPACE.table.genes[:200]
        stop = threading.Event()
        ok = [0, 0]  # successful reads before / after the kill
        failures: list[str] = []
        killed = threading.Event()

        def reader() -> None:
            with OracleClient([f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"],
                              timeout_s=10) as c:
                while not stop.is_set():
                    after = killed.is_set()
                    try:
                        result = c.rank("nasbench201", genes, ["pixel3", "1080ti_1"], top_k=5)
                        assert result.order["pixel3"].shape == (5,)
                        ok[after] += 1
                    except OracleError as exc:
                        failures.append(f"{exc.code.name}: {exc.message}")

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        # Both replicas in use first (a replica's channel is READY only once its health
        # check answers SERVING, which can take a moment on a busy machine).
        deadline = time.monotonic() + 25
        served_a = served_b = 0.0
        while time.monotonic() < deadline:
            served_a, served_b = _ranks_served(a.metrics_port), _ranks_served(b.metrics_port)
            if ok[0] >= 40 and served_a >= 10 and served_b >= 10:
                break
            time.sleep(0.1)
        a.proc.kill()  # SIGKILL, with reads in flight
        killed.set()
        a.proc.wait(10)
        time.sleep(2.0)
        stop.set()
        for t in threads:
            t.join(30)
        after_b = _ranks_served(b.metrics_port)
    assert failures == [], f"{len(failures)} failed reads, first: {failures[:3]}"
    assert served_a > 0 and served_b > 0, "round-robin did not use both replicas"
    assert ok[1] >= 20, f"too few reads after the kill ({ok[1]})"
    assert after_b - served_b >= ok[1], "reads after the kill were not served by the survivor"


def test_round_robin_skips_a_replica_that_is_not_serving(
    nb201_model, tmp_path: Path, monkeypatch
) -> None:
    """Client-side health checking (``healthCheckConfig`` of round-robin channels): a replica
    still loading its proxy (health NOT_SERVING) gets no calls, even without retries."""
    gate = threading.Event()

    def slow_load(_settings):
        gate.wait(60)
        return {"nasbench201": nb201_model}

    good = App(make_settings(tmp_path / "good"), models={"nasbench201": nb201_model}).start(
        block_until_ready=True, timeout_s=60
    )
    monkeypatch.setattr(app_module, "load_models", slow_load)
    loading = App(make_settings(tmp_path / "loading")).start()
    try:
        targets = [f"127.0.0.1:{good.port}", f"127.0.0.1:{loading.port}"]
        with OracleClient(targets, retries=False, timeout_s=10) as c:
            for _ in range(30):
                assert [s.name for s in c.list_spaces()] == ["nasbench201"]
    finally:
        gate.set()
        good.stop(0)
        loading.stop(0)


def test_dns_name_target_is_served(server: App) -> None:
    """``dns:///localhost:<port>``: resolved, balanced (round-robin) and health-checked; an
    address of the name nobody listens on (``::1``) is skipped."""
    with OracleClient(f"dns:///localhost:{server.port}", retries=False, timeout_s=10) as c:
        for _ in range(5):  # the shared server: other tests may have registered spaces too
            assert "nasbench201" in [s.name for s in c.list_spaces()]


def test_a_restarted_replica_is_current_when_it_turns_serving(
    nb201_model, tmp_path: Path, monkeypatch
) -> None:
    """Devices registered through another replica while this one was loading (fitting the
    heads of every registered device takes a while) are served as soon as it is SERVING,
    not one poll later."""
    from oracle_server.registry import Registry
    from oracle_server.store import DeviceStore
    from oracle_server.writes import DeviceWrite

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    genes = SPACE.sample(10, rng=7)
    lat = SPACE.table.device_column("raspi4")[SPACE.table_rows(genes)]
    real_load = DeviceStore.load_registered

    def load_while_another_replica_writes(store: DeviceStore) -> int:
        loaded = real_load(store)
        other = Registry(url)  # another replica's write, after this one read the registry
        other.create(DeviceWrite("nasbench201", "late", genes, lat))
        other.close()
        return loaded

    monkeypatch.setattr(DeviceStore, "load_registered", load_while_another_replica_writes)
    settings = make_settings(tmp_path / "r", database_url=url, sync_interval_s=60)
    app = App(settings, models={"nasbench201": nb201_model}).start(True, 120)
    try:
        assert app.oracle is not None
        known = {d.name for d in app.oracle.list_devices("nasbench201")}
        assert "late" in known, f"SERVING without the device written meanwhile: {known}"
        with OracleClient(f"127.0.0.1:{app.port}", retries=False) as c:
            assert c.get_device("late", "nasbench201").num_samples == 10
    finally:
        app.stop(0)
