"""SDK behaviour against real servers: asyncio client, round-robin over replicas, retries
on UNAVAILABLE, typed error mapping."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from client_sdk import (
    AsyncOracleClient,
    DeviceNotFound,
    InvalidArchitecture,
    OracleClient,
    Unavailable,
)
from client_sdk.spaces import get_space
from oracle_server.app import App
from tests.e2e.conftest import make_settings
from tests.helpers import unique_name

SPACE = get_space("nasbench201")


def test_async_client_matches_sync(server, client: OracleClient) -> None:
    genes = SPACE.sample(300, rng=21)
    ref = client.rank("nasbench201", genes, ["pixel3", "silver_4114"], top_k=5)

    async def go() -> None:
        async with AsyncOracleClient(f"127.0.0.1:{server.port}") as c:
            await c.wait_until_serving(timeout_s=10)
            assert await c.health() == client.health() == "SERVING"
            spaces = await c.list_spaces()
            assert spaces[0].name == "nasbench201"
            res, devs = await asyncio.gather(
                c.rank("nasbench201", genes, ["pixel3", "silver_4114"], top_k=5),
                c.list_devices("nasbench201"),
            )
            for d in ("pixel3", "silver_4114"):
                np.testing.assert_array_equal(res.latency_ms[d], ref.latency_ms[d])
                np.testing.assert_array_equal(res.order[d], ref.order[d])
            assert len(devs) >= 9
            name = unique_name("aio")
            lat = SPACE.table.device_column("fpga")[SPACE.table_rows(genes[:10])]
            dev = await c.register_device(name, "nasbench201", (genes[:10], lat))
            assert dev.num_samples == 10
            refs = await c.suggest_references("nasbench201", 4)
            assert refs.shape == (4, 6)
            cmp = await c.compare_devices(name, "pixel3", "nasbench201")
            assert cmp.num_predicted == 15625
            assert await c.delete_device(name, "nasbench201")
            with pytest.raises(DeviceNotFound):
                await c.get_device(name, "nasbench201")
            bad = genes[:3].copy()
            bad[2, 1] = 5
            with pytest.raises(InvalidArchitecture) as info:
                await c.rank("nasbench201", bad, "pixel3")
            assert (info.value.index, info.value.gene) == (2, 1)

    asyncio.run(go())


def test_round_robin_over_replicas(nb201_model, tmp_path) -> None:
    """Two replicas with separate registries: a device known to one only answers NOT_FOUND
    on the other, so a round-robin client sees both outcomes."""
    apps = [
        App(make_settings(tmp_path / str(i)), models={"nasbench201": nb201_model}).start(True, 60)
        for i in range(2)
    ]
    try:
        name = unique_name("rr")
        genes = SPACE.sample(10, rng=3)
        lat = SPACE.table.device_column("fpga")[SPACE.table_rows(genes)]
        with OracleClient(f"127.0.0.1:{apps[0].port}") as c0:
            c0.register_device(name, "nasbench201", (genes, lat))
        outcomes = {"ok": 0, "not_found": 0}
        with OracleClient([f"127.0.0.1:{a.port}" for a in apps]) as c:
            for _ in range(20):
                try:
                    c.rank("nasbench201", genes, name)
                    outcomes["ok"] += 1
                except DeviceNotFound:
                    outcomes["not_found"] += 1
        assert outcomes["ok"] >= 5 and outcomes["not_found"] >= 5, outcomes
    finally:
        for a in apps:
            a.stop(0)


def test_retries_unavailable_with_backoff() -> None:
    """A server answering UNAVAILABLE twice, then OK: the SDK retries (gRPC retry policy)."""
    from concurrent import futures

    import grpc

    from client_sdk.proto.latency_oracle.v1 import oracle_pb2 as pb

    calls = []

    def handler(request, context):
        calls.append(time.monotonic())
        if len(calls) <= 2:
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return pb.ListSearchSpacesResponse(spaces=[pb.SearchSpace(name="x")])

    server = grpc.server(futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "latency_oracle.v1.LatencyOracle",
        {"ListSearchSpaces": grpc.unary_unary_rpc_method_handler(
            handler, request_deserializer=pb.ListSearchSpacesRequest.FromString,
            response_serializer=pb.ListSearchSpacesResponse.SerializeToString)},
    )])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with OracleClient(f"127.0.0.1:{port}") as c:
            assert c.list_spaces()[0].name == "x"
        assert len(calls) == 3
        calls.clear()
        with OracleClient(f"127.0.0.1:{port}", retries=False) as c, pytest.raises(Unavailable):
            c.list_spaces()
        assert len(calls) == 1
    finally:
        server.stop(0)
