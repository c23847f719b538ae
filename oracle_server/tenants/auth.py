"""Callers: bearer token -> ``Caller`` (``Authenticator``, which reloads the tokens file when
it changes), and the caller of the running RPC, handed from the interceptor to the servicer
through a context variable. See ``oracle_server.tenants``."""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from client_sdk.errors import Unauthenticated
from oracle_server import metrics
from oracle_server.tenants.fair_share import Quota
from oracle_server.tenants.tokens import ANONYMOUS, TokenTable, legacy_entry, load_tokens_file

log = logging.getLogger("oracle_server.tenants")  # the name of its log lines before the split

MAX_TOKEN_CHARS = 4096


@dataclass(frozen=True)
class Caller:
    """Who is calling: a tenant (``anonymous`` without a token) and whether it is an admin."""

    tenant: str = ANONYMOUS
    admin: bool = False
    authenticated: bool = False


ANONYMOUS_CALLER = Caller()
_CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar(
    "oracle_caller", default=ANONYMOUS_CALLER
)


def current_caller() -> Caller:
    """The caller of the RPC running on this thread (set by the interceptor)."""
    return _CALLER.get()


def set_caller(caller: Caller) -> contextvars.Token[Caller]:
    return _CALLER.set(caller)


def reset_caller(token: contextvars.Token[Caller]) -> None:
    _CALLER.reset(token)


class Authenticator:
    """Bearer token -> ``Caller``. Holds the legacy token and the tokens file (reloaded when
    the file changes, at most every ``reload_s`` seconds)."""

    def __init__(
        self,
        write_token: str = "",
        tokens_file: str = "",
        reload_s: float = 10.0,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._legacy = (legacy_entry(write_token),) if write_token else ()
        self._path = tokens_file
        self._reload_s = reload_s
        self._now = now
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        self._stamp: tuple[int, int, int] | None = None
        table = TokenTable()
        if tokens_file:
            self._stamp = _stamp(tokens_file)
            table = load_tokens_file(tokens_file)
        self._table = self._merge(table)

    @property
    def enabled(self) -> bool:
        """Whether any token is configured (otherwise the server is open, as before)."""
        return bool(self._legacy or self._path)

    @property
    def table(self) -> TokenTable:
        self._maybe_reload()
        return self._table

    def quota(self, tenant: str) -> Quota | None:
        return self._table.quotas.get(tenant)

    def _merge(self, table: TokenTable) -> TokenTable:
        return TokenTable(self._legacy + table.entries, table.quotas)

    def _maybe_reload(self) -> None:
        if not self._path or self._reload_s <= 0:
            return
        if time.monotonic() - self._checked < self._reload_s:
            return
        with self._lock:
            if time.monotonic() - self._checked < self._reload_s:
                return
            self._checked = time.monotonic()
            try:
                stamp = _stamp(self._path)
                if stamp == self._stamp:
                    return
                table = load_tokens_file(self._path)
            except ValueError as exc:  # keep serving with the previous tokens
                metrics.TOKENS_RELOADS.labels("error").inc()
                log.warning("tokens file not reloaded, keeping the previous tokens: %s", exc)
                return
            self._stamp = stamp
            self._table = self._merge(table)
            metrics.TOKENS_RELOADS.labels("ok").inc()
            log.info("tokens file reloaded", extra={"tenants": len(table.tenants)})

    def identify(self, metadata: Iterable[tuple[str, Any]] | None) -> Caller:
        """The caller behind ``authorization: Bearer <token>`` (case-blind scheme)."""
        if not self.enabled:
            return ANONYMOUS_CALLER
        header = None
        for key, value in metadata or ():
            if key == "authorization":
                header = value
                break
        if header is None:
            return ANONYMOUS_CALLER
        scheme, _, token = header.partition(" ") if isinstance(header, str) else ("", "", "")
        if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated("the 'authorization' metadata must be 'Bearer <token>'")
        entry = self.table.match(token)
        if entry is None:
            raise Unauthenticated("unknown token in 'authorization: Bearer <token>'")
        if entry.expired(self._now()):
            raise Unauthenticated("this token has expired; ask for a new one")
        return Caller(entry.tenant, entry.admin, authenticated=True)


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
