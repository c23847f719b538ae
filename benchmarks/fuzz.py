"""Fuzz every LatencyOracle method over loopback: random messages and raw/mutated bytes.

Each case sends one request through a *generic* channel call
(``channel.unary_unary('/latency_oracle.v1.LatencyOracle/<Method>')``) with either a random
but well-typed message (fields drawn from edge values: empty/huge/odd-charset strings,
NaN/inf/negative numbers, random gene bytes, long repeated fields) or raw bytes (random, or
a valid message with bit flips, truncation and insertions). The contract checked:

- the status is never ``UNKNOWN`` nor ``INTERNAL`` (nor a transport error);
- the server process stays up and its health check answers ``SERVING`` afterwards.

    python -m benchmarks.fuzz --cases 10000 --json benchmarks/results/fuzz.json

Without ``--target`` a subprocess server is started on 127.0.0.1 (port 0) with the test
proxy cache. Everything stays on loopback and is bounded by ``--cases`` and ``--max-seconds``.
"""

from __future__ import annotations

import json
import math
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor

from benchmarks._cli import ROOT, finish, parser
from client_sdk.proto.latency_oracle.v1 import oracle_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["LatencyOracle"]
METHODS: dict[str, Any] = {m.name: m.input_type._concrete_class for m in SERVICE.methods}
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
NB201_ARCH = (
    "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_3x3~2|"
)
ODD_BYTES = (b"\xff" * 10, b"\x0a\xff\xff\xff\xff\x0f", b"\x80", b"\x12\x00")
STRINGS = (
    "",
    "nasbench201",
    "fbnet",
    "ofa_mbv3",
    "pixel3",
    "raspi4",
    "nasbench201/pixel3",
    "nasbench201/",
    "/pixel3",
    "a/b/c",
    "..",
    "-x",
    "x" * 64,
    "x" * 65,
    "x" * 5000,
    "ms/inference",
    "ms",
    "pix el",
    "é",
    "\u202e",
    "\x00",
    "%s%n",
    "'; drop table x;--",
    NB201_ARCH,
    NB201_ARCH[:-1],
    "|none~0|",
    "k3_e1-" * 22,
    "r=224 d=2-3",
)


def _random_string(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.6:
        return rng.choice(STRINGS)
    if pick < 0.8:
        n = rng.choice((1, 5, 64, 300))
        return "".join(chr(rng.randrange(32, 127)) for _ in range(n))
    n = rng.randrange(1, 40)
    return "".join(
        chr(rng.choice((rng.randrange(1, 0xD800), rng.randrange(0xE000, 0x10FFFF))))
        for _ in range(n)
    )


def _random_scalar(field: FieldDescriptor, rng: random.Random) -> Any:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return _random_string(rng)
    if t == FieldDescriptor.TYPE_BYTES:
        n = rng.choice((0, 1, 5, 6, 7, 12, 60, 66, 300, 3000))
        if rng.random() < 0.5:
            return bytes(rng.randrange(0, 5) for _ in range(n))  # mostly-valid NB201 genes
        return rng.randbytes(n)
    if t == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return rng.choice(
            (
                0.0,
                -1.0,
                1e-300,
                0.5,
                1.0,
                3.7,
                1e308,
                math.inf,
                -math.inf,
                math.nan,
                rng.uniform(-10, 100),
            )
        )
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return rng.choice((0, 1, 2, 5, 6, 10, 22, 46, 1000, 1001, 2**31, 2**32 - 1))
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return rng.choice((0, 1, 7, 2**32, 2**63, 2**64 - 1))
    if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_ENUM):
        return rng.choice((0, 1, -1, 2**31 - 1, -(2**31)))
    if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64):
        return rng.choice((0, 1, -1, 2**63 - 1, -(2**63)))
    return None


def random_message(cls: Any, rng: random.Random, depth: int = 0) -> Any:
    """A random, well-typed instance of ``cls`` (every field set with some probability)."""
    msg = cls()
    for field in cls.DESCRIPTOR.fields:
        if rng.random() < 0.25:
            continue
        repeated = field.is_repeated
        count = rng.choice((0, 1, 1, 2, 3, 10, 65, 200)) if repeated else 1
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth > 3:
                continue
            sub_cls = field.message_type._concrete_class
            if repeated:
                for _ in range(count):
                    getattr(msg, field.name).add().CopyFrom(random_message(sub_cls, rng, depth + 1))
            else:
                getattr(msg, field.name).CopyFrom(random_message(sub_cls, rng, depth + 1))
            continue
        if repeated:
            getattr(msg, field.name).extend(_random_scalar(field, rng) for _ in range(count))
        else:
            setattr(msg, field.name, _random_scalar(field, rng))
    return msg


