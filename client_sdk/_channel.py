"""Channel construction shared by the sync and asyncio clients (TLS, token, options)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from client_sdk._requests import channel_options, normalise_target
from client_sdk.errors import OracleError

DEFAULT_TARGET = "localhost:50051"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: Architectures per Rank RPC; larger batches are split and merged by the client.
DEFAULT_CHUNK = 500_000
#: A call refused RESOURCE_EXHAUSTED with a ``retry_after`` is re-sent after that long, at
#: most this many times, and never when the server asks for more than ``MAX_RETRY_AFTER_S``.
DEFAULT_OVERLOAD_RETRIES = 3
MAX_RETRY_AFTER_S = 30.0


def _read(value: bytes | str | Path | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


@dataclass(frozen=True)
class ChannelConfig:
    """Everything needed to open a channel; built from the client's keyword arguments."""

    target: str
    options: tuple[tuple[str, Any], ...]
    credentials: grpc.ChannelCredentials | None
    metadata: tuple[tuple[str, str], ...]

    @classmethod
    def build(
        cls,
        target: str | list[str] = DEFAULT_TARGET,
        *,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | str | Path | None = None,
        client_cert: bytes | str | Path | None = None,
        client_key: bytes | str | Path | None = None,
        tls_server_name: str | None = None,
        round_robin: bool | None = None,
        retries: bool = True,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> ChannelConfig:
        multi = not isinstance(target, str)
        resolved = normalise_target(target)
        rr = multi or resolved.startswith("dns:") if round_robin is None else round_robin
        creds = None
        if (client_cert is None) != (client_key is None):
            raise ValueError("mutual TLS needs both client_cert and client_key")
        if tls or root_certificates is not None or client_cert is not None:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(root_certificates),
                private_key=_read(client_key),
                certificate_chain=_read(client_cert),
            )
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        opts = channel_options(max_message_bytes, rr, retries, tls_server_name)
        return cls(resolved, tuple(opts), creds, metadata)

    def sync_channel(self) -> grpc.Channel:
        if self.credentials is None:
            return grpc.insecure_channel(self.target, options=list(self.options))
        return grpc.secure_channel(self.target, self.credentials, options=list(self.options))

    def aio_channel(self) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(self.target, options=list(self.options))
        return grpc.aio.secure_channel(self.target, self.credentials, options=list(self.options))


class ClientOptions:
    """What the sync and asyncio clients share: channel config, deadline, chunking, and the
    RetryInfo policy (``overload_retries``: default 3, or 0 with ``retries=False``;
    ``max_retry_after_s``)."""

    def __init__(
        self,
        target: str | list[str] = DEFAULT_TARGET,
        *,
        timeout_s: float = 60.0,
        chunk_size: int = DEFAULT_CHUNK,
        wait_for_ready: bool = False,
        overload_retries: int | None = None,
        max_retry_after_s: float = MAX_RETRY_AFTER_S,
        **channel_kwargs: Any,
    ) -> None:
        if overload_retries is None:  # retries=False switches every automatic retry off
            retries = channel_kwargs.get("retries", True)
            overload_retries = DEFAULT_OVERLOAD_RETRIES if retries else 0
        if overload_retries < 0:
            raise ValueError("overload_retries must be >= 0")
        self.config = ChannelConfig.build(target, **channel_kwargs)
        self.timeout_s = timeout_s
        self.chunk_size = chunk_size
        self.wait_for_ready = wait_for_ready
        self.overload_retries = overload_retries
        self.max_retry_after_s = max_retry_after_s
        self.num_rpcs = 0
        self.num_overload_retries = 0
        self._open()

    def retry_delay(self, exc: OracleError, retries_so_far: int) -> float | None:
        """Seconds to wait before re-sending a call that failed with ``exc``, or None to
        raise it: only RESOURCE_EXHAUSTED carrying the server's ``retry_after`` (RetryInfo)
        is retried here, ``overload_retries`` times at most, and only when the advised wait
        is at most ``max_retry_after_s``. (UNAVAILABLE is retried by the channel's gRPC
        retry policy.) The wait gets up to 10 % of jitter so that refused clients do not
        come back in lockstep."""
        if exc.code is not grpc.StatusCode.RESOURCE_EXHAUSTED or exc.retry_after is None:
            return None
        if retries_so_far >= self.overload_retries or exc.retry_after > self.max_retry_after_s:
            return None
        self.num_overload_retries += 1
        return max(exc.retry_after, 0.0) * (1.0 + 0.1 * random.random())

    def _open(self) -> None:
        """Create the channel and stubs (sync or asyncio)."""
        raise NotImplementedError
