"""Thin gRPC servicer: decode -> Oracle pipeline -> encode. No model code here.

Tenancy (``oracle_server.tenants``) is applied here, around the pipeline: devices another
tenant may not see are answered as unknown (List/Get/Rank/Compare/Suggest), and writes to a
device the caller does not own are ``PERMISSION_DENIED`` (checked again by the registry
inside the write's transaction)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
from typing import Any

import grpc
from google.protobuf.message import Message

from client_sdk.errors import (
    REQUEST_ID_RE,
    DeviceNotFound,
    FailedPrecondition,
    InvalidArgument,
    LimitExceeded,
    OracleError,
    Unavailable,
)
from client_sdk.proto.latency_oracle.v1 import oracle_pb2 as pb
from client_sdk.proto.latency_oracle.v1 import oracle_pb2_grpc as pb_grpc
from client_sdk.spaces import SearchSpace
from oracle_server import codec, metrics
from oracle_server.oracle import Oracle, RankResult
from oracle_server.registry import RecordedRequest
from oracle_server.store import REGISTERED, Device
from oracle_server.tenants import Tenancy, current_caller
from oracle_server.writes import DeviceWrite, Receipt


def device_pb(device: Device) -> pb.Device:
    head = device.head
    return pb.Device(
        name=device.name,
        space=device.space,
        full_name=device.full_name,
        source=device.source,
        head_kind=head.kind,
        num_samples=device.num_samples,
        expected_spearman=float(head.expected_spearman),
        monotonicity=float(head.monotonicity),
        contract=codec.contract_to_pb(device.contract),
        created_at=codec.timestamp(device.created_at),
        updated_at=codec.timestamp(device.updated_at),
        head_fit_ms=float(head.fit_seconds) * 1e3,
        quality=pb.QUALITY_LOW if head.quality == "low" else pb.QUALITY_GOOD,
        flops_spearman=float(head.flops_spearman),
        advised_samples=int(head.advised_samples or device.num_samples),
        warnings=list(head.warnings),
        owner=device.owner or "",
    )


def space_pb(space: SearchSpace, devices: list[str], owner: str | None = None
             ) -> pb.SearchSpace:
    definition = getattr(space, "definition", None)
    return pb.SearchSpace(
        definition=definition.canonical_json() if definition is not None else "",
        owner=owner or "",
        name=space.name,
        description=space.description,
        num_genes=space.num_genes,
        cardinalities=[int(c) for c in space.cardinalities],
        gene_names=list(space.gene_names),
        num_architectures=space.num_architectures,
        space_size=str(space.space_size),
        table_devices=devices,
        accuracy_metrics=sorted(space.table.accuracy),
        example_arch=space.format(space.table.genes[0]),
    )


def rank_response(result: RankResult, return_latencies: bool) -> pb.RankResponse:
    # Filled in place: building DeviceRanking messages first and passing them to the
    # constructor would copy every packed array once more.
    response = pb.RankResponse(
        space=result.space,
        num_architectures=result.num_architectures,
        interval_level=result.interval_level,
    )
    for r in result.rankings:
        msg = response.rankings.add(
            device=r.device.full_name,
            order=codec.u32_bytes(r.order),
            expected_spearman=float(r.device.head.expected_spearman),
            head_kind=r.device.head.kind,
        )
        if return_latencies:
            msg.latency_ms = codec.f32_bytes(r.latency_ms)
        if r.lower_ms is not None and r.upper_ms is not None:
            msg.lower_ms = codec.f32_bytes(r.lower_ms)
            msg.upper_ms = codec.f32_bytes(r.upper_ms)
        if r.prob_within_budget is not None:
            msg.prob_within_budget = codec.f32_bytes(r.prob_within_budget)
    return response


def request_fingerprint(operation: str, request: Message) -> str:
    """sha256 of the operation and the request's deterministic bytes, ``request_id`` aside."""
    body = type(request)()
    body.CopyFrom(request)
    body.ClearField("request_id")
    digest = hashlib.sha256(operation.encode() + b"\0")
    digest.update(body.SerializeToString(deterministic=True))
    return digest.hexdigest()


def check_request_id(request_id: str) -> str:
    if not REQUEST_ID_RE.match(request_id):
        raise InvalidArgument(
            "must be 1-128 printable ASCII characters without spaces", field="request_id"
        )
    return request_id


def replay(
    recorded: RecordedRequest, operation: str, fingerprint: str, reply_type: type[Message]
) -> Message:
    """The first reply of a request id, if this request is the one it was recorded for."""
    if recorded.operation != operation or recorded.fingerprint != fingerprint:
        raise InvalidArgument(
            f"request id {recorded.request_id!r} was already used for a different "
            f"{recorded.operation} request; send a new request id for a new write",
            field="request_id",
        )
    metrics.IDEMPOTENT_REPLAYS.labels(operation).inc()
    return reply_type.FromString(recorded.response)


