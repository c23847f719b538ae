"""asyncio client with the same API as ``OracleClient`` (``await client.rank(...)``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client_sdk import _requests as rq
from client_sdk._channel import ClientOptions
from client_sdk.errors import from_rpc_error
from client_sdk.proto.latency_oracle.v1 import oracle_pb2 as pb
from client_sdk.proto.latency_oracle.v1 import oracle_pb2_grpc as pb_grpc
from client_sdk.types import Comparison, DeviceInfo, RankResult, SpaceInfo


class AsyncOracleClient(ClientOptions):
    """``async with AsyncOracleClient("localhost:50051") as c: await c.rank(...)``."""

    def _open(self) -> None:
        self._channel = self.config.aio_channel()
        self._stub = pb_grpc.LatencyOracleStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def health(self, service: str = "", timeout_s: float = 5.0) -> str:
        """Health status name of ``service`` ("" = the whole server): SERVING, NOT_SERVING..."""
        try:
            resp = await self._health.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    async def wait_until_serving(self, timeout_s: float = 60.0) -> None:
        """Wait until the server reports SERVING (the health service's Watch)."""
        call = self._health.Watch(health_pb2.HealthCheckRequest(service=""),
                                  timeout=timeout_s, wait_for_ready=True)
        try:
            async for resp in call:
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncOracleClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, method: str, request: Any, timeout_s: float | None = None) -> Any:
        """One RPC, mapped errors; re-sent (same request, same request id) while the server
        answers RESOURCE_EXHAUSTED with a RetryInfo delay (see ``retry_delay``)."""
        retries = 0
        while True:
            self.num_rpcs += 1
            try:
                return await getattr(self._stub, method)(
                    request,
                    timeout=timeout_s or self.timeout_s,
                    metadata=self.config.metadata,
                    wait_for_ready=self.wait_for_ready,
                )
            except grpc.RpcError as err:
                exc = from_rpc_error(err)
            delay = self.retry_delay(exc, retries)
            if delay is None:
                raise exc from None
            retries += 1
            await asyncio.sleep(delay)

    async def list_spaces(self) -> list[SpaceInfo]:
        resp = await self._call("ListSearchSpaces", pb.ListSearchSpacesRequest())
        return [rq.parse_space(s) for s in resp.spaces]

    async def get_space(self, name: str) -> SpaceInfo:
        resp = await self._call("GetSearchSpace", pb.GetSearchSpaceRequest(name=name))
        return rq.learn_space(rq.parse_space(resp))

    async def register_space(self, definition: Any) -> SpaceInfo:
        """See ``OracleClient.register_space``."""
        resp = await self._call("RegisterSpace", rq.register_space_request(definition))
        return rq.learn_space(rq.parse_space(resp))

    async def list_devices(self, space: str = "") -> list[DeviceInfo]:
        resp = await self._call("ListDevices", pb.ListDevicesRequest(space=space))
        return [rq.parse_device(d) for d in resp.devices]

    async def get_device(self, name: str, space: str = "") -> DeviceInfo:
        resp = await self._call("GetDevice", pb.GetDeviceRequest(name=name, space=space))
        return rq.parse_device(resp)

    async def register_device(
        self,
        name: str,
        space: str,
        measurements: rq.Measurements,
        contract: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
    ) -> DeviceInfo:
        """Register a device. Idempotent: the write carries ``request_id`` (a fresh uuid4
        unless given) and every retry re-sends it, so a retry never registers twice. Pass
        your own id to retry a call yourself (e.g. after a deadline); the same id with a
        different request is ``InvalidArgument`` (field ``request_id``)."""
        req = rq.register_request(name, space, measurements, contract, request_id)
        return rq.parse_device(await self._call("RegisterDevice", req))

    async def add_measurements(
        self,
        name: str,
        measurements: rq.Measurements,
        space: str = "",
        *,
        request_id: str | None = None,
    ) -> DeviceInfo:
        """Add measurements; idempotent per ``request_id`` like ``register_device``."""
        req = rq.add_request(name, space, measurements, request_id)
        return rq.parse_device(await self._call("AddMeasurements", req))

    async def delete_device(
        self, name: str, space: str = "", *, request_id: str | None = None
    ) -> bool:
        """Delete a device; idempotent per ``request_id`` like ``register_device``."""
        resp = await self._call("DeleteDevice", rq.delete_request(name, space, request_id))
        return bool(resp.deleted)

    async def rank(
        self,
        space: str,
        archs: rq.Archs,
        devices: str | Sequence[str],
        *,
        top_k: int | None = None,
        max_latency_ms: float | None = None,
        return_uncertainty: bool = False,
        interval_level: float | None = None,
        return_latencies: bool = True,
        timeout_s: float | None = None,
    ) -> RankResult:
        names, reqs = rq.rank_requests(
            space, archs, devices, self.chunk_size, top_k, max_latency_ms, return_uncertainty,
            interval_level, return_latencies,
        )
        parts = [rq.parse_rank(await self._call("Rank", r, timeout_s), names) for r in reqs]
        return rq.merge_chunks(parts, top_k, max_latency_ms)

    async def suggest_references(
        self, space: str, n: int, seed: int = 0, device: str = ""
    ) -> np.ndarray:
        req = pb.SuggestReferencesRequest(space=space, n=n, seed=seed, device=device)
        return rq.suggest_genes(await self._call("SuggestReferences", req))

    async def compare_devices(self, a: str, b: str, space: str = "") -> Comparison:
        req = pb.CompareDevicesRequest(a=a, b=b, space=space)
        return rq.parse_comparison(await self._call("CompareDevices", req))
