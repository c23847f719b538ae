"""Interceptor helpers without a server: request parsing, identifier checks, bounded and
ASCII-safe error details."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from client_sdk.errors import (
    MAX_MESSAGE_CHARS,
    InvalidArchitecture,
    InvalidArgument,
    bounded,
    trailing_metadata,
)
from client_sdk.proto.latency_oracle.v1 import oracle_pb2 as pb
from oracle_server import interceptors as ic


def test_parser_turns_undecodable_bytes_into_invalid_argument() -> None:
    parse = ic._parser(pb.RankRequest.FromString)
    msg = pb.RankRequest(space="nasbench201", devices=["pixel3"])
    assert parse(msg.SerializeToString()) == msg
    for raw in (b"\x0a\x02\xc3\x28", b"\x08\xff\xff", b"\xff" * 8):
        with pytest.raises(ic.MalformedRequest) as info:
            parse(raw)
        assert isinstance(info.value, InvalidArgument) and info.value.field == "request"
    assert ic._parser(None)(b"raw") == b"raw"


def test_unary_request_read_from_its_stream() -> None:
    """Unary oracle RPCs are served as request-streaming (admission before the body is read):
    the one message is read from the stream; none is INVALID_ARGUMENT, and a client gone
    while its request was being received ends the call without an INTERNAL error."""
    read = ic._first_message(ic._parser(pb.RankRequest.FromString))
    msg = pb.RankRequest(space="nasbench201", devices=["pixel3"])
    assert read(iter([msg.SerializeToString()])) == msg
    with pytest.raises(ic.MalformedRequest, match="exactly one request message") as info:
        read(iter([]))
    assert info.value.field == "request"
    with pytest.raises(ic.MalformedRequest):
        read(iter([b"\xff" * 8]))

    class Gone:
        def __next__(self) -> bytes:
            raise grpc.RpcError()

    with pytest.raises(ic.DeadlineExceeded):
        read(Gone())


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        (pb.RankRequest(space="nasbench201", devices=["pixel3", "nasbench201/x_1.b-2"]), None),
        (pb.ListDevicesRequest(space=""), None),
        (pb.GetDeviceRequest(name="nasbench201/pixel3"), None),
        (pb.RankRequest(space="nas bench", devices=["pixel3"]), "space"),
        (pb.RankRequest(space="nasbench201", devices=["pixel3", ""]), "devices[1]"),
        (pb.RankRequest(space="nasbench201", devices=["a/b/c"]), "devices[0]"),
        (pb.GetDeviceRequest(name="x" * 65, space="nasbench201"), "name"),
        (pb.GetDeviceRequest(name="_x", space="nasbench201"), "name"),
        (pb.CompareDevicesRequest(a="pixel3", b="\u00e9"), "b"),
        (pb.SuggestReferencesRequest(space="s" * 65), "space"),
    ],
)
def test_check_identifiers(msg, field: str | None) -> None:
    if field is None:
        ic.check_identifiers(msg)
        return
    with pytest.raises(InvalidArgument) as info:
        ic.check_identifiers(msg)
    assert info.value.field == field
    assert info.value.message.isascii() and len(info.value.message) < 200


def test_details_and_metadata_are_bounded_and_ascii() -> None:
    assert len(bounded("x" * 10_000)) == MAX_MESSAGE_CHARS == 1024
    assert bounded("short") == "short"
    exc = InvalidArchitecture("bad", index=3, gene=1, field="archs\u00e9\n" + "y" * 1000)
    trailers = trailing_metadata(exc)
    text = {k: v for k, v in trailers if isinstance(v, str)}
    assert text["oracle-error"] == "InvalidArchitecture"
    assert (text["oracle-index"], text["oracle-gene"]) == ("3", "1")
    assert all(" " <= ch <= "~" for value in text.values() for ch in value)
    assert len(text["oracle-field"]) <= 256
    (raw,) = [v for k, v in trailers if k == "grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    assert status.code == 3 and len(status.message) <= 1024
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "INVALID_ARCHITECTURE"
    assert all(len(v) <= 256 and v.isascii() for v in info.metadata.values())


# ---------------------------------------------------------------- drain
def test_drain_refuses_new_calls_once_draining() -> None:
    from client_sdk.errors import Unavailable

    drain = ic.Drain()
    drain.enter()
    drain.begin()
    with pytest.raises(Unavailable, match="shutting down"):
        drain.enter()
    assert drain.in_flight == 1  # the refused call was not counted
    drain.exit()
    assert drain.in_flight == 0


def test_drain_waits_for_in_flight_calls_then_lingers() -> None:
    import threading
    import time

    drain = ic.Drain()
    drain.enter()
    drain.begin()
    assert not drain.wait_idle(0.05, 0.0)  # still in flight when the time is up
    timer = threading.Timer(0.1, drain.exit)
    timer.start()
    t0 = time.monotonic()
    assert drain.wait_idle(5.0, 0.2)
    waited = time.monotonic() - t0
    # returned only after the call ended (0.1 s) and the linger after it (0.2 s)
    assert waited >= 0.29, waited
    timer.join()


def test_drain_without_calls_does_not_linger() -> None:
    import time

    drain = ic.Drain()
    drain.begin()
    t0 = time.monotonic()
    assert drain.wait_idle(10.0, 5.0)
    assert time.monotonic() - t0 < 1.0


def test_drain_linger_is_cut_at_the_deadline() -> None:
    import time

    drain = ic.Drain()
    drain.enter()
    drain.exit()
    drain.begin()
    t0 = time.monotonic()
    assert drain.wait_idle(0.1, 30.0)  # idle; the linger ends with the grace period
    assert time.monotonic() - t0 < 2.0


# ---------------------------------------------------------------- request read watchdog
class _FakeContext:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def test_read_watchdog_cancels_only_reads_past_the_timeout() -> None:
    now = [100.0]
    dog = ic.ReadWatchdog(5.0, clock=lambda: now[0])
    dog._thread = object()  # no background thread: sweep by hand  # type: ignore[assignment]
    slow, quick, late = _FakeContext(), _FakeContext(), _FakeContext()
    k_slow = dog.start(slow)
    now[0] += 3.0
    k_quick = dog.start(quick)
    k_late = dog.start(late)
    assert dog.done(k_quick)  # finished in time
    now[0] += 2.5  # slow: 5.5 s, late: 2.5 s
    assert dog.sweep() == 1
    assert slow.cancelled and not quick.cancelled and not late.cancelled
    assert not dog.done(k_slow)  # it was cancelled
    assert dog.done(k_late)
    assert dog.sweep() == 0 and dog.cancelled == 1


def test_read_watchdog_off_at_zero() -> None:
    dog = ic.ReadWatchdog(0.0)
    assert dog.start(_FakeContext()) is None and dog.done(None)
    assert dog._thread is None


def test_read_watchdog_turns_an_interrupted_read_into_deadline_exceeded() -> None:
    from client_sdk.errors import DeadlineExceeded, MalformedRequest

    now = [0.0]
    dog = ic.ReadWatchdog(1.0, clock=lambda: now[0])
    dog._thread = object()  # sweep by hand  # type: ignore[assignment]
    ctx = _FakeContext()
    with pytest.raises(DeadlineExceeded, match="did not arrive within 1 s"), dog.watch(ctx):
        now[0] = 2.0
        assert dog.sweep() == 1 and ctx.cancelled
        raise MalformedRequest("expected exactly one request message", field="request")
    # a read that fails in time keeps its own error
    with pytest.raises(MalformedRequest), dog.watch(_FakeContext()):
        raise MalformedRequest("expected exactly one request message", field="request")
    assert not dog._reads
