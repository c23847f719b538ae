"""The one exception hierarchy and its wire form (google.rpc.Status details), without a
server: every class survives the round trip, the legacy trailers still read, foreign or
corrupt details fall back to the status code."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from client_sdk import errors as E


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, details, trailers=()):
        self._code, self._details, self._trailers = code, details, tuple(trailers)

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailers


def _over_the_wire(exc: E.OracleError, *, legacy: bool = True, status: bool = True):
    trailers = [
        (k, v) for k, v in E.trailing_metadata(exc)
        if (k == E.STATUS_DETAILS_KEY and status) or (k != E.STATUS_DETAILS_KEY and legacy)
    ]
    return E.from_rpc_error(FakeRpcError(exc.code, str(exc), trailers))


SAMPLES = [
    E.InvalidArgument("must be > 0", field="measurements[3].latency_ms"),
    E.MalformedRequest("not a message", field="request"),
    E.InvalidArchitecture("op 9 is not one of 0..4", index=7, gene=2),
    E.InvalidArchitecture("wrong gene count 5, expected 6", index=0),
    E.DeviceNotFound("unknown device 'fbnet/x'"),
    E.SpaceNotFound("unknown search space 'y'"),
    E.AlreadyExists("device 'fbnet/x' exists"),
    E.LimitExceeded("200001 architectures exceed the limit of 200000 per Rank"),
    E.Overloaded("server busy", retry_after=0.25),
    E.FailedPrecondition("no model"),
    E.Unavailable("database down"),
    E.Unauthenticated("missing token"),
    E.PermissionDenied("not the owner"),
    E.DeadlineExceeded("deadline passed"),
    E.Internal("boom"),
]


@pytest.mark.parametrize("exc", SAMPLES, ids=lambda e: type(e).__name__ + "-" + e.reason)
@pytest.mark.parametrize("legacy", [True, False])
def test_round_trip_keeps_class_code_message_and_fields(exc, legacy) -> None:
    got = _over_the_wire(exc, legacy=legacy)
    assert type(got) is type(exc)
    assert got.code == exc.code and got.reason == exc.reason
    assert str(got) == str(exc) and got.field == exc.field
    assert got.retry_after == exc.retry_after
    if isinstance(exc, E.InvalidArchitecture):
        assert (got.index, got.gene) == (exc.index, exc.gene)
    if isinstance(exc, E.InvalidArgument):  # the field violation's description
        assert got.detail == exc.detail
    assert "description" not in got.metadata


def test_status_details_are_standard_messages() -> None:
    exc = E.InvalidArchitecture("op 9 is not one of 0..4", index=7, gene=2)
    status = E.to_status_proto(exc)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert status.message == "archs[7], gene 2: op 9 is not one of 0..4"
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert status.details[0].Unpack(info) and status.details[1].Unpack(bad)
    assert (info.reason, info.domain) == ("INVALID_ARCHITECTURE", E.DOMAIN)
    assert dict(info.metadata) == {"field": "archs[7]", "index": "7", "gene": "2"}
    (violation,) = bad.field_violations
    assert violation.field == "archs[7].genes[2]"
    assert violation.description == "op 9 is not one of 0..4"
    retry = error_details_pb2.RetryInfo()
    assert E.to_status_proto(E.Overloaded("busy", retry_after=1.5)).details[1].Unpack(retry)
    assert retry.retry_delay.ToNanoseconds() == 1_500_000_000


def test_legacy_only_trailers_and_bare_codes_still_map() -> None:
    exc = E.InvalidArchitecture("bad", index=3, gene=1)
    got = _over_the_wire(exc, status=False)
    assert isinstance(got, E.InvalidArchitecture) and (got.index, got.gene) == (3, 1)
    bare = E.from_rpc_error(FakeRpcError(grpc.StatusCode.NOT_FOUND, "unknown device 'a/b'"))
    assert isinstance(bare, E.DeviceNotFound)
    other = E.from_rpc_error(FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy"))
    assert type(other) is E.ResourceExhausted and other.retry_after is None


def test_foreign_or_corrupt_details_fall_back_to_the_code() -> None:
    foreign = status_pb2.Status(code=5, message="nope")
    item = any_pb2.Any()
    item.Pack(error_details_pb2.ErrorInfo(reason="DEVICE_NOT_FOUND", domain="someone.else"))
    foreign.details.append(item)
    for raw in (foreign.SerializeToString(), b"\xff\xff\xff"):
        got = E.from_rpc_error(
            FakeRpcError(grpc.StatusCode.NOT_FOUND, "nope", [(E.STATUS_DETAILS_KEY, raw)])
        )
        assert type(got) is E.NotFound and got.message == "nope"


def test_reason_that_disagrees_with_the_code_is_not_trusted() -> None:
    status = E.to_status_proto(E.DeviceNotFound("x"))
    got = E.from_rpc_error(
        FakeRpcError(grpc.StatusCode.INTERNAL, "x",
                     [(E.STATUS_DETAILS_KEY, status.SerializeToString())])
    )
    assert type(got) is E.Internal and got.code == grpc.StatusCode.INTERNAL


def test_reasons_are_unique_and_upper_snake() -> None:
    classes = [E.OracleError, *E._subclasses(E.OracleError)]
    reasons = [c.reason for c in classes if c is not E.OracleError]
    assert len(reasons) == len(set(reasons))
    assert all(r.isupper() and " " not in r for r in reasons)
    assert E.OracleClientError is E.OracleError
