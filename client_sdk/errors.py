"""The oracle's one exception hierarchy, raised by the server and by the SDK alike, and its
wire form.

Wire form: a standard ``google.rpc.Status`` in the ``grpc-status-details-bin`` trailer, so
any gRPC client (grpcurl, Go, Java, ...) reads the details:

- ``google.rpc.ErrorInfo``: ``reason`` is a stable UPPER_SNAKE code per class (e.g.
  ``INVALID_ARCHITECTURE``, ``DEVICE_NOT_FOUND``), ``domain`` is :data:`DOMAIN`, ``metadata``
  carries ``field`` / ``index`` / ``gene`` when known;
- ``google.rpc.BadRequest`` with one ``FieldViolation`` (``field`` = ``archs[3].genes[1]``)
  for invalid arguments;
- ``google.rpc.RetryInfo`` when the server says when to retry (``retry_after``).

For one release the server also sends, and the SDK also reads, the older ``oracle-*``
trailers (``oracle-error``, ``oracle-field``, ``oracle-index``, ``oracle-gene``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any, ClassVar

import grpc

#: ``ErrorInfo.domain`` of every error the oracle reports.
DOMAIN = "latency-oracle.v1"
#: The trailer holding the serialised ``google.rpc.Status`` (gRPC's own convention).
STATUS_DETAILS_KEY = "grpc-status-details-bin"
MAX_MESSAGE_CHARS = 1024
MAX_FIELD_CHARS = 256

#: Space and device names: 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit.
#: A device may also be named ``<space>/<name>``.
NAME_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
NAME_RE = re.compile(rf"^{NAME_PART}$")
DEVICE_RE = re.compile(rf"^(?:{NAME_PART}/)?{NAME_PART}$")
#: Request ids of idempotent writes: 1-128 printable ASCII characters, no spaces.
REQUEST_ID_RE = re.compile(r"^[!-~]{1,128}$")


class OracleError(Exception):
    """Base class of every error the oracle reports (server side and client side).

    ``code`` is the gRPC status code, ``reason`` the stable ``ErrorInfo.reason``,
    ``field`` the offending request field when there is one, ``retry_after`` (seconds) the
    server's advice on when to retry, ``metadata`` any further ``ErrorInfo`` metadata.
    """

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: ClassVar[str] = "INTERNAL"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A class that sets its own ``code`` and no ``reason`` reports the code's name
        (``NotFound``: ``NOT_FOUND``); subclasses of it set their own ``reason``."""
        super().__init_subclass__(**kwargs)
        if "code" in vars(cls) and "reason" not in vars(cls):
            cls.reason = cls.code.name

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: grpc.StatusCode | None = None,
        retry_after: float | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code
        self.retry_after = retry_after
        self.metadata = dict(metadata or {})

    @property
    def code_name(self) -> str:
        return self.code.name


#: Kept for one release: the SDK's earlier name of the base class.
OracleClientError = OracleError


class InvalidArgument(OracleError):
    """A request field is malformed; ``field`` names it (e.g. ``measurements[3].latency_ms``).
    The message is prefixed with the field."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, field: str | None = None, **kw: Any) -> None:
        self.detail = message
        super().__init__(f"{field}: {message}" if field else message, field=field, **kw)


class InvalidSpaceDefinition(InvalidArgument):
    """A search-space definition that cannot be interpreted (``client_sdk.spaces.language``);
    ``path`` is where inside the definition, e.g. ``stages[2].choose.kernel[1]``."""

    reason = "INVALID_SPACE_DEFINITION"

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message, field=f"definition.{path}" if path else "definition")

    @property
    def path(self) -> str:
        return (self.field or "").removeprefix("definition").removeprefix(".")


class MalformedRequest(InvalidArgument):
    """The request bytes are not a valid message of the method's request type."""

    reason = "MALFORMED_REQUEST"


class InvalidArchitecture(InvalidArgument):
    """An architecture is not in the search space.

    ``index`` is its position in the batch, ``gene`` the offending gene position
    (``None`` when the whole encoding is wrong, e.g. a wrong gene count); ``field`` reads
    ``archs[3]`` and the message ``archs[3], gene 1: <why>``.
    """

    reason = "INVALID_ARCHITECTURE"

    def __init__(
        self,
        message: str,
        index: int | None = None,
        gene: int | None = None,
        field: str = "archs",
        **kw: Any,
    ) -> None:
        where = field if index is None else f"{field}[{index}]"
        shown = where if gene is None else f"{where}, gene {gene}"
        OracleError.__init__(self, f"{shown}: {message}", field=where, **kw)
        self.detail = message
        self.index = index
        self.gene = gene


