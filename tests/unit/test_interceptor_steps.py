"""The interceptor's steps, each on its own (no server): a fake context, a ``Call``, and a
``proceed`` that records what reached it."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import grpc
import pytest

from client_sdk.errors import (
    DeadlineExceeded,
    InvalidArgument,
    MalformedRequest,
    Overloaded,
    Unauthenticated,
    Unavailable,
)
from client_sdk.proto.latency_oracle.v1 import oracle_pb2 as pb
from oracle_server import interceptors as ic
from oracle_server import metrics
from oracle_server.tenants import Authenticator, Caller, FairShare, current_caller

TOKEN = "tok-steps-3c4d5e"


class Aborted(Exception):
    """What grpc's ``context.abort`` raises."""


class FakeContext:
    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.metadata = metadata
        self.status: grpc.StatusCode | None = None
        self.details = ""
        self.trailers: Any = ()
        self.cancelled = False

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def code(self) -> grpc.StatusCode | None:
        return self.status

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.status, self.details = code, details
        raise Aborted(details)

    def set_trailing_metadata(self, trailers: Any) -> None:
        self.trailers = trailers

    def cancel(self) -> None:
        self.cancelled = True


def _call(
    method: str = "Rank", raw: Any = None, context: FakeContext | None = None, parse=lambda raw: raw
) -> ic.Call:
    labels = ("unary", ic.ORACLE_SERVICE, f"{method}-{uuid.uuid4().hex[:8]}")  # fresh series
    return ic.Call(
        method, labels, lambda req, ctx: ("reply", req), parse, raw, context or FakeContext()
    )  # type: ignore[arg-type]


def _value(metric, *labels: str) -> float:
    return metric.labels(*labels)._value.get()


def _reached(seen: list) -> ic.Proceed:
    def proceed(call: ic.Call) -> str:
        seen.append(call)
        return "done"

    return proceed


# ------------------------------------------------------------------------ chain
def test_compose_runs_the_steps_outermost_first_then_the_handler() -> None:
    order: list[str] = []

    def step(name: str) -> ic.Step:
        def run(call: ic.Call, proceed: ic.Proceed) -> Any:
            order.append(f"{name}>")
            try:
                return proceed(call)
            finally:
                order.append(f"<{name}")

        return run

    call = _call(raw="req")
    call.request = "req"
    assert ic.compose([step("a"), step("b")])(call) == ("reply", "req")
    assert order == ["a>", "b>", "<b", "<a"]
    assert ic.compose([])(call) == ("reply", "req")  # just the handler (``invoke``)


def test_the_oracle_chain_order() -> None:
    chain = ic.OracleInterceptor()
    kinds = [type(s).__name__ for s in chain.oracle_steps]
    assert kinds == [
        "RpcMetrics",
        "ErrorTranslation",
        "Drain",
        "Audit",
        "Authentication",
        "Admission",
        "ReadWatchdog",
        "IdentifierCheck",
    ]
    assert chain.oracle_steps[2] is chain.drain and chain.oracle_steps[6] is chain.reads
    assert [type(s).__name__ for s in chain.other_steps] == [
        "RpcMetrics",
        "ErrorTranslation",
        "ParseRequest",
    ]


# ---------------------------------------------------------------------- metrics
def test_rpc_metrics_counts_a_call_its_reply_and_its_final_code() -> None:
    step = ic.RpcMetrics()
    ok = _call()
    assert step(ok, lambda call: "reply") == "reply"
    assert _value(metrics.GRPC_STARTED, *ok.labels) == 1
    assert _value(metrics.GRPC_MSG_RECEIVED, *ok.labels) == 1
    assert _value(metrics.GRPC_MSG_SENT, *ok.labels) == 1
    assert _value(metrics.GRPC_HANDLED, *ok.labels, "OK") == 1

    refused = _call()

    def aborted(call: ic.Call) -> None:
        call.context.abort(grpc.StatusCode.UNAUTHENTICATED, "no")

    with pytest.raises(Aborted):
        step(refused, aborted)
    assert _value(metrics.GRPC_MSG_SENT, *refused.labels) == 0
    assert _value(metrics.GRPC_HANDLED, *refused.labels, "UNAUTHENTICATED") == 1

    crashed = _call()  # raised without a status: INTERNAL
    with pytest.raises(KeyError):
        step(crashed, lambda call: {}["x"])
    assert _value(metrics.GRPC_HANDLED, *crashed.labels, "INTERNAL") == 1


# ------------------------------------------------------------------------ errors
def test_error_translation_gives_the_status_and_its_details() -> None:
    step = ic.ErrorTranslation()
    call = _call()
    assert step(call, lambda c: "reply") == "reply"

    def refuse(c: ic.Call) -> None:
        raise Overloaded("busy", retry_after=1.5)

    with pytest.raises(Aborted):
        step(call, refuse)
    assert call.context.status is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(call.context.trailers)["oracle-error"] == "Overloaded"


