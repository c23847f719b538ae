"""Request builders and response parsers shared by the sync and asyncio clients."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from client_sdk.proto.latency_oracle.v1 import oracle_pb2 as pb
from client_sdk.types import Comparison, DeviceInfo, RankResult, SpaceInfo

#: genes (n, g), strings, table indices (NB201: NATS-Bench), FBNet op-name lists, OFA subnet dicts
Archs = (
    np.ndarray | Sequence[str] | Sequence[Sequence[int]] | Sequence[int]
    | Sequence[Sequence[str]] | Sequence[Mapping[str, Any]]
)
Measurements = (
    Mapping[str, float] | tuple[np.ndarray | Sequence[Any], Sequence[float]] | list[tuple]
)

#: gRPC retry policy of every method: a call that fails UNAVAILABLE (a replica died or is
#: draining, the registry is briefly away) is re-sent, byte for byte, up to 4 more times with
#: randomised exponential backoff -- on another replica when the channel balances over
#: several. Writes are safe to re-send because every SDK write carries a request id that the
#: server deduplicates (``request_id`` of the write requests).
RETRY_SERVICE_CONFIG = {
    "methodConfig": [
        {
            "name": [{"service": "latency_oracle.v1.LatencyOracle"}],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}


def channel_options(
    max_message_bytes: int, round_robin: bool, retries: bool, tls_server_name: str | None
) -> list[tuple[str, Any]]:
    config: dict[str, Any] = dict(RETRY_SERVICE_CONFIG) if retries else {}
    if round_robin:
        config["loadBalancingConfig"] = [{"round_robin": {}}]
        # Client-side health checking: a replica that is loading or draining (health
        # NOT_SERVING) gets no new calls.
        config["healthCheckConfig"] = {"serviceName": ""}
    opts: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.enable_retries", 1 if retries else 0),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.service_config", json.dumps(config)),
    ]
    if round_robin:
        # A replica back from a restart is reconnected to within 5 s (default: up to 120 s).
        opts.append(("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS))
    if tls_server_name:
        opts.append(("grpc.ssl_target_name_override", tls_server_name))
    return opts


MAX_RECONNECT_BACKOFF_MS = 5_000


def new_request_id(request_id: str | None = None) -> str:
    """``request_id`` checked, or a fresh uuid4: the idempotency key of one logical write."""
    from client_sdk.errors import REQUEST_ID_RE, InvalidArgument

    if request_id is None:
        return str(uuid.uuid4())
    if not isinstance(request_id, str) or not REQUEST_ID_RE.match(request_id):
        raise InvalidArgument(
            "must be 1-128 printable ASCII characters without spaces", field="request_id"
        )
    return request_id


def normalise_target(target: str | Sequence[str]) -> str:
    """One address, or several (joined into an ``ipv4:``/``ipv6:`` list for round_robin)."""
    if isinstance(target, str):
        return target
    import socket

    addrs = []
    for item in target:
        host, _, port = item.rpartition(":")
        info = socket.getaddrinfo(host.strip("[]"), int(port), proto=socket.IPPROTO_TCP)
        ip = info[0][4][0]
        addrs.append(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}")
    scheme = "ipv6" if any(a.startswith("[") for a in addrs) else "ipv4"
    return f"{scheme}:{','.join(addrs)}"


def local_space(space: str | None) -> Any:
    """The bundled ``SearchSpace`` of that name (``space/device`` accepted), else None."""
    from client_sdk.errors import NotFound
    from client_sdk.spaces import get_space

    name = (space or "").partition("/")[0] if space and "/" in space else space
    if not name:
        return None
    try:
        return get_space(name)
    except NotFound:
        return None


def to_genes(space: Any, archs: Any) -> np.ndarray:
    """Any accepted architecture batch -> canonical genes, with the SDK's error types."""
    from client_sdk.spaces.formats import to_genes as _to_genes

    return _to_genes(space, archs)


def archs_pb(archs: Archs, space: str | None = None) -> tuple[pb.Architectures, int]:
    """Genes travel packed as they are. Strings and the native forms (NATS-Bench indices,
    FBNet op lists, OFA subnet dicts) are parsed here, vectorised, when ``space`` is a
    bundled space, and sent packed too; otherwise strings go as strings."""
    if isinstance(archs, np.ndarray) and archs.dtype.kind in "iu" and archs.ndim == 2:
        genes = np.ascontiguousarray(archs, dtype=np.uint8)
        if np.any(archs < 0) or np.any(archs > 255):
            return _strings_or_nested(archs)
        packed = pb.PackedGenes(num_genes=genes.shape[1], genes=genes.tobytes())
        return pb.Architectures(packed=packed), genes.shape[0]
    local = local_space(space)
    if local is not None:
        return archs_pb(to_genes(local, archs))
    return _strings_or_nested(archs)


