"""Channel construction shared by the sync and asyncio clients (TLS, token, options)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from client_sdk._requests import channel_options, normalise_target

DEFAULT_TARGET = "localhost:50051"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: Architectures per Rank RPC; larger batches are split and merged by the client.
DEFAULT_CHUNK = 500_000


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
    """What the sync and asyncio clients share: channel config, deadline, chunking."""

    def __init__(
        self,
        target: str | list[str] = DEFAULT_TARGET,
        *,
        timeout_s: float = 60.0,
        chunk_size: int = DEFAULT_CHUNK,
        wait_for_ready: bool = False,
        **channel_kwargs: Any,
    ) -> None:
        self.config = ChannelConfig.build(target, **channel_kwargs)
        self.timeout_s = timeout_s
        self.chunk_size = chunk_size
        self.wait_for_ready = wait_for_ready
        self.num_rpcs = 0
        self._open()

    def _open(self) -> None:
        """Create the channel and stubs (sync or asyncio)."""
        raise NotImplementedError