def test_error_translation_hides_unexpected_errors(caplog) -> None:
    step = ic.ErrorTranslation()
    call = _call()
    with (
        caplog.at_level(logging.ERROR, logger="oracle_server.interceptors"),
        pytest.raises(Aborted),
    ):
        step(call, lambda c: 1 / 0)
    assert call.context.status is grpc.StatusCode.INTERNAL
    assert call.context.details == "internal error (logged on the server)"
    assert [r.name for r in caplog.records] == ["oracle_server.interceptors"]


def test_error_translation_passes_on_a_handlers_own_abort() -> None:
    step = ic.ErrorTranslation()
    call = _call()

    def aborts(c: ic.Call) -> None:
        c.context.abort(grpc.StatusCode.NOT_FOUND, "gone")

    with pytest.raises(Aborted, match="gone"):
        step(call, aborts)
    assert call.context.status is grpc.StatusCode.NOT_FOUND


# ------------------------------------------------------------------------ drain
def test_drain_step_counts_the_call_in_flight_and_refuses_once_draining() -> None:
    drain = ic.Drain()
    seen: list[int] = []
    assert drain(_call(), lambda c: seen.append(drain.in_flight) or "ok") == "ok"
    assert seen == [1] and drain.in_flight == 0

    def fails(call: ic.Call) -> None:
        raise RuntimeError

    with pytest.raises(RuntimeError):
        drain(_call(), fails)
    assert drain.in_flight == 0  # counted out when it fails too
    drain.begin()
    with pytest.raises(Unavailable, match="shutting down"):
        drain(_call(), _reached(seen))
    assert seen == [1]


# -------------------------------------------------------------------- watchdog
def test_read_watchdog_step_reads_the_request_under_the_watch() -> None:
    now = [0.0]
    dog = ic.ReadWatchdog(1.0, clock=lambda: now[0])
    dog._thread = object()  # no background thread  # type: ignore[assignment]
    seen: list[ic.Call] = []
    call = _call(raw=b"body", parse=lambda raw: raw.decode())
    assert dog(call, _reached(seen)) == "done"
    assert seen[0].message == "body" and call.request is None  # read, not yet checked
    assert not dog._reads

    def slow_read(raw: Any) -> Any:
        now[0] = 2.0
        assert dog.sweep() == 1  # the watchdog cancels the call; its read then fails
        raise MalformedRequest("expected exactly one request message", field="request")

    late = _call(parse=slow_read)
    with pytest.raises(DeadlineExceeded, match="did not arrive within 1 s"):
        dog(late, _reached(seen))
    assert late.context.cancelled and len(seen) == 1


# ------------------------------------------------------------------- requests
def test_identifier_check_passes_on_a_checked_request_only() -> None:
    step = ic.IdentifierCheck()
    seen: list[ic.Call] = []
    good = _call()
    good.message = pb.RankRequest(space="nasbench201", devices=["pixel3"])
    step(good, _reached(seen))
    assert seen == [good] and good.request is good.message
    bad = _call()
    bad.message = pb.RankRequest(space="nasbench201", devices=["bad name"])
    with pytest.raises(InvalidArgument) as info:
        step(bad, _reached(seen))
    assert info.value.field == "devices[0]" and bad.request is None and len(seen) == 1


def test_parse_request_step() -> None:
    msg = pb.ListDevicesRequest(space="nasbench201")
    call = _call(raw=msg.SerializeToString(), parse=ic._parser(pb.ListDevicesRequest.FromString))
    seen: list[ic.Call] = []
    ic.ParseRequest()(call, _reached(seen))
    assert seen[0].request == msg
    with pytest.raises(MalformedRequest):
        ic.ParseRequest()(_call(raw=b"\xff" * 8, parse=call.parse), _reached(seen))


# ------------------------------------------------------------------- tenancy
def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def test_authentication_identifies_the_caller_and_requires_a_token_for_writes() -> None:
    step = ic.Authentication(Authenticator(write_token=TOKEN))
    seen: list[Caller] = []

    def proceed(call: ic.Call) -> str:
        seen.append(current_caller())
        return "ok"

    assert step(_call("RegisterDevice", context=FakeContext(_bearer(TOKEN))), proceed) == "ok"
    assert seen[-1] == Caller("admin", admin=True, authenticated=True)
    assert current_caller().tenant == "anonymous"  # handed to the handler only
    read = _call("Rank")
    step(read, proceed)  # a read needs no token
    assert read.caller == seen[-1] == Caller()
    anonymous_write = _call("DeleteDevice")
    with pytest.raises(Unauthenticated, match="needs 'authorization"):
        step(anonymous_write, proceed)
    assert anonymous_write.caller == Caller()  # known (for the audit line) though refused
    unknown = _call("Rank", context=FakeContext(_bearer("nope")))
    with pytest.raises(Unauthenticated, match="unknown token"):
        step(unknown, proceed)
    assert unknown.caller is None and len(seen) == 2
    strict = ic.Authentication(Authenticator(write_token=TOKEN), read_token_required=True)
    with pytest.raises(Unauthenticated):
        strict(_call("Rank"), proceed)
    open_server = ic.Authentication(Authenticator())
    assert open_server(_call("DeleteDevice"), proceed) == "ok"  # no token configured