def _strings_or_nested(archs: Any) -> tuple[pb.Architectures, int]:
    items = list(archs)
    if all(isinstance(a, str) for a in items):
        return pb.Architectures(strings=pb.ArchStrings(archs=items)), len(items)
    arr = np.asarray(items)
    if arr.ndim != 2 or arr.dtype.kind not in "iu":
        raise TypeError("archs must be an (n, num_genes) integer array or a list of strings")
    if np.any(arr < 0) or np.any(arr > 255):
        raise ValueError("gene values must be in 0..255 (see the space's cardinalities)")
    return archs_pb(arr.astype(np.uint8))


def measurements_pb(
    measurements: Measurements, space: str | None = None
) -> tuple[pb.Architectures, list[float]]:
    """Accepts ``{arch_string: latency_ms}``, a tuple ``(archs, latencies)`` (archs in any
    accepted form) or a list of ``(arch, latency_ms)`` pairs."""
    if isinstance(measurements, Mapping):
        archs: Any = list(measurements.keys())
        lat = list(measurements.values())
    elif isinstance(measurements, tuple):
        if len(measurements) != 2:
            raise TypeError("measurements tuple must be (archs, latencies)")
        archs, lat = measurements[0], list(measurements[1])
    else:
        pairs = list(measurements)
        archs, lat = [a for a, _ in pairs], [v for _, v in pairs]
        if archs and isinstance(archs[0], list | tuple | np.ndarray) and local_space(space) is None:
            archs = np.asarray(archs)
    msg, _ = archs_pb(archs, space)
    return msg, [float(v) for v in lat]


def contract_pb(contract: Mapping[str, Any] | None) -> pb.DeviceContract:
    return pb.DeviceContract(**dict(contract or {}))


def rank_request(
    space: str,
    archs: pb.Architectures,
    devices: Sequence[str],
    top_k: int | None,
    max_latency_ms: float | None,
    return_uncertainty: bool,
    interval_level: float | None,
    return_latencies: bool = True,
) -> pb.RankRequest:
    req = pb.RankRequest(
        space=space,
        archs=archs,
        devices=list(devices),
        top_k=int(top_k or 0),
        return_uncertainty=return_uncertainty,
        return_latencies=return_latencies,
    )
    if max_latency_ms is not None:
        req.max_latency_ms = float(max_latency_ms)
    if interval_level is not None:
        req.interval_level = float(interval_level)
    return req


def rank_requests(
    space: str,
    archs: Archs,
    devices: str | Sequence[str],
    chunk_size: int,
    top_k: int | None,
    max_latency_ms: float | None,
    return_uncertainty: bool,
    interval_level: float | None,
    return_latencies: bool,
) -> tuple[list[str], list[pb.RankRequest]]:
    """Device names as asked and one RankRequest per chunk (top_k applied after merging)."""
    names = [devices] if isinstance(devices, str) else list(devices)
    msg, n = archs_pb(archs, space)
    chunks = chunk_archs(msg, n, chunk_size)
    single = len(chunks) == 1
    reqs = [
        rank_request(space, chunk, names, top_k if single else None, max_latency_ms,
                     return_uncertainty, interval_level, return_latencies or not single)
        for chunk in chunks
    ]
    return names, reqs


def register_request(
    name: str,
    space: str,
    measurements: Measurements,
    contract: Mapping[str, Any] | None,
    request_id: str | None = None,
) -> pb.RegisterDeviceRequest:
    archs, lat = measurements_pb(measurements, space)
    return pb.RegisterDeviceRequest(
        name=name, space=space, archs=archs, latency_ms=lat, contract=contract_pb(contract),
        request_id=new_request_id(request_id),
    )


def add_request(
    name: str, space: str, measurements: Measurements, request_id: str | None = None
) -> pb.AddMeasurementsRequest:
    archs, lat = measurements_pb(measurements, space or (name if "/" in name else None))
    return pb.AddMeasurementsRequest(
        name=name, space=space, archs=archs, latency_ms=lat,
        request_id=new_request_id(request_id),
    )


def delete_request(
    name: str, space: str, request_id: str | None = None
) -> pb.DeleteDeviceRequest:
    return pb.DeleteDeviceRequest(name=name, space=space, request_id=new_request_id(request_id))


