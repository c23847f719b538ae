"""Fuzzing every LatencyOracle method: random field values (hypothesis, built from the proto
descriptors) and raw bytes through a generic channel call. Never UNKNOWN, never INTERNAL, no
crash, and the server still answers its health check. ``benchmarks/fuzz.py`` runs the same
contract at 10,000 cases; here it runs 200 (plus the hypothesis examples)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import fuzz
from oracle_server.app import App
from tests.e2e.conftest import make_settings

METHODS = sorted(fuzz.METHODS)
FORBIDDEN = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
HYPOTHESIS = settings(
    max_examples=25, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def fuzz_server(nb201_model, tmp_path_factory) -> Iterator[App]:
    """Its own server (own registry), so random registrations don't leak into other tests."""
    app = App(make_settings(tmp_path_factory.mktemp("fuzz"), max_batch=50_000),
              models={"nasbench201": nb201_model}).start(block_until_ready=True, timeout_s=60)
    yield app
    app.stop(1.0)


@pytest.fixture(scope="module")
def channel(fuzz_server: App) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{fuzz_server.port}",
                               options=[("grpc.enable_retries", 0)]) as ch:
        yield ch


_TEXT = st.one_of(
    st.sampled_from(fuzz.STRINGS),
    st.text(max_size=80),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-/", max_size=70),
)


def _scalar(field: FieldDescriptor) -> st.SearchStrategy:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return _TEXT
    if t == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=400),
                         st.lists(st.integers(0, 6), max_size=120).map(bytes))
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                         st.sampled_from([0.0, -1.0, math.nan, math.inf, 1e308, 0.5]))
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 50))
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64):
        return st.integers(-(2**63), 2**63 - 1)
    return st.integers(-(2**31), 2**31 - 1)


def message_strategy(desc, depth: int = 0) -> st.SearchStrategy:
    """Random instances of the message type ``desc`` (every field optional, any value)."""
    parts: dict[str, st.SearchStrategy] = {}
    for field in desc.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth > 3:
                continue
            inner = message_strategy(field.message_type, depth + 1)
        else:
            inner = _scalar(field)
        parts[field.name] = (st.lists(inner, max_size=12 if depth else 70)
                             if field.is_repeated else inner)
    cls = desc._concrete_class

    def build(values: dict) -> object:
        msg = cls()
        for name, value in values.items():
            field = desc.fields_by_name[name]
            if field.is_repeated:
                target = getattr(msg, name)
                for v in value:
                    if field.type == FieldDescriptor.TYPE_MESSAGE:
                        target.add().CopyFrom(v)
                    else:
                        target.append(v)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(msg, name).CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return st.fixed_dictionaries({}, optional=parts).map(build)


def _check(channel: grpc.Channel, method: str, payload: bytes) -> None:
    code, details = fuzz.call_raw(channel, method, payload, timeout_s=30)
    assert code not in FORBIDDEN, f"{method} -> {code.name}: {details} ({payload[:80]!r})"
    assert code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), details


@pytest.mark.parametrize("method", METHODS)
def test_random_messages_never_unknown_or_internal(channel, method: str) -> None:
    desc = fuzz.METHODS[method].DESCRIPTOR

    @HYPOTHESIS
    @given(msg=message_strategy(desc))
    def run(msg) -> None:
        _check(channel, method, msg.SerializeToString())

    run()
    assert fuzz.health_status(channel) == "SERVING"


@pytest.mark.parametrize("method", METHODS)
def test_raw_bytes_never_unknown_or_internal(channel, method: str) -> None:
    @HYPOTHESIS
    @given(payload=st.one_of(st.binary(max_size=600),
                             st.sampled_from([b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f",
                                              b"\x80", b"\x12\x02\xc3\x28", b"\x0a\x01\xff"])))
    def run(payload: bytes) -> None:
        _check(channel, method, payload)

    run()
    assert fuzz.health_status(channel) == "SERVING"


def test_undecodable_bytes_are_invalid_argument(channel) -> None:
    # field 1 (space, a string) holding invalid UTF-8, and a truncated varint
    for payload in (b"\x0a\x02\xc3\x28", b"\x08\xff\xff"):
        code, details = fuzz.call_raw(channel, "Rank", payload)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
        assert "not a valid message" in details


def test_unknown_method_is_unimplemented(channel) -> None:
    call = channel.unary_unary("/latency_oracle.v1.LatencyOracle/NoSuchMethod")
    with pytest.raises(grpc.RpcError) as info:
        call(b"", timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_fuzz_benchmark_200_cases(fuzz_server: App) -> None:
    summary = fuzz.run_cases(f"127.0.0.1:{fuzz_server.port}", 200, seed=1, max_seconds=60)
    assert summary["cases"] == 200
    assert summary["failures"] == []
    assert summary["health_after"] == "SERVING"
    ok = sum(c.get("OK", 0) for c in summary["codes_by_method"].values())
    assert ok > 10  # the near-valid cases reach the pipeline, not just the decoder