class OracleServicer(pb_grpc.LatencyOracleServicer):
    """Maps RPCs onto an ``Oracle``; ``oracle_ref()`` is None while the proxy is loading."""

    def __init__(
        self,
        oracle_ref: Callable[[], Oracle | None],
        max_batch: int,
        tenancy: Tenancy | None = None,
    ) -> None:
        self._oracle_ref = oracle_ref
        self._max_batch = max_batch
        self._tenancy = tenancy or Tenancy()

    @property
    def oracle(self) -> Oracle:
        oracle = self._oracle_ref()
        if oracle is None:
            raise Unavailable("the oracle is still loading its proxy models; retry shortly")
        return oracle

    def ListSearchSpaces(self, request, context):
        oracle = self.oracle
        spaces = []
        for name in oracle.models:
            spaces.append(self._space_message(oracle, name))
        return pb.ListSearchSpacesResponse(spaces=spaces)

    def GetSearchSpace(self, request, context):
        return self._space_message(self.oracle, request.name)

    def RegisterSpace(self, request, context):
        oracle = self.oracle
        if oracle.catalog is None:
            raise FailedPrecondition("this server does not register spaces")
        owner = self._tenancy.owner_for(current_caller())
        space = oracle.catalog.register(request.definition, owner)
        return self._space_message(oracle, space.name)

    @staticmethod
    def _space_message(oracle: Oracle, name: str) -> pb.SearchSpace:
        space = oracle.space(name)  # SpaceNotFound
        table = [d.name for d in oracle.list_devices(name) if d.source == "table"]
        owner = oracle.catalog.owner(name) if oracle.catalog is not None else None
        return space_pb(space, table, owner)

    # ------------------------------------------------------------------ tenancy
    def _visible(self, device: Device) -> bool:
        return self._tenancy.may_see(current_caller(), device.owner)

    def _check_visible(self, oracle: Oracle, name: str, space: str) -> None:
        """Answer a device the caller may not see exactly like an unknown one. Other lookup
        errors are left to the pipeline, which reports them with the right field."""
        if not self._tenancy.hides:
            return
        try:
            device = oracle.device(name, space)
        except OracleError:
            return
        if not self._visible(device):
            raise DeviceNotFound(f"unknown device '{device.full_name}'")

    def _existing(self, oracle: Oracle, name: str, space: str) -> Device | None:
        try:
            return oracle.device(name, space)
        except OracleError:
            return None

    def _check_write(self, device: Device | None) -> str | None:
        """PERMISSION_DENIED unless the caller owns ``device`` (or is an admin); returns the
        owner the registry must find when it writes (None: any)."""
        caller = current_caller()
        if device is not None and device.source == REGISTERED:
            self._tenancy.check_write(caller, device.full_name, device.owner)
        return self._tenancy.required_owner(caller)

    # -------------------------------------------------------------------- reads
    def ListDevices(self, request, context):
        devices = self.oracle.list_devices(request.space)
        return pb.ListDevicesResponse(devices=[device_pb(d) for d in devices if self._visible(d)])

    def GetDevice(self, request, context):
        device = self.oracle.device(request.name, request.space)
        if not self._visible(device):
            raise DeviceNotFound(f"unknown device '{device.full_name}'")
        return device_pb(device)

    def Rank(self, request: pb.RankRequest, context: grpc.ServicerContext) -> pb.RankResponse:
        oracle = self.oracle
        t0 = time.perf_counter()
        space = oracle.space(request.space)
        n = codec.count_archs(request.archs, space.num_genes)
        if n > self._max_batch:
            raise LimitExceeded(f"{n} architectures exceed the limit of {self._max_batch} per Rank")
        for name in request.devices:
            self._check_visible(oracle, name, space.name)
        # The tenant's work (its work limit's currency), known exactly before any decoding.
        self._tenancy.fair_share.charge(current_caller().tenant, n * len(request.devices))
        # a small call is counted from its decoding to its encoded reply, so that a large
        # Rank's chunks wait for all of it (``priority.PriorityGate``)
        small = not oracle.gate.is_large(n * len(request.devices))
        with oracle.gate.small_call() if small else nullcontext():
            return self._rank(oracle, space, request, context, t0)

    def _rank(self, oracle: Oracle, space: SearchSpace, request: pb.RankRequest,
              context: grpc.ServicerContext, t0: float) -> pb.RankResponse:
        genes = codec.decode_archs(space, request.archs)
        metrics.rank_stage("decode").observe(time.perf_counter() - t0)
        level = request.interval_level if request.HasField("interval_level") else 0.8
        result = oracle.rank(
            space.name,
            genes,
            list(request.devices),
            top_k=request.top_k,
            max_latency_ms=request.max_latency_ms if request.HasField("max_latency_ms") else None,
            return_uncertainty=request.return_uncertainty,
            interval_level=level,
            is_cancelled=lambda: not context.is_active(),
        )
        t1 = time.perf_counter()
        return_latencies = (
            request.return_latencies if request.HasField("return_latencies") else True
        )
        response = rank_response(result, return_latencies)
        metrics.rank_stage("encode").observe(time.perf_counter() - t1)
        return response

    def SuggestReferences(self, request, context):
        oracle = self.oracle
        space = oracle.space(request.space)
        if request.device:
            self._check_visible(oracle, request.device, space.name)
        genes = oracle.suggest(
            space.name, int(request.n), int(request.seed), device=request.device
        )
        return pb.SuggestReferencesResponse(
            genes=codec.encode_genes(genes), archs=[space.format(g) for g in genes]
        )

    def _measurements(self, space: SearchSpace, request) -> tuple:
        genes = codec.decode_archs(space, request.archs)
        lat = codec.decode_latencies(request.latency_ms, genes.shape[0])
        if genes.shape[0] == 0:
            raise InvalidArgument("no measurements given", field="archs")
        return genes, lat

    def _idempotent(
        self,
        operation: str,
        request: Any,
        reply_type: type[Message],
        encode: Callable[[Any], Message],
        write: Callable[[Receipt | None], Any],
    ) -> Message:
        """Run ``write`` once per request id.

        Without a request id (or a registry) it just runs. With one: a recorded id is
        answered from its record (or INVALID_ARGUMENT if the body differs); otherwise the
        write runs with a ``Receipt`` that the registry records in the write's transaction,
        and the reply is exactly the recorded bytes. A write that fails because the same
        id committed meanwhile (a concurrent retry on another replica) is answered from
        that record too.
        """
        oracle = self.oracle
        registry = oracle.store.registry
        if not request.request_id or registry is None:
            return encode(write(None))
        request_id = check_request_id(request.request_id)
        fingerprint = request_fingerprint(operation, request)
        # Ids are per tenant: one tenant's id never answers (or blocks) another's write.
        caller = current_caller()
        scope = caller.tenant if caller.authenticated else ""
        recorded = registry.recall(request_id, scope)
        if recorded is not None:
            return replay(recorded, operation, fingerprint, reply_type)
        sent: list[bytes] = []

        def reply(result: Any) -> bytes:
            data = encode(result).SerializeToString(deterministic=True)
            sent.append(data)
            return data

        try:
            write(Receipt(request_id, operation, fingerprint, reply, scope))
        except OracleError:
            try:
                recorded = registry.recall(request_id, scope)
            except OracleError:
                recorded = None
            if recorded is None:
                raise
            return replay(recorded, operation, fingerprint, reply_type)
        return reply_type.FromString(sent[-1])

    def RegisterDevice(self, request, context):
        oracle = self.oracle

        def write(receipt: Receipt | None) -> Device:
            space = oracle.space(request.space)
            # Re-registering another tenant's device: PERMISSION_DENIED (own: ALREADY_EXISTS).
            self._check_write(self._existing(oracle, request.name, space.name))
            genes, lat = self._measurements(space, request)
            contract = codec.contract_from_pb(request.contract)
            owner = self._tenancy.owner_for(current_caller())
            return oracle.register(DeviceWrite(space.name, request.name, genes, lat,
                                               contract=contract, owner=owner, receipt=receipt))

        return self._idempotent("RegisterDevice", request, pb.Device, device_pb, write)

    def AddMeasurements(self, request, context):
        oracle = self.oracle

        def write(receipt: Receipt | None) -> Device:
            sp, name = oracle.split_name(request.name, request.space)
            space = oracle.space(sp)
            required = self._check_write(self._existing(oracle, name, sp))
            genes, lat = self._measurements(space, request)
            return oracle.add_measurements(DeviceWrite(sp, name, genes, lat,
                                                       require_owner=required, receipt=receipt))

        return self._idempotent("AddMeasurements", request, pb.Device, device_pb, write)

    def DeleteDevice(self, request, context):
        oracle = self.oracle

        def write(receipt: Receipt | None) -> bool:
            required = self._check_write(self._existing(oracle, request.name, request.space))
            return oracle.delete(DeviceWrite(request.space, request.name,
                                             require_owner=required, receipt=receipt))

        return self._idempotent(
            "DeleteDevice", request, pb.DeleteDeviceResponse,
            lambda deleted: pb.DeleteDeviceResponse(deleted=deleted), write,
        )

    def CompareDevices(self, request, context):
        oracle = self.oracle
        for name in (request.a, request.b):
            self._check_visible(oracle, name, request.space)
        comparison = oracle.compare(request.a, request.b, request.space)
        return pb.CompareDevicesResponse(**asdict(comparison))  # the message's fields, by name
