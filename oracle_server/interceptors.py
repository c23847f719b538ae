"""Server interceptor: per-RPC metrics, auth for write RPCs, error translation.

One interceptor wraps every known method's handler (unknown methods pass through untouched,
so they add no metric series):
- ``grpc_server_started_total`` / ``handled_total{grpc_code}`` / ``handling_seconds``;
- bearer-token check (constant time) for write RPCs, or for all oracle RPCs when configured;
- ``OracleError`` -> its status code from ``errors.STATUS_CODE_BY_ERROR``; anything else ->
  ``INTERNAL`` with a generic message (logged with its traceback, never sent to the client).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from oracle_server import metrics
from oracle_server.errors import OracleError, Unauthenticated, status_code_name

log = logging.getLogger(__name__)

ORACLE_SERVICE = "latency_oracle.v1.LatencyOracle"
WRITE_METHODS = frozenset({"RegisterDevice", "AddMeasurements", "DeleteDevice"})


def _split(full_method: str) -> tuple[str, str]:
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


def _abort_for(context: grpc.ServicerContext, exc: Exception) -> None:
    if isinstance(exc, OracleError):
        code = grpc.StatusCode[status_code_name(exc)]
        if code is grpc.StatusCode.INTERNAL:
            log.error("internal error", exc_info=exc)
        context.set_trailing_metadata(_error_metadata(exc))
        context.abort(code, str(exc))
    log.error("unexpected error", exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, "internal error (logged on the server)")


def _error_metadata(exc: OracleError) -> tuple[tuple[str, str], ...]:
    """Machine-readable details for clients: the offending field, batch index and gene."""
    items = [("oracle-error", type(exc).__name__)]
    field = getattr(exc, "field", None)
    if field:
        items.append(("oracle-field", field))
    for key in ("index", "gene"):
        value = getattr(exc, key, None)
        if value is not None:
            items.append((f"oracle-{key}", str(value)))
    return tuple(items)


class OracleInterceptor(grpc.ServerInterceptor):
    def __init__(self, write_token: str = "", read_token_required: bool = False) -> None:
        self._token = write_token.encode()
        self._read_token_required = read_token_required

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None:
            return None
        service, method = _split(details.method)
        needs_token = bool(self._token) and service == ORACLE_SERVICE and (
            method in WRITE_METHODS or self._read_token_required
        )
        if handler.unary_unary is not None:
            labels = ("unary", service, method)
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, labels, needs_token),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            labels = ("server_stream", service, method)
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, labels),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            labels = ("bidi_stream", service, method)
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_stream(handler.stream_stream, labels),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _check_token(self, context: grpc.ServicerContext) -> None:
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, token = value.partition(" ")
                if scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), self._token):
                    return
        raise Unauthenticated("this RPC needs 'authorization: Bearer <token>' metadata")

    def _wrap_unary(
        self, behaviour: Callable, labels: tuple[str, str, str], needs_token: bool
    ) -> Callable:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            metrics.GRPC_STARTED.labels(*labels).inc()
            metrics.GRPC_MSG_RECEIVED.labels(*labels).inc()
            start = time.perf_counter()
            code = "OK"
            try:
                if needs_token:
                    self._check_token(context)
                response = behaviour(request, context)
                metrics.GRPC_MSG_SENT.labels(*labels).inc()
                return response
            except Exception as exc:
                code = "UNKNOWN"
                _translate(context, exc)
            finally:
                code = _final_code(context, code)
                metrics.GRPC_HANDLED.labels(*labels, code).inc()
                metrics.GRPC_HANDLING_SECONDS.labels(*labels).observe(time.perf_counter() - start)

        return wrapper

    def _wrap_stream(self, behaviour: Callable, labels: tuple[str, str, str]) -> Callable:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            metrics.GRPC_STARTED.labels(*labels).inc()
            start = time.perf_counter()
            code = "OK"
            try:
                for response in behaviour(request, context):
                    metrics.GRPC_MSG_SENT.labels(*labels).inc()
                    yield response
            except Exception as exc:
                code = "UNKNOWN"
                _translate(context, exc)
            finally:
                code = _final_code(context, code)
                metrics.GRPC_HANDLED.labels(*labels, code).inc()
                metrics.GRPC_HANDLING_SECONDS.labels(*labels).observe(time.perf_counter() - start)

        return wrapper


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
