"""Server interceptor: per-RPC metrics, tenants, drain, request checks, error translation.

``OracleInterceptor`` is one ``grpc.ServerInterceptor`` that runs every call through a chain
of small steps, one concern each (``chain.Step``: ``step(call, proceed)``), outermost first:

1. ``RpcMetrics``: ``grpc_server_started_total`` / ``handled_total{grpc_code}`` /
   ``handling_seconds`` (``rpc_metrics``);
2. ``ErrorTranslation``: ``OracleError`` -> its status code and a ``google.rpc.Status`` in
   the trailers, anything else -> ``INTERNAL`` (``errors``);
3. ``Drain``: oracle RPCs in flight, refused once the server drains (``drain``);
4. ``Audit``: one audit log line per write RPC with its final status code;
5. ``Authentication``: the caller's tenant from its bearer token, required for writes;
6. ``Admission``: the tenant's fair share, ``RESOURCE_EXHAUSTED`` with ``RetryInfo``
   (4-6: ``tenancy``);
7. ``ReadWatchdog``: reads the request, cancelling a call whose body does not arrive in
   time (``watchdog``);
8. ``IdentifierCheck``: space/device names checked before any work (``requests``);

then the servicer's method. Unknown methods pass through untouched (no metric series);
calls of other services (health, reflection) get 1, 2 and their request parsed
(``ParseRequest``); streaming ones are counted per reply.

Why one interceptor composing steps rather than a chain of ``grpc.ServerInterceptor``s:
a unary oracle RPC is served as request-streaming (grpc then runs the handler at once
instead of first receiving the whole request in a worker thread), so admission runs
before the body is read and a refused call never waits for (or copies) its request bytes;
its body is then parsed by the steps, not by grpc. Separate grpc interceptors would each
re-wrap the method handler of every call (grpc looks the handler up per call) and would
have to agree on that conversion and on where the request gets parsed; here the chain is
composed once, and a call costs one ``Call`` and one function call per step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from client_sdk.errors import DeadlineExceeded, MalformedRequest
from oracle_server.interceptors.chain import (
    ORACLE_SERVICE,
    WORK_METHODS,
    WRITE_METHODS,
    Call,
    Proceed,
    Step,
    compose,
    invoke,
    split_method,
)
from oracle_server.interceptors.drain import Drain
from oracle_server.interceptors.errors import ErrorTranslation
from oracle_server.interceptors.requests import (
    SPACE_RE,
    IdentifierCheck,
    ParseRequest,
    _first_message,
    _parse_stream,
    _parser,
    check_identifiers,
)
from oracle_server.interceptors.rpc_metrics import RpcMetrics
from oracle_server.interceptors.tenancy import Admission, Audit, Authentication
from oracle_server.interceptors.watchdog import ReadWatchdog
from oracle_server.tenants import Authenticator, Tenancy

__all__ = [
    "ORACLE_SERVICE",
    "SPACE_RE",
    "WORK_METHODS",
    "WRITE_METHODS",
    "Admission",
    "Audit",
    "Authentication",
    "Call",
    "DeadlineExceeded",
    "Drain",
    "ErrorTranslation",
    "IdentifierCheck",
    "MalformedRequest",
    "OracleInterceptor",
    "ParseRequest",
    "Proceed",
    "ReadWatchdog",
    "RpcMetrics",
    "Step",
    "check_identifiers",
    "compose",
    "invoke",
]

#: The streaming handlers served (health's Watch, reflection), checked in this order:
#: (handler attribute, ``grpc_type`` metric label, grpc's handler wrapper, request streamed).
_STREAMING = (
    ("unary_stream", "server_stream", grpc.unary_stream_rpc_method_handler, False),
    ("stream_stream", "bidi_stream", grpc.stream_stream_rpc_method_handler, True),
)


class OracleInterceptor(grpc.ServerInterceptor):
    def __init__(
        self,
        write_token: str = "",
        read_token_required: bool = False,
        tenancy: Tenancy | None = None,
        drain: Drain | None = None,
        request_read_timeout_s: float = 30.0,
    ) -> None:
        tenancy = tenancy or Tenancy(Authenticator(write_token=write_token))
        self.drain = drain or Drain()
        self.reads = ReadWatchdog(request_read_timeout_s)
        self.metrics = RpcMetrics()
        self.errors = ErrorTranslation()
        #: The steps of a unary oracle RPC, outermost first (see the module docstring).
        self.oracle_steps: tuple[Step, ...] = (
            self.metrics,
            self.errors,
            self.drain,
            Audit(),
            Authentication(tenancy.auth, read_token_required),
            Admission(tenancy.fair_share),
            self.reads,
            IdentifierCheck(),
        )
        #: The steps of a unary RPC of another service (health, reflection).
        self.other_steps: tuple[Step, ...] = (self.metrics, self.errors, ParseRequest())
        self._oracle = compose(self.oracle_steps)
        self._other = compose(self.other_steps)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None:
            return None
        service, method = split_method(details.method)
        # Register with an identity deserializer; the steps parse (see ``requests``).
        parse = _parser(handler.request_deserializer)
        if handler.unary_unary is not None:
            labels = ("unary", service, method)
            behaviour = handler.unary_unary
            if service != ORACLE_SERVICE:
                return grpc.unary_unary_rpc_method_handler(
                    _serve(self._other, method, labels, behaviour, parse),
                    request_deserializer=None,
                    response_serializer=handler.response_serializer,
                )
            # A unary oracle RPC is served as request-streaming (the same on the wire): grpc
            # then runs the handler at once instead of first receiving the whole request in
            # a worker thread, so the tenant's admission check runs before the body is read
            # and a refused call never waits for (or copies) its request bytes.
            return grpc.stream_unary_rpc_method_handler(
                _serve(self._oracle, method, labels, behaviour, _first_message(parse)),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        for attribute, kind, wrap, streaming_request in _STREAMING:
            behaviour = getattr(handler, attribute)
            if behaviour is not None:
                return wrap(
                    self._serve_stream(
                        behaviour, (kind, service, method), parse, streaming_request
                    ),
                    request_deserializer=None,
                    response_serializer=handler.response_serializer,
                )
        return handler

    def _serve_stream(
        self,
        behaviour: Callable,
        labels: tuple[str, str, str],
        parse: Callable[[Any], Any],
        streaming_request: bool,
    ) -> Callable:
        """A streaming call (health's Watch, reflection): metrics per reply, errors."""
        rpc_metrics, errors = self.metrics, self.errors

        def serve(raw: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            start = rpc_metrics.started(labels)
            code = "OK"
            try:
                request = _parse_stream(parse, raw) if streaming_request else parse(raw)
                for response in behaviour(request, context):
                    rpc_metrics.sent(labels)
                    yield response
            except Exception as exc:
                code = "UNKNOWN"
                errors.translate(context, exc)
            finally:
                rpc_metrics.handled(labels, context, code, start)

        return serve


def _serve(
    chain: Proceed,
    method: str,
    labels: tuple[str, str, str],
    behaviour: Callable,
    parse: Callable[[Any], Any],
) -> Callable[[Any, grpc.ServicerContext], Any]:
    """The method handler of one unary call: its ``Call`` down the composed chain."""

    def serve(raw: Any, context: grpc.ServicerContext) -> Any:
        return chain(Call(method, labels, behaviour, parse, raw, context))

    return serve
