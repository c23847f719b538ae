"""Synchronous client. ``with OracleClient("localhost:50051") as c: c.rank(...)``."""

from __future__ import annotations

import time
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


class OracleClient(ClientOptions):
    """Client of the latency oracle.

    ``target``: "host:port", a gRPC target URI (``dns:///svc:50051``) or a list of
    "host:port" (round-robin over them). ``token`` is sent as ``authorization: Bearer``.
    ``tls``/``root_certificates``/``client_cert``/``client_key`` enable (mutual) TLS.
    Calls that fail with UNAVAILABLE are retried with exponential backoff (gRPC retry
    policy); every call has a deadline (``timeout_s``). Batches larger than ``chunk_size``
    are split into several Rank RPCs and merged transparently.
    """

    def _open(self) -> None:
        self._channel = self.config.sync_channel()
        self._stub = pb_grpc.LatencyOracleStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    # ------------------------------------------------------------- plumbing
    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> OracleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: Any, timeout_s: float | None = None) -> Any:
        """One RPC, mapped errors; re-sent (same request, same request id) while the server
        answers RESOURCE_EXHAUSTED with a RetryInfo delay (see ``retry_delay``)."""
        retries = 0
        while True:
            self.num_rpcs += 1
            try:
                return getattr(self._stub, method)(
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
            time.sleep(delay)

    def health(self, service: str = "", timeout_s: float = 5.0) -> str:
        """Health status name of ``service`` ("" = the whole server): SERVING, NOT_SERVING..."""
        try:
            resp = self._health.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    def wait_until_serving(self, timeout_s: float = 60.0) -> None:
        """Block until the server reports SERVING (uses the health service's Watch)."""
        stream = self._health.Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout_s, wait_for_ready=True
        )
        try:
            for resp in stream:
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        finally:
            stream.cancel()

    # ------------------------------------------------------------------ API
    def list_spaces(self) -> list[SpaceInfo]:
        resp = self._call("ListSearchSpaces", pb.ListSearchSpacesRequest())
        return [rq.parse_space(s) for s in resp.spaces]

    def get_space(self, name: str) -> SpaceInfo:
        """One served space (with its definition, learnt locally: ``spaces.get_space``)."""
        resp = self._call("GetSearchSpace", pb.GetSearchSpaceRequest(name=name))
        return rq.learn_space(rq.parse_space(resp))

    def register_space(self, definition: Any) -> SpaceInfo:
        """Register a search space from a definition (YAML/JSON text, a ``Path`` or a
        mapping; see ``client_sdk.spaces.language``). Idempotent for the same definition;
        ``AlreadyExists`` for another one under a served name; ``InvalidSpaceDefinition``
        naming the path inside the definition. Takes seconds (the server builds the
        space's model)."""
        resp = self._call("RegisterSpace", rq.register_space_request(definition))
        return rq.learn_space(rq.parse_space(resp))

    def list_devices(self, space: str = "") -> list[DeviceInfo]:
        resp = self._call("ListDevices", pb.ListDevicesRequest(space=space))
        return [rq.parse_device(d) for d in resp.devices]

    def get_device(self, name: str, space: str = "") -> DeviceInfo:
        return rq.parse_device(self._call("GetDevice", pb.GetDeviceRequest(name=name, space=space)))

    def register_device(
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
        return rq.parse_device(self._call("RegisterDevice", req))

    def add_measurements(
        self,
        name: str,
        measurements: rq.Measurements,
        space: str = "",
        *,
        request_id: str | None = None,
    ) -> DeviceInfo:
        """Add measurements; idempotent per ``request_id`` like ``register_device``."""
        req = rq.add_request(name, space, measurements, request_id)
        return rq.parse_device(self._call("AddMeasurements", req))

    def delete_device(
        self, name: str, space: str = "", *, request_id: str | None = None
    ) -> bool:
        """Delete a device; idempotent per ``request_id`` like ``register_device``."""
        resp = self._call("DeleteDevice", rq.delete_request(name, space, request_id))
        return bool(resp.deleted)

    def rank(
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
        """Predict and rank ``archs`` (genes array or strings) for one or many devices."""
        names, reqs = rq.rank_requests(
            space, archs, devices, self.chunk_size, top_k, max_latency_ms, return_uncertainty,
            interval_level, return_latencies,
        )
        parts = [rq.parse_rank(self._call("Rank", r, timeout_s), names) for r in reqs]
        return rq.merge_chunks(parts, top_k, max_latency_ms)

    def suggest_references(
        self, space: str, n: int, seed: int = 0, device: str = ""
    ) -> np.ndarray:
        """Genes ``(n, num_genes)`` of architectures worth measuring on a new device.

        With ``device`` (a registered device): the next ones to measure on it, chosen where
        its head is most uncertain, never one it has already measured (adaptive onboarding).
        """
        req = pb.SuggestReferencesRequest(space=space, n=n, seed=seed, device=device)
        return rq.suggest_genes(self._call("SuggestReferences", req))

    def compare_devices(self, a: str, b: str, space: str = "") -> Comparison:
        req = pb.CompareDevicesRequest(a=a, b=b, space=space)
        return rq.parse_comparison(self._call("CompareDevices", req))
