"""Domain exceptions and the ONE table mapping them to gRPC status codes.

Nothing here imports grpc: the table maps exception classes to status-code *names*
(``grpc.StatusCode[name]``), so ``spaces/`` and ``predictor/`` stay protocol-free.
"""

from __future__ import annotations

import re

#: Space and device names: 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit.
#: A device may also be named ``<space>/<name>``.
NAME_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
NAME_RE = re.compile(rf"^{NAME_PART}$")
DEVICE_RE = re.compile(rf"^(?:{NAME_PART}/)?{NAME_PART}$")


class OracleError(Exception):
    """Base class of every error the oracle reports to a caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(OracleError):
    """A request field is malformed; ``field`` names it (e.g. ``measurements[3].latency_ms``)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class InvalidArchitecture(InvalidArgument):
    """An architecture is not in the search space.

    ``index`` is its position in the batch, ``gene`` the offending gene position
    (``None`` when the whole encoding is wrong, e.g. a wrong gene count).
    """

    def __init__(
        self, message: str, index: int | None = None, gene: int | None = None, field: str = "archs"
    ) -> None:
        where = field
        if index is not None:
            where += f"[{index}]"
        if gene is not None:
            where += f", gene {gene}"
        super().__init__(message, field=where)
        self.index = index
        self.gene = gene
        self.detail = message


class NotFound(OracleError):
    """Unknown device or search space."""


class AlreadyExists(OracleError):
    """A device of that name already exists."""


class LimitExceeded(OracleError):
    """A request is over a configured limit (batch size, devices per request, ...)."""


class FailedPrecondition(OracleError):
    """The request is well-formed but cannot be served in the current state."""


class Unavailable(OracleError):
    """A dependency (e.g. the database) is unreachable; the call may be retried."""


class Unauthenticated(OracleError):
    """A write RPC without a valid token."""


class PermissionDenied(OracleError):
    """The caller is authenticated but not allowed to do this."""


class DeadlineExceeded(OracleError):
    """The client's deadline passed or it cancelled while the work was running."""


# The one table: exception class -> gRPC status code name. Most specific classes first.
STATUS_CODE_BY_ERROR: tuple[tuple[type[OracleError], str], ...] = (
    (InvalidArchitecture, "INVALID_ARGUMENT"),
    (InvalidArgument, "INVALID_ARGUMENT"),
    (NotFound, "NOT_FOUND"),
    (AlreadyExists, "ALREADY_EXISTS"),
    (LimitExceeded, "RESOURCE_EXHAUSTED"),
    (FailedPrecondition, "FAILED_PRECONDITION"),
    (Unavailable, "UNAVAILABLE"),
    (Unauthenticated, "UNAUTHENTICATED"),
    (PermissionDenied, "PERMISSION_DENIED"),
    (DeadlineExceeded, "DEADLINE_EXCEEDED"),
    (OracleError, "INTERNAL"),
)


def status_code_name(exc: BaseException) -> str:
    """Name of the gRPC status code for ``exc`` (``INTERNAL`` for anything unexpected)."""
    for cls, name in STATUS_CODE_BY_ERROR:
        if isinstance(exc, cls):
            return name
    return "INTERNAL"
