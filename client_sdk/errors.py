"""Typed client errors mapped from gRPC status codes (and the server's error metadata)."""

from __future__ import annotations

import grpc


class OracleClientError(Exception):
    """Base of every error raised by the SDK for a failed RPC."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self, message: str, *, code: grpc.StatusCode | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field


class InvalidArgument(OracleClientError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class InvalidArchitecture(InvalidArgument):
    """An architecture of the batch is not in the space: ``index`` and ``gene`` say where."""

    def __init__(
        self, message: str, *, index: int | None = None, gene: int | None = None, **kw: object
    ) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.index = index
        self.gene = gene


class NotFound(OracleClientError):
    code = grpc.StatusCode.NOT_FOUND


class DeviceNotFound(NotFound):
    pass


class SpaceNotFound(NotFound):
    pass


class AlreadyExists(OracleClientError):
    code = grpc.StatusCode.ALREADY_EXISTS


class ResourceExhausted(OracleClientError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(OracleClientError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(OracleClientError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(OracleClientError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(OracleClientError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(OracleClientError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(OracleClientError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[OracleClientError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument, NotFound, AlreadyExists, ResourceExhausted, FailedPrecondition,
        Unauthenticated, PermissionDenied, Unavailable, DeadlineExceeded, Internal,
    )
}


def from_rpc_error(err: grpc.RpcError) -> OracleClientError:
    """Map a ``grpc.RpcError`` (sync or aio) to the matching typed exception."""
    code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
    details = err.details() if callable(getattr(err, "details", None)) else str(err)
    meta: dict[str, str] = {}
    trailing = getattr(err, "trailing_metadata", None)
    if callable(trailing):
        for key, value in trailing() or ():
            if isinstance(value, str):
                meta[key] = value
    field = meta.get("oracle-field")
    message = details or code.name
    is_arch = meta.get("oracle-error") == "InvalidArchitecture"
    if code == grpc.StatusCode.INVALID_ARGUMENT and is_arch:
        index = int(meta["oracle-index"]) if "oracle-index" in meta else None
        gene = int(meta["oracle-gene"]) if "oracle-gene" in meta else None
        return InvalidArchitecture(message, index=index, gene=gene, code=code, field=field)
    if code == grpc.StatusCode.NOT_FOUND:
        low = message.lower()
        if "device" in low:
            return DeviceNotFound(message, code=code, field=field)
        if "space" in low:
            return SpaceNotFound(message, code=code, field=field)
    cls = _BY_CODE.get(code, OracleClientError)
    return cls(message, code=code, field=field)
