"""Server interceptor: per-RPC metrics, auth for write RPCs, error translation.

One interceptor wraps every known method's handler (unknown methods pass through untouched,
so they add no metric series):
- ``grpc_server_started_total`` / ``handled_total{grpc_code}`` / ``handling_seconds``;
- the caller's tenant from its bearer token (``oracle_server.tenants``: hashed tokens,
  constant-time comparison), required for write RPCs, or for all oracle RPCs when
  configured; the caller is handed to the servicer through a context variable;
- the tenant's fair share (concurrency, rate, work) before the request body is even
  received (unary oracle RPCs are served as request-streaming, so the handler runs on the
  call's headers): ``RESOURCE_EXHAUSTED`` with ``RetryInfo``; an admitted call's admission +
  handling time in ``oracle_tenant_request_seconds{method, tenant}``;
- one audit log line per write RPC (tenant, RPC, device, final status code);
- request bytes are parsed *inside* the wrapper (handlers are registered with an identity
  deserializer), so undecodable bytes are ``INVALID_ARGUMENT`` (grpc's own deserializer
  would answer ``INTERNAL``) and are counted like any other failed call;
- identifiers (``space``, ``name``, ``a``, ``b``, ``devices[i]``) are checked for length and
  charset before any work: ``INVALID_ARGUMENT`` naming the field;
- ``OracleError`` -> its status code and a standard ``google.rpc.Status`` (ErrorInfo reason,
  BadRequest field violation, RetryInfo) in the trailers, see ``client_sdk.errors``; anything
  else -> ``INTERNAL`` with a generic message (logged with its traceback, never sent to the
  client). Status details and error metadata are bounded in size and ASCII-safe.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc

from client_sdk.errors import (
    DEVICE_RE,
    NAME_RE,
    DeadlineExceeded,
    InvalidArgument,
    MalformedRequest,
    OracleError,
    Unauthenticated,
    Unavailable,
    bounded,
    trailing_metadata,
)
from oracle_server import metrics
from oracle_server.tenants import Authenticator, Caller, Tenancy, audit, reset_caller, set_caller

log = logging.getLogger(__name__)

ORACLE_SERVICE = "latency_oracle.v1.LatencyOracle"
WRITE_METHODS = frozenset({"RegisterDevice", "AddMeasurements", "DeleteDevice",
                           "RegisterSpace"})
#: RPCs charged work (architectures x devices) and so admitted under the work limit.
WORK_METHODS = frozenset({"Rank"})
SPACE_RE = NAME_RE
_IDENTIFIER_FIELDS = (("space", SPACE_RE), ("name", DEVICE_RE), ("a", DEVICE_RE), ("b", DEVICE_RE))
_SHOWN_CHARS = 40


def _shown(value: str) -> str:
    text = value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "..."
    return ascii(text)


def check_identifiers(request: Any) -> None:
    """Reject over-long or odd-charset space/device names before any work is done."""
    fields = getattr(getattr(request, "DESCRIPTOR", None), "fields_by_name", {})
    for name, pattern in _IDENTIFIER_FIELDS:
        if name in fields:
            value = getattr(request, name)
            if value and not pattern.match(value):
                raise InvalidArgument(
                    f"{_shown(value)} is not a valid name (1-64 of A-Z a-z 0-9 . _ -"
                    f"{', optionally <space>/<name>' if pattern is DEVICE_RE else ''})",
                    field=name,
                )
    if "devices" in fields:
        for i, value in enumerate(request.devices):
            if not DEVICE_RE.match(value):
                raise InvalidArgument(
                    f"{_shown(value)} is not a valid device name (1-64 of A-Z a-z 0-9 . _ -, "
                    "optionally <space>/<name>)",
                    field=f"devices[{i}]",
                )


def _parser(deserializer: Callable[[bytes], Any] | None) -> Callable[[Any], Any]:
    if deserializer is None:
        return lambda raw: raw

    def parse(raw: Any) -> Any:
        if not isinstance(raw, bytes | bytearray | memoryview):
            return raw
        try:
            return deserializer(bytes(raw))
        except Exception as exc:  # DecodeError, invalid UTF-8 in a string field, ...
            raise MalformedRequest(
                f"request bytes are not a valid message ({type(exc).__name__})", field="request"
            ) from None

    return parse


def _first_message(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The parser of a unary request served as request-streaming: reads its one message."""

    def read(requests: Iterator[Any]) -> Any:
        try:
            raw = next(requests)
        except StopIteration:
            raise MalformedRequest(
                "expected exactly one request message", field="request"
            ) from None
        except grpc.RpcError:  # the client went away while its request was being received
            raise DeadlineExceeded("the call ended while its request was being received") from None
        return parse(raw)

    return read


