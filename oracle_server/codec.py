"""proto <-> numpy. The only module (with servicer.py) that touches generated message classes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from client_sdk.errors import InvalidArgument
from client_sdk.proto.latency_oracle.v1 import oracle_pb2 as pb
from client_sdk.spaces import SearchSpace
from client_sdk.spaces.base import GENE_DTYPE

CONTRACT_FIELDS = (
    "unit", "batch_size", "input_resolution", "threads", "runtime", "runtime_version",
    "precision", "hardware", "notes",
)


def decode_archs(space: SearchSpace, archs: pb.Architectures, field: str = "archs") -> np.ndarray:
    """Request architectures -> validated canonical genes ``(n, g)`` int16."""
    kind = archs.WhichOneof("encoding")
    if kind == "packed":
        packed = archs.packed
        if packed.num_genes != space.num_genes:
            raise InvalidArgument(
                f"space '{space.name}' has {space.num_genes} genes per architecture, "
                f"request says {packed.num_genes}",
                field=f"{field}.packed.num_genes",
            )
        raw = np.frombuffer(packed.genes, dtype=np.uint8)
        if raw.size % space.num_genes:
            raise InvalidArgument(
                f"{raw.size} bytes is not a multiple of num_genes={space.num_genes}",
                field=f"{field}.packed.genes",
            )
        genes = raw.reshape(-1, space.num_genes)
        if genes.size and (genes.max() < space._min_cardinality or not (
                genes >= np.minimum(space.cardinalities, 255).astype(np.uint8)).any()):
            # every gene in range (one check for the whole batch, or one per gene position)
            # = validate, minus the checks (canonical on the bytes: half the memory to touch)
            return np.ascontiguousarray(space.canonicalize(genes), dtype=GENE_DTYPE)
        return space.validate(genes)  # the checks, and the precise error
    if kind == "strings":
        return space.parse_many(list(archs.strings.archs))
    raise InvalidArgument("no architectures given (set packed or strings)", field=field)


def count_archs(archs: pb.Architectures, num_genes: int) -> int:
    """Batch size without decoding (for early limit checks)."""
    kind = archs.WhichOneof("encoding")
    if kind == "packed":
        return len(archs.packed.genes) // max(num_genes, 1)
    if kind == "strings":
        return len(archs.strings.archs)
    return 0


def encode_genes(genes: np.ndarray) -> pb.PackedGenes:
    genes = np.ascontiguousarray(genes, dtype=np.uint8)
    return pb.PackedGenes(num_genes=genes.shape[1], genes=genes.tobytes())


def archs_message(
    genes: np.ndarray | None = None, strings: Sequence[str] | None = None
) -> pb.Architectures:
    if strings is not None:
        return pb.Architectures(strings=pb.ArchStrings(archs=list(strings)))
    assert genes is not None
    return pb.Architectures(packed=encode_genes(genes))


def decode_latencies(values: Sequence[float], n: int, field: str = "latency_ms") -> np.ndarray:
    lat = np.asarray(values, dtype=np.float64)
    if lat.shape[0] != n:
        raise InvalidArgument(f"got {lat.shape[0]} latencies for {n} architectures", field=field)
    bad = ~np.isfinite(lat) | (lat <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidArgument(
            f"latency must be a positive finite number of ms, got {lat[i]!r}", field=f"{field}[{i}]"
        )
    return lat


def f32_bytes(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype="<f4").tobytes()


def u32_bytes(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype="<u4").tobytes()


def contract_from_pb(msg: pb.DeviceContract) -> dict:
    out = {f: getattr(msg, f) for f in CONTRACT_FIELDS}
    out["unit"] = out["unit"] or "ms/inference"
    if out["unit"] != "ms/inference":
        raise InvalidArgument(
            f"only 'ms/inference' is supported, got '{out['unit']}'", field="contract.unit"
        )
    for key in ("runtime", "runtime_version", "precision", "hardware"):
        if len(out[key]) > 256:
            raise InvalidArgument("at most 256 characters", field=f"contract.{key}")
    if len(out["notes"]) > 4096:
        raise InvalidArgument("at most 4096 characters", field="contract.notes")
    return out


def contract_to_pb(contract: dict) -> pb.DeviceContract:
    return pb.DeviceContract(**{k: v for k, v in contract.items() if k in CONTRACT_FIELDS})


def timestamp(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    ts.FromDatetime(value)
    return ts