class NotFound(OracleError):
    """Unknown device or search space."""

    code = grpc.StatusCode.NOT_FOUND


class DeviceNotFound(NotFound):
    reason = "DEVICE_NOT_FOUND"


class SpaceNotFound(NotFound):
    reason = "SPACE_NOT_FOUND"


class AlreadyExists(OracleError):
    """A device of that name already exists."""

    code = grpc.StatusCode.ALREADY_EXISTS


class ResourceExhausted(OracleError):
    """A request is over a configured limit (batch size, devices per request, ...), or the
    server is at its admission limit (``retry_after`` then says when to try again)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class LimitExceeded(ResourceExhausted):
    """One request is over a configured limit: retrying the same request cannot help."""

    reason = "LIMIT_EXCEEDED"


class Overloaded(ResourceExhausted):
    """The server (or the caller's share of it) is busy: retry after ``retry_after``."""

    reason = "OVERLOADED"


class FailedPrecondition(OracleError):
    """The request is well-formed but cannot be served in the current state."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(OracleError):
    """A dependency (e.g. the database) or the server is unreachable; retry."""

    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(OracleError):
    """A call without a valid token."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(OracleError):
    """The caller is authenticated but not allowed to do this."""

    code = grpc.StatusCode.PERMISSION_DENIED


class DeadlineExceeded(OracleError):
    """The client's deadline passed or it cancelled while the work was running."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(OracleError):
    code = grpc.StatusCode.INTERNAL


def _subclasses(cls: type[OracleError]) -> Iterable[type[OracleError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


@functools.cache
def _by_reason() -> dict[str, type[OracleError]]:
    """``ErrorInfo.reason`` -> class (built once, on the first error received)."""
    table: dict[str, type[OracleError]] = {OracleError.reason: Internal}
    for cls in _subclasses(OracleError):
        table.setdefault(cls.reason, cls)
    return table


_BY_CODE: dict[grpc.StatusCode, type[OracleError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument, NotFound, AlreadyExists, ResourceExhausted, FailedPrecondition,
        Unauthenticated, PermissionDenied, Unavailable, DeadlineExceeded, Internal,
    )
}


# --- wire form ----------------------------------------------------------------------------


def bounded(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters (status details travel in HTTP/2 trailers)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ascii(value: object, limit: int = MAX_FIELD_CHARS) -> str:
    """Printable ASCII only (a non-binary metadata value must be), bounded."""
    return bounded("".join(c if " " <= c <= "~" else "?" for c in str(value)), limit)


def _violation_field(exc: OracleError) -> str | None:
    if isinstance(exc, InvalidArchitecture) and exc.gene is not None:
        return f"{exc.field}.genes[{exc.gene}]"
    return exc.field


def _positions(exc: OracleError) -> dict[str, str]:
    """``index`` / ``gene`` of ``exc`` as decimal strings, those that are set."""
    values = {key: getattr(exc, key, None) for key in ("index", "gene")}
    return {key: str(int(value)) for key, value in values.items() if value is not None}


def error_info_metadata(exc: OracleError) -> dict[str, str]:
    meta = {k: _ascii(v) for k, v in exc.metadata.items()}
    if exc.field:
        meta["field"] = _ascii(exc.field)
    meta.update(_positions(exc))
    return meta


def to_status_proto(exc: OracleError) -> Any:
    """``exc`` as a ``google.rpc.Status`` message (ErrorInfo, BadRequest, RetryInfo)."""
    from google.protobuf import any_pb2, duration_pb2
    from google.rpc import error_details_pb2, status_pb2

    details = []
    info = error_details_pb2.ErrorInfo(
        reason=exc.reason, domain=DOMAIN, metadata=error_info_metadata(exc)
    )
    details.append(info)
    if isinstance(exc, InvalidArgument) and exc.field:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=_ascii(_violation_field(exc)),
            description=bounded(getattr(exc, "detail", exc.message)),
        )
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    if exc.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(max(exc.retry_after, 0.0) * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    packed = []
    for message in details:
        item = any_pb2.Any()
        item.Pack(message)
        packed.append(item)
    return status_pb2.Status(
        code=exc.code.value[0],
        message=bounded(str(exc)),
        details=packed,
    )


def legacy_trailers(exc: OracleError) -> tuple[tuple[str, str], ...]:
    """The pre-``google.rpc.Status`` ``oracle-*`` trailers (sent for one more release)."""
    items = [("oracle-error", type(exc).__name__)]
    if exc.field:
        items.append(("oracle-field", _ascii(exc.field)))
    items += [(f"oracle-{key}", value) for key, value in _positions(exc).items()]
    return tuple(items)


def trailing_metadata(exc: OracleError) -> tuple[tuple[str, str | bytes], ...]:
    """Everything the server puts in the trailers for ``exc``."""
    status = to_status_proto(exc)
    return (*legacy_trailers(exc), (STATUS_DETAILS_KEY, status.SerializeToString()))


def _build(
    cls: type[OracleError],
    message: str,
    code: grpc.StatusCode,
    field: str | None,
    index: int | None,
    gene: int | None,
    retry_after: float | None,
    metadata: dict[str, str],
    detail: str | None = None,
) -> OracleError:
    """An exception as received: the message is kept verbatim (not re-prefixed)."""
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.message = message
    exc.field = field
    exc.code = code
    exc.retry_after = retry_after
    exc.metadata = metadata
    exc.detail = detail or message  # type: ignore[attr-defined]
    if issubclass(cls, InvalidArchitecture):
        exc.index = index  # type: ignore[attr-defined]
        exc.gene = gene  # type: ignore[attr-defined]
    return exc


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _unpacked(item: Any, message_type: Any) -> Any:
    """``item`` (a ``google.protobuf.Any``) as a ``message_type``; None if it holds another."""
    if not item.Is(message_type.DESCRIPTOR):
        return None
    message = message_type()
    item.Unpack(message)
    return message


def from_status_proto(status: Any, code: grpc.StatusCode | None = None) -> OracleError | None:
    """The exception a ``google.rpc.Status`` describes (``None`` if it has no ErrorInfo of
    this oracle's domain)."""
    from google.rpc import error_details_pb2

    code = code or _code_of(status.code)
    info = None
    violation = None
    retry_after = None
    for item in status.details:
        if (candidate := _unpacked(item, error_details_pb2.ErrorInfo)) is not None:
            if candidate.domain == DOMAIN:
                info = candidate
        elif (bad := _unpacked(item, error_details_pb2.BadRequest)) is not None:
            if bad.field_violations:
                violation = bad.field_violations[0]
        elif (retry := _unpacked(item, error_details_pb2.RetryInfo)) is not None:
            retry_after = retry.retry_delay.ToNanoseconds() / 1e9
    if info is None:
        return None
    cls = _by_reason().get(info.reason) or _BY_CODE.get(code, OracleError)
    if cls.code != code and not issubclass(cls, Internal):
        cls = _BY_CODE.get(code, OracleError)
    meta = dict(info.metadata)
    return _build(
        cls, status.message or code.name, code, meta.get("field"),
        _int(meta.get("index")), _int(meta.get("gene")), retry_after, meta,
        detail=violation.description if violation is not None else None,
    )


def _code_of(number: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    return grpc.StatusCode.UNKNOWN


def _from_legacy(
    message: str, code: grpc.StatusCode, meta: dict[str, str]
) -> OracleError:
    """The earlier trailers (``oracle-*``) and, failing those, the status code alone."""
    field = meta.get("oracle-field")
    if code == grpc.StatusCode.INVALID_ARGUMENT and meta.get("oracle-error") == (
        "InvalidArchitecture"
    ):
        return _build(
            InvalidArchitecture, message, code, field,
            _int(meta.get("oracle-index")), _int(meta.get("oracle-gene")), None, {},
        )
    cls = _BY_CODE.get(code, OracleError)
    if code == grpc.StatusCode.NOT_FOUND:
        low = message.lower()
        cls = DeviceNotFound if "device" in low else SpaceNotFound if "space" in low else cls
    return _build(cls, message, code, field, None, None, None, {})


def from_rpc_error(err: grpc.RpcError) -> OracleError:
    """Map a ``grpc.RpcError`` (sync or aio) to the matching exception of this hierarchy:
    from the ``google.rpc.Status`` details when present, else from the older trailers."""
    code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details = err.details() if callable(getattr(err, "details", None)) else str(err)
    message = details or code.name
    meta: dict[str, str] = {}
    status_bytes = None
    trailing = getattr(err, "trailing_metadata", None)
    if callable(trailing):
        for key, value in trailing() or ():
            if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
                status_bytes = value
            elif isinstance(value, str):
                meta[key] = value
    if status_bytes is not None:
        from google.rpc import status_pb2

        status = status_pb2.Status()
        try:
            status.ParseFromString(status_bytes)
        except Exception:  # a corrupt trailer: fall back to the code
            status = None
        if status is not None:
            exc = from_status_proto(status, code)
            if exc is not None:
                return exc
    return _from_legacy(message, code, meta)