def _parse_stream(parse: Callable[[Any], Any], requests: Iterable[Any]) -> Iterator[Any]:
    for raw in requests:
        yield parse(raw)


def _split(full_method: str) -> tuple[str, str]:
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


def _abort_for(context: grpc.ServicerContext, exc: Exception) -> None:
    if isinstance(exc, OracleError):
        if exc.code is grpc.StatusCode.INTERNAL:
            log.error("internal error", exc_info=exc)
        context.set_trailing_metadata(trailing_metadata(exc))
        context.abort(exc.code, bounded(str(exc)))
    log.error("unexpected error", exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, "internal error (logged on the server)")


class Drain:
    """Counts the oracle RPCs in flight and, once draining, refuses new ones.

    grpc's own ``server.stop(grace)`` destroys the server the moment its last call completes
    at the call level, which is when the reply has been handed to the transport, not when the
    client has read it: a large reply still held back by HTTP/2 flow control (a slow reader of
    a 40 MB Rank) is then reset with the connection. ``App.stop`` therefore drains in two
    steps: this object refuses new calls (``UNAVAILABLE``, which the SDK retries on another
    replica) and waits for the handlers in flight plus a short linger for their replies to be
    read, and only then is grpc's server stopped."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._in_flight = 0
        self._last_exit = -float("inf")
        self.draining = False

    def enter(self) -> None:
        with self._cond:
            if self.draining:
                raise Unavailable("the server is shutting down; retry on another replica")
            self._in_flight += 1

    def exit(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._last_exit = self._clock()
            self._cond.notify_all()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def begin(self) -> None:
        with self._cond:
            self.draining = True

    def wait_idle(self, timeout_s: float, linger_s: float) -> bool:
        """After ``begin``: wait (at most ``timeout_s``) until no call is in flight and the last
        one ended ``linger_s`` ago (its reply may still be on the wire). True if idle in time."""
        deadline = self._clock() + max(0.0, timeout_s)
        with self._cond:
            while True:
                now = self._clock()
                if self._in_flight == 0:
                    until = min(self._last_exit + linger_s, deadline)
                    if now >= until:
                        return True
                    self._cond.wait(until - now)
                elif now >= deadline:
                    return False
                else:
                    self._cond.wait(deadline - now)


class ReadWatchdog:
    """Cancels calls whose request message is still arriving ``timeout_s`` after the handler
    started reading it.

    A unary oracle RPC is served as request-streaming (see ``intercept_service``), so its
    handler, and a worker thread, wait while the body arrives; grpc has no server-side
    timeout for that. Without this, a few clients that open calls and never send their
    request (no deadline) would hold every worker and stall the server. One daemon thread
    checks every ``timeout_s / 4`` (at most 1 s); a read in progress costs a dict entry."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._reads: dict[int, tuple[float, grpc.ServicerContext]] = {}
        self._next = 0
        self._thread: threading.Thread | None = None
        self.cancelled = 0

    def start(self, context: grpc.ServicerContext) -> int | None:
        if self.timeout_s <= 0:
            return None
        with self._lock:
            self._next += 1
            key = self._next
            self._reads[key] = (self._clock(), context)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="oracle-read-watchdog",
                                                daemon=True)
                self._thread.start()
        return key

    @contextlib.contextmanager
    def watch(self, context: grpc.ServicerContext) -> Iterator[None]:
        """Around reading a call's request: a read the watchdog cancelled ends in
        ``DeadlineExceeded`` (whatever the interrupted read raised)."""
        key = self.start(context)
        try:
            yield
        except OracleError:
            if not self.done(key):
                raise DeadlineExceeded(
                    f"the request did not arrive within {self.timeout_s:g} s of the call's "
                    "start") from None
            raise
        self.done(key)

    def done(self, key: int | None) -> bool:
        """End a read; False if the watchdog had cancelled it."""
        if key is None:
            return True
        with self._lock:
            return self._reads.pop(key, None) is not None

    def sweep(self) -> int:
        """Cancel every read older than the timeout; returns how many were cancelled."""
        now = self._clock()
        with self._lock:
            late = [k for k, (t0, _) in self._reads.items() if now - t0 > self.timeout_s]
            contexts = [self._reads.pop(k)[1] for k in late]
        for context in contexts:
            context.cancel()  # the blocked read raises; the handler returns
        if contexts:
            self.cancelled += len(contexts)
            log.warning("request not received in time; call cancelled",
                        extra={"calls": len(contexts), "timeout_s": self.timeout_s})
        return len(contexts)

    def _loop(self) -> None:
        interval = min(1.0, self.timeout_s / 4)
        while True:
            time.sleep(interval)
            self.sweep()


