"""Limits, admission control, deadlines, reflection, metrics consistency and drain under load.

Every limit is a setting and answers a clear status: RESOURCE_EXHAUSTED for sizes and
counts, INVALID_ARGUMENT for malformed names, DEADLINE_EXCEEDED when the client gives up
(the Rank pipeline then stops between stages). The metrics REGISTRY is process-global, so
metric checks use deltas."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from client_sdk import OracleClient
from client_sdk.errors import (
    DeadlineExceeded,
    InvalidArgument,
    OracleClientError,
    ResourceExhausted,
    Unavailable,
)
from client_sdk.errors import DeadlineExceeded as ServerDeadlineExceeded
from client_sdk.spaces import get_space
from oracle_server import metrics
from oracle_server.app import App
from tests.e2e.conftest import make_settings
from tests.helpers import TEST_CACHE, nb201_non_train_devices, server_process, unique_name

SPACE = get_space("nasbench201")
SERVICE = "latency_oracle.v1.LatencyOracle"
MAX_MESSAGE = 256 * 1024


def _measurements(n: int, seed: int = 0):
    genes = SPACE.sample(n, rng=seed)
    return genes, SPACE.table.device_column("raspi4")[SPACE.table_rows(genes)]


def _start(nb201_model, tmp_path, **overrides) -> App:
    return App(make_settings(tmp_path, **overrides), models={"nasbench201": nb201_model}).start(
        block_until_ready=True, timeout_s=60)


@pytest.fixture(scope="module")
def limited(nb201_model, tmp_path_factory) -> Iterator[App]:
    app = _start(nb201_model, tmp_path_factory.mktemp("limited"), max_batch=30_000,
                 max_devices_per_request=2, max_message_bytes=MAX_MESSAGE, max_measurements=15)
    yield app
    app.stop(0.5)


@pytest.fixture()
def lc(limited: App) -> Iterator[OracleClient]:
    with OracleClient(f"127.0.0.1:{limited.port}", timeout_s=20, retries=False) as c:
        yield c


def _handled(method: str, code: str) -> float:
    labels = {"grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": method,
              "grpc_code": code}
    return metrics.REGISTRY.get_sample_value("grpc_server_handled_total", labels) or 0.0


def _started(method: str) -> float:
    labels = {"grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": method}
    return metrics.REGISTRY.get_sample_value("grpc_server_started_total", labels) or 0.0


# ------------------------------------------------------------------------ limits
def test_max_devices_per_request(lc: OracleClient) -> None:
    genes = SPACE.sample(4, rng=0)
    assert len(lc.rank("nasbench201", genes, ["pixel3", "samsung_a50"]).order) == 2
    with pytest.raises(ResourceExhausted, match="3 devices exceed the limit of 2"):
        lc.rank("nasbench201", genes, ["pixel3", "samsung_a50", "1080ti_1"])


def test_max_batch_strings_and_packed(lc: OracleClient, client: OracleClient) -> None:
    with pytest.raises(ResourceExhausted, match="30001 architectures exceed the limit of 30000"):
        lc.rank("nasbench201", np.zeros((30_001, 6), np.uint8), "pixel3")
    # strings are counted before they are parsed (session server: max_batch 200,000)
    strings = [SPACE.format(SPACE.table.genes[0])] * 200_001
    with pytest.raises(ResourceExhausted, match="200001 architectures exceed"):
        client.rank("nasbench201", strings, "pixel3")


def test_max_message_size_both_ways(lc: OracleClient) -> None:
    # request over the limit: grpc refuses it before any handler runs
    with pytest.raises(ResourceExhausted):
        lc.rank("nasbench201", np.zeros((MAX_MESSAGE // 6 + 10, 6), np.uint8), "pixel3")
    # request under the limit whose response (4 + 4 bytes per arch and device) is over it
    genes = SPACE.sample(20_000, rng=1)
    with pytest.raises(ResourceExhausted):
        lc.rank("nasbench201", genes, ["pixel3", "samsung_a50"])
    res = lc.rank("nasbench201", genes, "pixel3", top_k=10, return_latencies=False)
    assert len(res.order["pixel3"]) == 10
    assert lc.health() == "SERVING"


def test_max_measurements_per_device(lc: OracleClient) -> None:
    with pytest.raises(ResourceExhausted, match="16 measurements exceed the limit of 15"):
        lc.register_device(unique_name("lim"), "nasbench201", _measurements(16))
    name = unique_name("lim")
    lc.register_device(name, "nasbench201", _measurements(10))
    with pytest.raises(ResourceExhausted, match="20 measurements exceed the limit of 15"):
        lc.add_measurements(name, _measurements(10, seed=1), "nasbench201")
    assert lc.get_device(name, "nasbench201").num_samples == 10  # nothing half-applied
    assert lc.add_measurements(name, _measurements(5, seed=2), "nasbench201").num_samples == 15


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.register_device("x" * 65, "nasbench201", _measurements(10)), "name"),
        (lambda c: c.get_device("x" * 5000, "nasbench201"), "name"),
        (lambda c: c.get_device("pixel3", "nas bench"), "space"),
        (lambda c: c.list_devices("s" * 100), "space"),
        (lambda c: c.get_device("nasbench201/pix/el3"), "name"),
        (lambda c: c.get_device("-pixel3", "nasbench201"), "name"),
        (lambda c: c.rank("nasbench201", SPACE.sample(2, rng=0), ["pixel3", "a\u00e9"]),
         "devices[1]"),
        (lambda c: c.compare_devices("pixel3", "p\x00", "nasbench201"), "b"),
        (lambda c: c.delete_device("\u202epixel3", "nasbench201"), "name"),
    ],
)
def test_names_are_validated(lc: OracleClient, call, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        call(lc)
    assert info.value.field == field
    assert len(info.value.message) < 300  # the bad value is quoted, truncated, ASCII-safe
    assert info.value.message.isascii()


# --------------------------------------------------------------------- deadlines
class _Slow:
    """Delegates to ``inner``; once ``armed``, the named methods first sleep ``delay_s``."""

    def __init__(self, inner, methods: tuple[str, ...], delay_s: float, **attrs) -> None:
        self._inner, self._methods, self._delay_s = inner, methods, delay_s
        self.armed = False
        self.__dict__.update(attrs)

    def __getattr__(self, name: str):
        value = getattr(self._inner, name)
        if name in self._methods and self.armed:
            def slow(*args, **kwargs):
                time.sleep(self._delay_s)
                return value(*args, **kwargs)
            return slow
        return value


def _slow_model(model, delay_s: float) -> _Slow:
    """The real model whose first pipeline stage (table lookup or proxy) takes ``delay_s``, as
    a huge batch on a slow CPU would: the deadline passes while it runs."""
    space = _Slow(model.space, ("table_rows",), delay_s)
    return _Slow(model, ("basis",), delay_s, space=space)


def _stage_count(stage: str) -> float:
    return metrics.REGISTRY.get_sample_value(
        "oracle_rank_stage_seconds_count", {"stage": stage}) or 0.0


def test_expired_rank_stops_between_stages(nb201_model, tmp_path) -> None:
    slow = _slow_model(nb201_model, 1.0)
    app = App(make_settings(tmp_path), models={"nasbench201": slow})
    app.start(block_until_ready=True, timeout_s=60)
    slow.armed = slow.space.armed = True
    try:
        genes = SPACE.sample(5_000, rng=3)
        devices = list(nb201_model.basis_devices)
        ranked = metrics.REGISTRY.get_sample_value(
            "oracle_rank_architectures_total", {"space": "nasbench201"}) or 0.0
        heads = _stage_count("head")
        codes = ("OK", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN", "INTERNAL")
        started, handled = _started("Rank"), {c: _handled("Rank", c) for c in codes}
        with OracleClient(f"127.0.0.1:{app.port}", retries=False) as c:
            t0 = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                c.rank("nasbench201", genes, devices, timeout_s=0.3)
            assert time.monotonic() - t0 < 2.0
        deadline = time.monotonic() + 30
        while sum(_handled("Rank", c) - handled[c] for c in codes) < _started("Rank") - started:
            assert time.monotonic() < deadline, "the expired Rank never finished on the server"
            time.sleep(0.05)
        assert _handled("Rank", "OK") == handled["OK"]
        assert _handled("Rank", "DEADLINE_EXCEEDED") == handled["DEADLINE_EXCEEDED"] + 1
        assert _stage_count("head") == heads, "the heads ran after the deadline"
        after = metrics.REGISTRY.get_sample_value(
            "oracle_rank_architectures_total", {"space": "nasbench201"}) or 0.0
        assert after == ranked, "an expired Rank ran to completion"
    finally:
        app.stop(0)


# ------------------------------------------------------------ admission control
def test_overload_gets_resource_exhausted_quickly(nb201_model, tmp_path) -> None:
    app = _start(nb201_model, tmp_path, max_concurrent_rpcs=2, workers=4)
    gate = threading.Event()
    real = app.oracle.list_devices

    def slow_list(space: str = ""):
        gate.wait(20)
        return real(space)

    app.oracle.list_devices = slow_list  # type: ignore[method-assign]
    target = f"127.0.0.1:{app.port}"
    results: list = []

    def slow_call() -> None:
        with OracleClient(target, retries=False) as c:
            results.append(len(c.list_devices("nasbench201")))

    threads = [threading.Thread(target=slow_call) for _ in range(2)]
    try:
        base = _started("ListDevices")
        for t in threads:
            t.start()
        t0 = time.monotonic()
        while _started("ListDevices") < base + 2:
            assert time.monotonic() - t0 < 10
            time.sleep(0.01)
        with OracleClient(target, retries=False) as c:
            for _ in range(3):
                t1 = time.monotonic()
                with pytest.raises(ResourceExhausted):
                    c.list_spaces()
                assert time.monotonic() - t1 < 1.0, "overload must be refused, not queued"
            # grpc's limit counts every RPC, health checks included (see docs/security.md)
            with pytest.raises(OracleClientError) as info:
                c.health()
            assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            gate.set()
            for t in threads:
                t.join(10)
            assert results == [9, 9]
            # the server frees a slot when its side of the call is done, which can be a moment
            # after the client has the answer (seen on a loaded CI machine): recovery, not
            # instant recovery, is the guarantee
            t1 = time.monotonic()
            while True:
                try:
                    spaces = c.list_spaces()
                    break
                except ResourceExhausted:
                    assert time.monotonic() - t1 < 5.0, "slots not released after the calls ended"
                    time.sleep(0.05)
            assert [s.name for s in spaces] == ["nasbench201"]
    finally:
        gate.set()
        app.stop(0)


def test_keepalive_pings_do_not_get_goaway(server: App) -> None:
    """The SDK's channel options against the server's: idle and busy, no too_many_pings."""
    with OracleClient(f"127.0.0.1:{server.port}", retries=False) as c:
        for _ in range(3):
            assert c.health() == "SERVING"
            time.sleep(0.2)
        assert c.list_spaces()


# ---------------------------------------------------------------------- reflection
def _reflected_services(port: int) -> list[str]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        resp = next(iter(stub.ServerReflectionInfo(iter([req]), timeout=5)))
        return sorted(s.name for s in resp.list_services_response.service)


def test_reflection_on_by_default(server: App) -> None:
    assert server.settings.reflection is True
    names = _reflected_services(server.port)
    assert SERVICE in names and "grpc.health.v1.Health" in names


def test_reflection_can_be_switched_off(nb201_model, tmp_path) -> None:
    app = _start(nb201_model, tmp_path, reflection=False)
    try:
        with pytest.raises(grpc.RpcError) as info:
            _reflected_services(app.port)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with OracleClient(f"127.0.0.1:{app.port}") as c:
            assert c.health() == "SERVING"
    finally:
        app.stop(0)


# ------------------------------------------------------------------------ metrics
def test_metrics_started_equals_handled(limited: App, lc: OracleClient) -> None:
    codes = ("OK", "NOT_FOUND", "INVALID_ARGUMENT", "UNKNOWN", "INTERNAL")
    started = _started("GetDevice")
    handled = {code: _handled("GetDevice", code) for code in codes}
    for _ in range(5):
        lc.get_device("pixel3", "nasbench201")
    for i in range(3):
        with pytest.raises(OracleClientError):
            lc.get_device(f"ghost{i}", "nasbench201")
    with grpc.insecure_channel(f"127.0.0.1:{limited.port}") as ch:
        raw = ch.unary_unary(f"/{SERVICE}/GetDevice")
        for _ in range(2):
            with pytest.raises(grpc.RpcError):
                raw(b"\xff\xff\xff", timeout=5)
        # a unary method is read as a stream (admission before the body): no message at all
        # is INVALID_ARGUMENT, like garbage bytes
        with pytest.raises(grpc.RpcError) as none:
            ch.stream_unary(f"/{SERVICE}/GetDevice")(iter(()), timeout=5)
        assert none.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "exactly one request message" in (none.value.details() or "")
        for method in (f"/{SERVICE}/NoSuchMethod", "/no.such.Service/Call"):
            with pytest.raises(grpc.RpcError) as info:
                ch.unary_unary(method)(b"", timeout=5)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    delta = {code: _handled("GetDevice", code) - handled[code] for code in codes}
    assert _started("GetDevice") - started == 11
    assert delta == {"OK": 5, "NOT_FOUND": 3, "INVALID_ARGUMENT": 3, "UNKNOWN": 0, "INTERNAL": 0}
    text = urllib.request.urlopen(
        f"http://127.0.0.1:{limited.metrics_port}/metrics").read().decode()
    assert "NoSuchMethod" not in text and "no.such.Service" not in text
    assert 'grpc_code="UNKNOWN"' not in text


# -------------------------------------------------------------- drain under load
def test_rpc_longer_than_grace_is_cancelled_without_leftover_thread(
    nb201_model, tmp_path
) -> None:
    app = _start(nb201_model, tmp_path, workers=3)
    seen: dict = {}

    def endless_rank(*_a, is_cancelled=None, **_k):
        seen["started"] = time.monotonic()
        while not is_cancelled():  # the real pipeline checks between stages
            time.sleep(0.01)
        seen["stopped"] = time.monotonic()
        raise ServerDeadlineExceeded("cancelled")

    app.oracle.rank = endless_rank  # type: ignore[method-assign]
    out: dict = {}

    def call() -> None:
        with OracleClient(f"127.0.0.1:{app.port}", retries=False) as c:
            try:
                c.rank("nasbench201", SPACE.sample(3, rng=0), "pixel3")
            except OracleClientError as exc:
                out["code"] = exc.code

    worker = threading.Thread(target=call)
    worker.start()
    t0 = time.monotonic()
    while "started" not in seen:
        assert time.monotonic() - t0 < 10
        time.sleep(0.01)
    t_stop = time.monotonic()
    app.stop(0.5)
    assert time.monotonic() - t_stop < 3.0
    worker.join(10)
    assert out["code"] in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    assert seen["stopped"] - t_stop < 2.0
    assert not [t for t in app._executor._threads if t.is_alive()]
    assert not [t for t in threading.enumerate()
                if t.name.startswith("oracle-rpc") and t in app._executor._threads]


def test_sigterm_under_load(tmp_path) -> None:
    grace = 8.0
    args = ["--spaces", "nasbench201", "--data-dir", str(tmp_path), "--cache-dir",
            str(TEST_CACHE), "--holdout-devices", ",".join(nb201_non_train_devices()),
            "--grace-s", str(grace), "--max-batch", "2000000", "--workers", "6"]
    with server_process(args) as srv:
        srv.wait_serving()
        target = f"127.0.0.1:{srv.port}"
        stop = threading.Event()
        records: list[tuple[float, float, str]] = []
        lock = threading.Lock()

        def load(seed: int) -> None:  # everything but Rank, so the big Rank can be spotted
            calls = (lambda c: c.suggest_references("nasbench201", 20, seed=seed),
                     lambda c: c.list_devices("nasbench201"),
                     lambda c: c.compare_devices("pixel3", "samsung_a50", "nasbench201"))
            with OracleClient(target, retries=False, timeout_s=30) as c:
                i = 0
                while not stop.is_set():
                    t0 = time.monotonic()
                    i += 1
                    try:
                        calls[i % len(calls)](c)
                        code = "OK"
                    except OracleClientError as exc:
                        code = exc.code.name
                    with lock:
                        records.append((t0, time.monotonic(), code))
                    if code != "OK":
                        time.sleep(0.05)

        big: dict = {}
        big_client = OracleClient(target, retries=False, timeout_s=60)
        assert big_client.health() == "SERVING"  # connected before SIGTERM

        def big_rank() -> None:
            big["result"] = big_client.rank("nasbench201", SPACE.sample(450_000, rng=9),
                                            ["pixel3", "samsung_a50", "1080ti_1"],
                                            return_latencies=False)
            big["end"] = time.monotonic()

        # five loaders (of 6 workers; the big Rank takes one) so that some call is in flight
        # at the SIGTERM even on a busy machine (three left none in flight about 1 run in 10)
        threads = [threading.Thread(target=load, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        t0 = time.monotonic()  # some load served before the drain (a busy machine is slow)
        while sum(code == "OK" for _, _, code in list(records)) < 12:
            assert time.monotonic() - t0 < 60, Counter(code for _, _, code in records)
            time.sleep(0.05)
        with grpc.insecure_channel(target) as ch:
            watch = health_pb2_grpc.HealthStub(ch).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=60)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            baseline = _scrape_started(srv.metrics_port, "Rank")
            big_thread = threading.Thread(target=big_rank)
            big_thread.start()
            t0 = time.monotonic()
            while _scrape_started(srv.metrics_port, "Rank") <= baseline:
                assert time.monotonic() - t0 < 30 and "result" not in big
                time.sleep(0.002)
            t_term = time.monotonic()
            os.kill(srv.proc.pid, signal.SIGTERM)
            status = next(watch).status
            t_not_serving = time.monotonic()
            watch.cancel()
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert t_not_serving - t_term < 1.0
        time.sleep(0.5)
        with OracleClient(target, retries=False) as c, pytest.raises(Unavailable):
            c.list_spaces()  # new RPCs are refused while draining
        rc = srv.proc.wait(grace + 10)
        t_exit = time.monotonic()
        stop.set()
        big_thread.join(30)
        big_client.close()
        for t in threads:
            t.join(30)
    assert rc == 0
    assert t_exit - t_term < grace + 2.0
    assert big["result"].num_architectures == 450_000 and big["end"] > t_term
    codes = Counter(code for _, _, code in records)
    assert set(codes) <= {"OK", "UNAVAILABLE", "CANCELLED"}, codes
    # grpc core cancels (rather than refuses) a call that reaches the transport in the few ms
    # between the shutdown and the GOAWAY, and on a loaded machine also a call a loader
    # starts later during the drain, over a connection being closed (seen 2.1 s after the
    # SIGTERM once in a full-suite run): new calls are not served either way. What must
    # hold: no call that started before the drain (beyond the GOAWAY race) is cancelled.
    racing = [r for r in records if r[2] == "CANCELLED"]
    assert all(r[0] > t_term - 0.1 for r in racing), (racing, t_term)
    # The big Rank above is the call certainly in flight at the SIGTERM (and it completed). A
    # loader's small call may or may not be in flight at that instant (a CI run had none): when
    # one is, and it had started well before the drain (0.5 s: it had reached the server),
    # it must have been served.
    in_flight = [r for r in records if r[0] < t_term - 0.5 and r[1] > t_term]
    assert all(r[2] == "OK" for r in in_flight), (in_flight, t_term)
    refused_after = [r for r in records if r[0] > t_term and r[2] == "UNAVAILABLE"]
    assert codes["OK"] > 10 and refused_after, codes


def _scrape_started(metrics_port: int, method: str) -> float:
    import re

    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    m = re.search(rf'grpc_server_started_total\{{[^}}]*grpc_method="{method}"[^}}]*\}} (\S+)',
                  text)
    return float(m.group(1)) if m else 0.0
