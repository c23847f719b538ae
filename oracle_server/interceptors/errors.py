"""Error translation: what a handler raised -> the call's gRPC status.

``OracleError`` -> its status code and a standard ``google.rpc.Status`` (ErrorInfo reason,
BadRequest field violation, RetryInfo) in the trailers, see ``client_sdk.errors``; anything
else -> ``INTERNAL`` with a generic message (logged with its traceback, never sent to the
client); grpc's own abort (``context.abort`` in a handler) is passed on. Status details and
error metadata are bounded in size and ASCII-safe.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from client_sdk.errors import OracleError, bounded, trailing_metadata
from oracle_server.interceptors.chain import Call, Proceed

log = logging.getLogger("oracle_server.interceptors")  # the package: its log lines keep their name


class ErrorTranslation:
    """Step: a call that raised ends with the matching status (see the module docstring)."""

    def __call__(self, call: Call, proceed: Proceed) -> Any:
        try:
            return proceed(call)
        except Exception as exc:
            self.translate(call.context, exc)

    @staticmethod
    def translate(context: grpc.ServicerContext, exc: Exception) -> None:
        """Re-raise grpc's own abort; turn anything else into a proper status (raises)."""
        if context.code() is not None and not isinstance(exc, OracleError):
            raise exc  # already aborted by the handler (context.abort raised)
        _abort_for(context, exc)


def _abort_for(context: grpc.ServicerContext, exc: Exception) -> None:
    if isinstance(exc, OracleError):
        if exc.code is grpc.StatusCode.INTERNAL:
            log.error("internal error", exc_info=exc)
        context.set_trailing_metadata(trailing_metadata(exc))
        context.abort(exc.code, bounded(str(exc)))
    log.error("unexpected error", exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, "internal error (logged on the server)")


def code_of(context: grpc.ServicerContext, exc: Exception) -> str:
    """The status a call failing with ``exc`` ends with (see ``ErrorTranslation.translate``)."""
    if isinstance(exc, OracleError):
        return exc.code.name
    code = context.code()  # the handler aborted itself
    if code is None:
        return "INTERNAL"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)
