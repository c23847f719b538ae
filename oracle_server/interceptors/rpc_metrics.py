"""Per-RPC metrics: ``grpc_server_started_total``, ``grpc_server_msg_received_total``,
``grpc_server_msg_sent_total``, ``grpc_server_handled_total{grpc_code}`` and
``grpc_server_handling_seconds``, labelled (grpc type, service, method)."""

from __future__ import annotations

import time
from typing import Any

import grpc

from oracle_server import metrics
from oracle_server.interceptors.chain import Call, Proceed

Labels = tuple[str, str, str]


class RpcMetrics:
    """Step (outermost): counts a unary call, its reply and its final status code.

    The status is read from the context once the call is over, so a call refused by an
    inner step (unauthenticated, over its share, draining) is counted with its code."""

    def __call__(self, call: Call, proceed: Proceed) -> Any:
        labels = call.labels
        start = self.started(labels, received=True)
        code = "OK"
        try:
            response = proceed(call)
            self.sent(labels)
            return response
        except Exception:
            code = "UNKNOWN"
            raise
        finally:
            self.handled(labels, call.context, code, start)

    @staticmethod
    def started(labels: Labels, received: bool = False) -> float:
        """Count a call's start (and, unary, its one request message); its start time."""
        metrics.GRPC_STARTED.labels(*labels).inc()
        if received:
            metrics.GRPC_MSG_RECEIVED.labels(*labels).inc()
        return time.perf_counter()

    @staticmethod
    def sent(labels: Labels) -> None:
        metrics.GRPC_MSG_SENT.labels(*labels).inc()

    @staticmethod
    def handled(labels: Labels, context: grpc.ServicerContext, code: str, start: float) -> None:
        """Count a call's end: the code its context holds (``code`` if none was set)."""
        metrics.GRPC_HANDLED.labels(*labels, _final_code(context, code)).inc()
        metrics.GRPC_HANDLING_SECONDS.labels(*labels).observe(time.perf_counter() - start)


def _final_code(context: grpc.ServicerContext, fallback: str) -> str:
    try:
        code = context.code()
    except Exception:  # pragma: no cover - defensive
        code = None
    if code is None:
        return fallback if fallback != "UNKNOWN" else "INTERNAL"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)