def _genes(rng: random.Random, n: int) -> Any:
    return pb.Architectures(
        packed=pb.PackedGenes(num_genes=6, genes=bytes(rng.randrange(0, 5) for _ in range(6 * n)))
    )


def template(method: str, rng: random.Random) -> Any:
    """A valid request of ``method`` (so that perturbing one field reaches deep code)."""
    dev = rng.choice(("pixel3", "nasbench201/raspi4", "samsung_a50", f"fz-{rng.randrange(50)}"))
    n = rng.choice((1, 10, 12, 100))
    lat = [rng.uniform(0.5, 50.0) for _ in range(n)]
    name = f"fz-{rng.randrange(50)}"
    return {
        "ListSearchSpaces": lambda: pb.ListSearchSpacesRequest(),
        "ListDevices": lambda: pb.ListDevicesRequest(space="nasbench201"),
        "GetDevice": lambda: pb.GetDeviceRequest(name=dev, space="nasbench201"),
        "Rank": lambda: pb.RankRequest(
            space="nasbench201",
            archs=_genes(rng, n),
            devices=[dev, "pixel3"],
            top_k=rng.choice((0, 3)),
            return_uncertainty=rng.random() < 0.5,
        ),
        "SuggestReferences": lambda: pb.SuggestReferencesRequest(space="nasbench201", n=10),
        "RegisterDevice": lambda: pb.RegisterDeviceRequest(
            name=name, space="nasbench201", archs=_genes(rng, n), latency_ms=lat
        ),
        "AddMeasurements": lambda: pb.AddMeasurementsRequest(
            name=name, space="nasbench201", archs=_genes(rng, n), latency_ms=lat
        ),
        "DeleteDevice": lambda: pb.DeleteDeviceRequest(name=name, space="nasbench201"),
        "CompareDevices": lambda: pb.CompareDevicesRequest(a=dev, b="pixel3", space="nasbench201"),
        "GetSearchSpace": lambda: pb.GetSearchSpaceRequest(
            name=rng.choice(("nasbench201", "fz_space", "nope"))
        ),
        # one fixed valid definition: registered once, then answered idempotently
        "RegisterSpace": lambda: pb.RegisterSpaceRequest(definition=FUZZ_SPACE),
    }[method]()


FUZZ_SPACE = (
    '{"name": "fz_space", "input": {"resolution": 32}, '
    '"stem": [{"op": "conv", "out": 8, "kernel": 3, "stride": 2}], '
    '"stages": [{"out": 8, "depth": [1, 2], "choose": {"kernel": [3, 5]}}], '
    '"head": [{"op": "pool"}, {"op": "linear", "out": 10}]}'
)


def perturb(msg: Any, rng: random.Random) -> Any:
    """Replace 0-2 top-level fields of a valid message by random values of their type."""
    fields = msg.DESCRIPTOR.fields
    if not fields:
        return msg
    donor = random_message(type(msg), rng)
    for _ in range(rng.randrange(0, 3)):
        field = rng.choice(fields)
        msg.ClearField(field.name)
        if field.is_repeated:
            getattr(msg, field.name).extend(getattr(donor, field.name))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(msg, field.name).CopyFrom(getattr(donor, field.name))
        else:
            setattr(msg, field.name, getattr(donor, field.name))
    return msg