def _f32(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<f4")


def parse_rank(resp: pb.RankResponse, devices: Sequence[str]) -> RankResult:
    lat, order, lo, hi, prob, rho, full = {}, {}, {}, {}, {}, {}, {}
    for name, r in zip(devices, resp.rankings, strict=True):
        full[name] = r.device
        lat[name] = _f32(r.latency_ms)
        order[name] = np.frombuffer(r.order, dtype="<u4")
        rho[name] = r.expected_spearman
        if r.lower_ms:
            lo[name], hi[name] = _f32(r.lower_ms), _f32(r.upper_ms)
        if r.prob_within_budget:
            prob[name] = _f32(r.prob_within_budget)
    return RankResult(
        space=resp.space, num_architectures=resp.num_architectures, devices=tuple(devices),
        full_names=full, latency_ms=lat, order=order, lower_ms=lo, upper_ms=hi,
        prob_within_budget=prob, expected_spearman=rho, interval_level=resp.interval_level,
    )


def local_order(lat: np.ndarray, top_k: int | None, budget: float | None) -> np.ndarray:
    """Same ordering rule as the server (used when a batch was split into chunks)."""
    idx = np.arange(lat.shape[0]) if budget is None else np.flatnonzero(lat <= budget)
    sel = idx[np.argsort(lat[idx], kind="stable")]
    return (sel[:top_k] if top_k else sel).astype(np.uint32)


def merge_chunks(
    parts: Sequence[RankResult], top_k: int | None, budget: float | None
) -> RankResult:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]

    def cat(attr: str) -> dict[str, np.ndarray]:
        maps = [getattr(p, attr) for p in parts]
        return {d: np.concatenate([m[d] for m in maps]) for d in maps[0]}

    lat = cat("latency_ms")
    return RankResult(
        space=first.space,
        num_architectures=sum(p.num_architectures for p in parts),
        devices=first.devices, full_names=first.full_names, latency_ms=lat,
        order={d: local_order(v, top_k, budget) for d, v in lat.items()},
        lower_ms=cat("lower_ms"), upper_ms=cat("upper_ms"),
        prob_within_budget=cat("prob_within_budget"),
        expected_spearman=first.expected_spearman, interval_level=first.interval_level,
    )


def chunk_archs(archs: pb.Architectures, n: int, chunk: int) -> list[pb.Architectures]:
    if n <= chunk:
        return [archs]
    if archs.WhichOneof("encoding") == "packed":
        g = archs.packed.num_genes
        data = archs.packed.genes
        return [
            pb.Architectures(
                packed=pb.PackedGenes(num_genes=g, genes=data[i * g : (i + chunk) * g])
            )
            for i in range(0, n, chunk)
        ]
    items = list(archs.strings.archs)
    return [
        pb.Architectures(strings=pb.ArchStrings(archs=items[i : i + chunk]))
        for i in range(0, n, chunk)
    ]


def _ts(ts: Any) -> dt.datetime | None:
    if not ts.seconds and not ts.nanos:
        return None
    return ts.ToDatetime(tzinfo=dt.UTC)


def parse_device(d: pb.Device) -> DeviceInfo:
    contract = {
        f.name: getattr(d.contract, f.name) for f in pb.DeviceContract.DESCRIPTOR.fields
    }
    return DeviceInfo(
        name=d.name, space=d.space, full_name=d.full_name, source=d.source,
        head_kind=d.head_kind, num_samples=d.num_samples,
        expected_spearman=d.expected_spearman, monotonicity=d.monotonicity,
        contract=contract, created_at=_ts(d.created_at), updated_at=_ts(d.updated_at),
        head_fit_ms=d.head_fit_ms,
        quality="low" if d.quality == pb.QUALITY_LOW else "good",
        flops_spearman=d.flops_spearman,
        advised_samples=d.advised_samples,
        warnings=tuple(d.warnings),
        owner=d.owner,
    )


def parse_space(s: pb.SearchSpace) -> SpaceInfo:
    return SpaceInfo(
        name=s.name, description=s.description, num_genes=s.num_genes,
        cardinalities=tuple(s.cardinalities), gene_names=tuple(s.gene_names),
        num_architectures=s.num_architectures, space_size=int(s.space_size or 0),
        table_devices=tuple(s.table_devices), accuracy_metrics=tuple(s.accuracy_metrics),
        example_arch=s.example_arch, definition=s.definition, owner=s.owner,
    )


def register_space_request(definition: Any) -> pb.RegisterSpaceRequest:
    """A definition as YAML/JSON text, bytes, a path to a file, or a mapping."""
    import json
    from pathlib import Path

    if isinstance(definition, Path):
        definition = definition.read_text()
    elif isinstance(definition, bytes):
        definition = definition.decode("utf-8")
    elif isinstance(definition, Mapping):
        definition = json.dumps(definition)
    if not isinstance(definition, str):
        raise TypeError("a space definition is YAML/JSON text, a Path or a mapping, got "
                        f"{type(definition).__name__}")
    return pb.RegisterSpaceRequest(definition=definition)


def learn_space(info: SpaceInfo) -> SpaceInfo:
    """Make a served space from a definition known in this process too (``get_space``),
    so strings parse and genes validate locally; a local clash is left to the server."""
    if info.definition:
        import contextlib

        from client_sdk.errors import OracleError
        from client_sdk.spaces import register_space

        with contextlib.suppress(OracleError):
            register_space(info.definition)
    return info


def parse_comparison(c: pb.CompareDevicesResponse) -> Comparison:
    return Comparison(
        c.spearman_predicted, c.num_predicted, c.spearman_measured, c.num_shared,
        c.kendall_predicted,
    )


def suggest_genes(resp: pb.SuggestReferencesResponse) -> np.ndarray:
    g = resp.genes.num_genes
    return np.frombuffer(resp.genes.genes, dtype=np.uint8).reshape(-1, g).astype(np.int16)
