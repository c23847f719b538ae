"""The SDK honours RetryInfo: a call refused RESOURCE_EXHAUSTED with ``retry_after`` is re-sent
after that long (same request, same request id), a bounded number of times, then raised; a
RESOURCE_EXHAUSTED without it (a per-request limit) is raised at once. Sync and asyncio.

The server here is a stub LatencyOracle behind the real interceptor (which writes the
``google.rpc.Status`` trailers): it refuses the first ``refusals`` calls."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from client_sdk import OracleClient
from client_sdk.aio import AsyncOracleClient
from client_sdk.errors import LimitExceeded, Overloaded, ResourceExhausted
from client_sdk.proto.latency_oracle.v1 import oracle_pb2 as pb
from client_sdk.proto.latency_oracle.v1 import oracle_pb2_grpc as pb_grpc
from oracle_server.interceptors import OracleInterceptor

RETRY_AFTER_S = 0.3


class Refusing(pb_grpc.LatencyOracleServicer):
    def __init__(self) -> None:
        self.refusals = 0
        self.retry_after: float | None = RETRY_AFTER_S
        self.requests: list[tuple[float, object]] = []
        self.lock = threading.Lock()

    def _gate(self, request: object) -> None:
        with self.lock:
            self.requests.append((time.monotonic(), request))
            if self.refusals > 0:
                self.refusals -= 1
                if self.retry_after is None:
                    raise LimitExceeded("over a per-request limit")
                raise Overloaded("busy: your share is used up", retry_after=self.retry_after)

    def AddMeasurements(self, request, context):
        self._gate(request)
        return pb.Device(name=request.name, space=request.space, num_samples=7)

    def ListSearchSpaces(self, request, context):
        self._gate(request)
        return pb.ListSearchSpacesResponse(spaces=[pb.SearchSpace(name="nasbench201")])


@pytest.fixture()
def refusing() -> Iterator[tuple[Refusing, str]]:
    servicer = Refusing()
    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[OracleInterceptor()])
    pb_grpc.add_LatencyOracleServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0)


MEASUREMENTS = {"|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|": 1.5}


def _gaps(servicer: Refusing) -> list[float]:
    times = [t for t, _ in servicer.requests]
    return [b - a for a, b in itertools.pairwise(times)]


def test_sync_waits_retry_after_then_succeeds_with_the_same_request_id(refusing) -> None:
    servicer, target = refusing
    servicer.refusals = 2
    with OracleClient(target, timeout_s=10) as c:
        dev = c.add_measurements("dev1", MEASUREMENTS, "nasbench201")
        assert dev.num_samples == 7
        assert c.num_overload_retries == 2
    assert len(servicer.requests) == 3
    ids = {r.request_id for _, r in servicer.requests}
    assert len(ids) == 1 and ids != {""}  # one logical write, one id, on every attempt
    assert all(RETRY_AFTER_S * 0.95 <= g <= RETRY_AFTER_S * 1.1 + 0.5 for g in _gaps(servicer))


def test_sync_gives_up_after_the_bounded_retries(refusing) -> None:
    servicer, target = refusing
    servicer.refusals = 100
    with OracleClient(target, timeout_s=10, overload_retries=2) as c:
        t0 = time.monotonic()
        with pytest.raises(Overloaded) as err:
            c.list_spaces()
        assert time.monotonic() - t0 >= 2 * RETRY_AFTER_S * 0.95
    assert err.value.retry_after == pytest.approx(RETRY_AFTER_S)
    assert len(servicer.requests) == 3  # the call and two retries


def test_sync_does_not_retry_without_retry_info_or_past_the_cap(refusing) -> None:
    servicer, target = refusing
    servicer.refusals = 1
    servicer.retry_after = None
    with OracleClient(target, timeout_s=10) as c, pytest.raises(LimitExceeded):
        c.list_spaces()
    assert len(servicer.requests) == 1
    servicer.refusals = 1
    servicer.retry_after = 5.0
    with OracleClient(target, timeout_s=10, max_retry_after_s=1.0) as c:
        with pytest.raises(ResourceExhausted) as err:
            c.list_spaces()
        assert err.value.retry_after == pytest.approx(5.0)
    assert len(servicer.requests) == 2
    with pytest.raises(ValueError):
        OracleClient(target, overload_retries=-1)


def test_retries_false_switches_the_retry_info_loop_off_too(refusing) -> None:
    servicer, target = refusing
    servicer.refusals = 1
    with OracleClient(target, timeout_s=10, retries=False) as c, pytest.raises(Overloaded):
        c.list_spaces()
    assert len(servicer.requests) == 1
    servicer.refusals = 1
    with OracleClient(target, timeout_s=10, retries=False, overload_retries=1) as c:
        assert c.list_spaces()[0].name == "nasbench201"
    assert len(servicer.requests) == 3


def test_asyncio_client_honours_retry_info_too(refusing) -> None:
    servicer, target = refusing

    async def run() -> None:
        servicer.refusals = 2
        async with AsyncOracleClient(target, timeout_s=10) as c:
            dev = await c.add_measurements("dev1", MEASUREMENTS, "nasbench201")
            assert dev.num_samples == 7
        assert len({r.request_id for _, r in servicer.requests}) == 1
        assert len(servicer.requests) == 3
        servicer.requests.clear()
        servicer.refusals = 100
        async with AsyncOracleClient(target, timeout_s=10, overload_retries=1) as c:
            with pytest.raises(Overloaded):
                await c.list_spaces()
        assert len(servicer.requests) == 2

    asyncio.run(run())
    assert all(g >= RETRY_AFTER_S * 0.95 for g in _gaps(servicer))