def mutate(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(4)
        if op == 0 and data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            del data[rng.randrange(len(data)) :]
        elif op == 2:
            i = rng.randrange(len(data) + 1)
            data[i:i] = rng.randbytes(rng.randrange(1, 12))
        else:
            i = rng.randrange(len(data) + 1)
            data[i:i] = rng.choice(ODD_BYTES)
    return bytes(data)


def random_payload(method: str, rng: random.Random) -> tuple[str, bytes]:
    """(kind, request bytes) for one case."""
    cls = METHODS[method]
    r = rng.random()
    if r < 0.35:
        return "near-valid", perturb(template(method, rng), rng).SerializeToString()
    if r < 0.6:
        return "message", random_message(cls, rng).SerializeToString()
    if r < 0.85:
        base = template(method, rng) if rng.random() < 0.5 else random_message(cls, rng)
        return "mutated", mutate(base.SerializeToString(), rng)
    return "raw", rng.randbytes(rng.choice((0, 1, 2, 5, 16, 100, 1000)))


def health_status(channel: grpc.Channel, timeout_s: float = 10.0) -> str:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel)
    resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def call_raw(
    channel: grpc.Channel,
    method: str,
    payload: bytes,
    timeout_s: float = 20.0,
    metadata: tuple[tuple[str, str], ...] = (),
) -> tuple[grpc.StatusCode, str]:
    """Send raw request bytes to a method; (status code, details). Responses are not parsed."""
    call = channel.unary_unary(f"/{SERVICE.full_name}/{method}")
    try:
        call(payload, timeout=timeout_s, metadata=metadata or None)
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


def run_cases(
    target: str,
    cases: int,
    seed: int = 0,
    max_seconds: float = 1800.0,
    metadata: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    """Run ``cases`` fuzz cases against ``target``; returns the summary (see module doc)."""
    rng = random.Random(seed)
    methods = sorted(METHODS)
    codes: dict[str, Counter] = defaultdict(Counter)
    kinds: Counter = Counter()
    failures: list[dict[str, Any]] = []
    t0 = time.monotonic()
    done = 0
    with grpc.insecure_channel(target, options=[("grpc.enable_retries", 0)]) as channel:
        for i in range(cases):
            if time.monotonic() - t0 > max_seconds:
                break
            method = methods[i % len(methods)]
            kind, payload = random_payload(method, rng)
            kinds[kind] += 1
            code, details = call_raw(channel, method, payload, metadata=metadata)
            codes[method][code.name] += 1
            done += 1
            if code in FORBIDDEN or code in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            ):
                failures.append(
                    {
                        "case": i,
                        "method": method,
                        "kind": kind,
                        "code": code.name,
                        "details": details[:300],
                        "payload_hex": payload[:200].hex(),
                    }
                )
        try:
            health = health_status(channel)
        except grpc.RpcError as err:
            health = f"error: {err.code().name}"
    return {
        "cases": done,
        "seconds": round(time.monotonic() - t0, 2),
        "seed": seed,
        "kinds": dict(kinds),
        "codes_by_method": {m: dict(c) for m, c in sorted(codes.items())},
        "failures": failures,
        "health_after": health,
    }


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=1800.0)
    ap.add_argument("--target", default="", help="host:port (default: start a server)")
    args = ap.parse_args(argv)

    srv = None
    target = args.target
    tmp = tempfile.TemporaryDirectory(prefix="oracle-fuzz-")
    if not target:
        from benchmarks.common import nb201_serve_args
        from tests.support.launch import ServerProcess

        srv = ServerProcess(
            [*nb201_serve_args(), "--data-dir", tmp.name, "--grace-s", "5"], cwd=ROOT
        ).wait_serving()
        target = f"127.0.0.1:{srv.port}"
    try:
        summary = run_cases(target, args.cases, args.seed, args.max_seconds)
        if srv is not None:
            summary["server_alive"] = srv.proc.poll() is None
            summary["server_exit_code_on_sigterm"] = srv.terminate(60)
            summary["server_log_internal_errors"] = sum(
                '"level": "ERROR"' in line for line in srv.lines
            )
    finally:
        if srv is not None:
            srv.kill()
        tmp.cleanup()
    summary["crashes"] = int(not summary.get("server_alive", True)) + int(
        summary["health_after"] != "SERVING"
    )
    summary["ok"] = (
        not summary["failures"]
        and summary["crashes"] == 0
        and summary.get("server_exit_code_on_sigterm", 0) == 0
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "codes_by_method"}, indent=2))
    for method, codes in summary["codes_by_method"].items():
        print(f"{method:20s} " + ", ".join(f"{k}={v}" for k, v in sorted(codes.items())))
    return finish(args.json, summary, ok=summary["ok"])


if __name__ == "__main__":
    sys.exit(main())