def test_admission_applies_the_tenants_fair_share_and_times_admitted_calls() -> None:
    fair = FairShare(max_concurrent_rpcs=1)
    step = ic.Admission(fair)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    call = _call("Rank")
    call.caller = Caller(tenant, authenticated=True)
    inner: list[Any] = []

    def proceed(c: ic.Call) -> str:
        inner.append(fair.in_flight(tenant))
        with pytest.raises(Overloaded, match="limit of 1 concurrent"):
            step(c, _reached(inner))  # a second call of the tenant meanwhile
        return "ok"

    assert step(call, proceed) == "ok"
    assert inner == [1] and fair.in_flight(tenant) == 0
    hist = metrics.TENANT_REQUEST_SECONDS.labels("Rank", tenant)
    assert sum(b.get() for b in hist._buckets) == 1  # the admitted call only
    fair.work_limit = 1.0
    fair.charge(tenant, 5)  # into debt: a work call is refused, a plain one admitted
    with pytest.raises(Overloaded, match="work limit"):
        step(call, _reached(inner))
    plain = _call("ListDevices")
    plain.caller = call.caller
    assert step(plain, _reached(inner)) == "done"


def test_admission_without_a_known_caller_is_the_anonymous_tenant() -> None:
    fair = FairShare()
    seen: list[int] = []
    ic.Admission(fair)(_call(), lambda c: seen.append(fair.in_flight("anonymous")))
    assert seen == [1]


def test_audit_writes_one_line_per_write_with_its_final_code(caplog) -> None:
    step = ic.Audit()
    caplog.set_level(logging.INFO, logger="oracle_server.audit")
    ok = _call("RegisterDevice")
    ok.caller = Caller("team-a", authenticated=True)

    def handled(c: ic.Call) -> str:
        c.request = pb.RegisterDeviceRequest(space="nasbench201", name="cam-1")
        return "ok"

    assert step(ok, handled) == "ok"
    refused = _call("DeleteDevice")  # identify failed: no caller, request never read

    def unauthenticated(c: ic.Call) -> None:
        raise Unauthenticated("unknown token")

    with pytest.raises(Unauthenticated):
        step(refused, unauthenticated)
    step(_call("Rank"), _reached([]))  # not a write: no line
    assert [r.getMessage() for r in caplog.records] == [
        "audit tenant=team-a rpc=RegisterDevice device=nasbench201/cam-1 code=OK",
        "audit tenant=- rpc=DeleteDevice device=- code=UNAUTHENTICATED",
    ]
    assert caplog.records[0].tenant == "team-a" and caplog.records[0].audit is True


# ------------------------------------------------------------------ together
def test_an_unauthenticated_write_is_counted_translated_and_audited(caplog) -> None:
    """The whole oracle chain on a fake call: refused before its body is read."""
    interceptor = ic.OracleInterceptor(write_token=TOKEN)
    caplog.set_level(logging.INFO, logger="oracle_server.audit")
    bodies: list[Any] = []

    def body() -> Any:
        bodies.append(1)
        yield pb.DeleteDeviceRequest(space="nasbench201", name="cam-1").SerializeToString()

    registered = grpc.unary_unary_rpc_method_handler(
        lambda req, ctx: pb.DeleteDeviceResponse(),
        request_deserializer=pb.DeleteDeviceRequest.FromString,
    )

    class Details:
        method = f"/{ic.ORACLE_SERVICE}/DeleteDevice"

    wrapped = interceptor.intercept_service(lambda d: registered, Details())  # type: ignore[arg-type]
    assert wrapped.unary_unary is None and wrapped.stream_unary is not None
    labels = ("unary", ic.ORACLE_SERVICE, "DeleteDevice")
    before = _value(metrics.GRPC_HANDLED, *labels, "UNAUTHENTICATED")
    context = FakeContext()
    with pytest.raises(Aborted):
        wrapped.stream_unary(body(), context)
    assert context.status is grpc.StatusCode.UNAUTHENTICATED and not bodies
    assert _value(metrics.GRPC_HANDLED, *labels, "UNAUTHENTICATED") == before + 1
    assert caplog.records[-1].getMessage() == (
        "audit tenant=anonymous rpc=DeleteDevice device=- code=UNAUTHENTICATED"
    )
    assert interceptor.drain.in_flight == 0

    context = FakeContext(_bearer(TOKEN))  # now with the token: served
    assert wrapped.stream_unary(body(), context) == pb.DeleteDeviceResponse()
    assert bodies == [1] and caplog.records[-1].getMessage() == (
        "audit tenant=admin rpc=DeleteDevice device=nasbench201/cam-1 code=OK"
    )
    assert TOKEN not in caplog.text