class OracleInterceptor(grpc.ServerInterceptor):
    def __init__(
        self,
        write_token: str = "",
        read_token_required: bool = False,
        tenancy: Tenancy | None = None,
        drain: Drain | None = None,
        request_read_timeout_s: float = 30.0,
    ) -> None:
        self._tenancy = tenancy or Tenancy(Authenticator(write_token=write_token))
        self._read_token_required = read_token_required
        self.drain = drain or Drain()
        self.reads = ReadWatchdog(request_read_timeout_s)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None:
            return None
        service, method = _split(details.method)
        oracle = service == ORACLE_SERVICE
        # Register with an identity deserializer; the wrapper parses (see module docstring).
        parse = _parser(handler.request_deserializer)
        if handler.unary_unary is not None:
            labels = ("unary", service, method)
            behaviour = handler.unary_unary
            if not oracle:
                return grpc.unary_unary_rpc_method_handler(
                    self._wrap_unary(behaviour, labels, parse, oracle=False),
                    request_deserializer=None,
                    response_serializer=handler.response_serializer,
                )
            # A unary oracle RPC is served as request-streaming (the same on the wire): grpc
            # then runs the handler at once instead of first receiving the whole request in
            # a worker thread, so the tenant's admission check runs before the body is read
            # and a refused call never waits for (or copies) its request bytes.
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(self._tenant_unary(behaviour, method), labels,
                                 _first_message(parse), oracle=True),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            labels = ("server_stream", service, method)
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, labels, parse, streaming_request=False),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            labels = ("bidi_stream", service, method)
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_stream(handler.stream_stream, labels, parse, streaming_request=True),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _require_token(self, caller: Caller, method: str) -> None:
        needs_token = self._tenancy.auth.enabled and (
            method in WRITE_METHODS or self._read_token_required
        )
        if needs_token and not caller.authenticated:
            raise Unauthenticated("this RPC needs 'authorization: Bearer <token>' metadata")

    def _tenant_unary(self, behaviour: Callable, method: str) -> Callable:
        """Identify the caller, admit it under its fair share, run, audit writes.

        Runs before the request body is received: a refused call costs no decoding and
        holds no worker thread while its bytes arrive."""
        fair = self._tenancy.fair_share
        is_write = method in WRITE_METHODS
        is_work = method in WORK_METHODS

        def run(parse_and_check: Callable[[], Any], context: grpc.ServicerContext) -> Any:
            caller: Caller | None = None
            request = None
            code = "OK"
            try:
                caller = self._tenancy.auth.identify(context.invocation_metadata())
                self._require_token(caller, method)
                admit = time.perf_counter()
                fair.acquire(caller.tenant, work=is_work)
                start = time.perf_counter()
                token = set_caller(caller)
                try:
                    request = parse_and_check()
                    return behaviour(request, context)
                finally:
                    reset_caller(token)
                    end = time.perf_counter()
                    fair.release(caller.tenant, end - start)
                    # admission (incl. the shared limits' round trip) + handling
                    metrics.TENANT_REQUEST_SECONDS.labels(method, caller.tenant).observe(
                        end - admit)
            except Exception as exc:
                code = _code_of(context, exc)
                raise
            finally:
                if is_write:
                    audit(caller, method, _device_of(request), code)

        run.deferred_parse = True  # type: ignore[attr-defined]
        return run

    def _wrap_unary(
        self,
        behaviour: Callable,
        labels: tuple[str, str, str],
        parse: Callable[[Any], Any],
        oracle: bool,
    ) -> Callable:
        """``oracle``: an oracle RPC, served as request-streaming (its body is read here,
        under the read watchdog), counted by the drain, its identifiers checked."""
        deferred = getattr(behaviour, "deferred_parse", False)
        drain = self.drain if oracle else None  # not health checks or reflection

        def wrapper(raw: Any, context: grpc.ServicerContext) -> Any:
            metrics.GRPC_STARTED.labels(*labels).inc()
            metrics.GRPC_MSG_RECEIVED.labels(*labels).inc()
            start = time.perf_counter()
            code = "OK"
            entered = False

            def parse_and_check() -> Any:
                if not oracle:
                    return parse(raw)
                with self.reads.watch(context):
                    request = parse(raw)
                check_identifiers(request)
                return request

            try:
                if drain is not None:
                    drain.enter()
                    entered = True
                if deferred:
                    response = behaviour(parse_and_check, context)
                else:
                    response = behaviour(parse_and_check(), context)
                metrics.GRPC_MSG_SENT.labels(*labels).inc()
                return response
            except Exception as exc:
                code = "UNKNOWN"
                _translate(context, exc)
            finally:
                if entered:
                    drain.exit()  # type: ignore[union-attr]
                _record_handled(labels, context, code, start)

        return wrapper

    def _wrap_stream(
        self,
        behaviour: Callable,
        labels: tuple[str, str, str],
        parse: Callable[[Any], Any],
        streaming_request: bool,
    ) -> Callable:
        def wrapper(raw: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            metrics.GRPC_STARTED.labels(*labels).inc()
            start = time.perf_counter()
            code = "OK"
            try:
                request = _parse_stream(parse, raw) if streaming_request else parse(raw)
                for response in behaviour(request, context):
                    metrics.GRPC_MSG_SENT.labels(*labels).inc()
                    yield response
            except Exception as exc:
                code = "UNKNOWN"
                _translate(context, exc)
            finally:
                _record_handled(labels, context, code, start)

        return wrapper


def _device_of(request: Any) -> str:
    """``space/name`` of a write request for the audit line (ASCII-safe, bounded)."""
    if request is None:
        return ""
    name, space = getattr(request, "name", ""), getattr(request, "space", "")
    full = name if "/" in name or not space else f"{space}/{name}"
    return full if DEVICE_RE.match(full) else _shown(full)


def _code_of(context: grpc.ServicerContext, exc: Exception) -> str:
    """The status a call failing with ``exc`` ends with (see ``_translate``)."""
    if isinstance(exc, OracleError):
        return exc.code.name
    code = context.code()  # the handler aborted itself
    if code is None:
        return "INTERNAL"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


def _record_handled(
    labels: tuple[str, str, str], context: grpc.ServicerContext, code: str, start: float
) -> None:
    metrics.GRPC_HANDLED.labels(*labels, _final_code(context, code)).inc()
    metrics.GRPC_HANDLING_SECONDS.labels(*labels).observe(time.perf_counter() - start)


def _translate(context: grpc.ServicerContext, exc: Exception) -> None:
    """Re-raise grpc's own abort; turn anything else into a proper status."""
    if context.code() is not None and not isinstance(exc, OracleError):
        raise exc  # already aborted by the handler (context.abort raised)
    _abort_for(context, exc)


def _final_code(context: grpc.ServicerContext, fallback: str) -> str:
    try:
        code = context.code()
    except Exception:  # pragma: no cover - defensive
        code = None
    if code is None:
        return fallback if fallback != "UNKNOWN" else "INTERNAL"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)
