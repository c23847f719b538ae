"""Reading a call's request: parsing its bytes, and checking its identifiers.

Handlers are registered with an identity deserializer and the request bytes are parsed
here, so undecodable bytes are ``INVALID_ARGUMENT`` (grpc's own deserializer would answer
``INTERNAL``) and are counted like any other failed call. Identifiers (``space``, ``name``,
``a``, ``b``, ``devices[i]``) are checked for length and charset before any work:
``INVALID_ARGUMENT`` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc

from client_sdk.errors import (
    DEVICE_RE,
    NAME_RE,
    DeadlineExceeded,
    InvalidArgument,
    MalformedRequest,
)
from oracle_server.interceptors.chain import Call, Proceed

SPACE_RE = NAME_RE
_IDENTIFIER_FIELDS = (("space", SPACE_RE), ("name", DEVICE_RE), ("a", DEVICE_RE), ("b", DEVICE_RE))
_SHOWN_CHARS = 40


def shown(value: str) -> str:
    """``value`` for an error message or a log line: ASCII-safe, bounded."""
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
                    f"{shown(value)} is not a valid name (1-64 of A-Z a-z 0-9 . _ -"
                    f"{', optionally <space>/<name>' if pattern is DEVICE_RE else ''})",
                    field=name,
                )
    if "devices" in fields:
        for i, value in enumerate(request.devices):
            if not DEVICE_RE.match(value):
                raise InvalidArgument(
                    f"{shown(value)} is not a valid device name (1-64 of A-Z a-z 0-9 . _ -, "
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


class ParseRequest:
    """Step: parse the request (a call not watched by the ``ReadWatchdog``, not checked)."""

    def __call__(self, call: Call, proceed: Proceed) -> Any:
        call.request = call.parse(call.raw)
        return proceed(call)


class IdentifierCheck:
    """Step: the request's space and device names are valid, or ``INVALID_ARGUMENT``."""

    def __call__(self, call: Call, proceed: Proceed) -> Any:
        check_identifiers(call.message)
        call.request = call.message
        return proceed(call)
