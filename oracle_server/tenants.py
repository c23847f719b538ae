"""Tenants of a shared oracle: who is calling, what they may touch, and their fair share.

**Tokens file** (``--tokens-file``; YAML, or JSON/TOML by extension): a mapping of tenant
name -> the SHA-256 (or SHA-512) hash of its bearer token, never the token itself::

    team-a: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    team-b:                                   # several tokens (rotation), optional expiry
      - sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752
      - {sha256: fd61a03af4f77d870fc21e05e7e80678095c92d808cfb3b5c279ee04c74aca13,
         expires: 2026-01-31T00:00:00Z}
    ops: {sha256: "...", admin: true}         # admin: may act on every tenant's devices
    batch: {sha256: "...", max_concurrent_rpcs: 2, rate_limit: 5}   # per-tenant quota
    nas: {sha256: "...", work_limit: 2000000}   # Rank architectures x devices per second

A tenant's value is a hash string (``sha256:<64 hex>``, ``sha512:<128 hex>`` or a bare
64-hex SHA-256), a mapping (``sha256``/``sha512``/``hash``, ``admin``, ``expires``,
``max_concurrent_rpcs``, ``rate_limit``, ``burst``, ``work_limit``, ``work_burst``) or a list of
those. Presented tokens are
hashed and compared with every entry in constant time (``hmac.compare_digest``, no early
exit). The file is re-read when it changes (a Kubernetes Secret update), at most every
``tokens_reload_s``; an unreadable new version keeps the previous one (logged, without
content). The legacy single ``write_token`` is an admin token of tenant ``admin``.

**Callers**: a valid token -> its tenant; no ``authorization`` header -> ``anonymous``; an
unknown, malformed or expired token -> ``UNAUTHENTICATED`` (also on read RPCs: a bad
credential is never silently downgraded). With no token configured at all the server is
open, as before: everyone is ``anonymous`` and ownership is not enforced.

**Ownership**: a device registered by an authenticated caller belongs to its tenant
(``Device.owner``). Only that tenant or an admin may add to, re-register or delete it
(``PERMISSION_DENIED``). Table devices and devices registered before tenants existed (or on
an open server) have no owner: read-only for tenants, writable by admins.

**Fair share**: per-tenant concurrency, call-rate (token bucket) and work (Rank architectures
x devices per second, a token bucket that may run into debt by one call) limits on top of
grpc's global admission limit. All anonymous callers share ONE tenant, ``anonymous``: the
peer address is no identity (NAT, proxies, a Kubernetes Service and many client ports all
break it), and a per-peer bucket would let one client multiply its share by opening
connections, while one shared bucket caps all unauthenticated traffic at one tenant's
share. Over a limit -> ``RESOURCE_EXHAUSTED`` with ``google.rpc.RetryInfo``
(``client_sdk.errors.Overloaded``). The limits themselves live in ``oracle_server.fair_share``
(in memory per replica, or shared by all replicas through Redis: ``oracle_server.limits``).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import os
import re
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client_sdk.errors import (
    NAME_RE,
    PermissionDenied,
    Unauthenticated,
)
from oracle_server import metrics
from oracle_server.fair_share import FairShare, Quota

log = logging.getLogger(__name__)
audit_log = logging.getLogger("oracle_server.audit")

ANONYMOUS = "anonymous"
#: The tenant the legacy single ``write_token`` stands for (an admin).
LEGACY_TENANT = "admin"
VISIBILITIES = ("all", "own")
MAX_TOKEN_CHARS = 4096
_HEX_CHARS = {"sha256": 64, "sha512": 128}
_HASH_RE = re.compile(r"^(?:(sha256|sha512):)?([0-9a-fA-F]+)$")
_QUOTA_KEYS = ("max_concurrent_rpcs", "rate_limit", "burst", "work_limit", "work_burst")
_RATE_KEYS = frozenset({"rate_limit", "work_limit"})  # numbers; the other quotas are integers
_ENTRY_KEYS = frozenset({"sha256", "sha512", "hash", "admin", "expires", *_QUOTA_KEYS})


# ------------------------------------------------------------------------ tokens
@dataclass(frozen=True)
class TokenEntry:
    """One accepted token: its hash, its tenant, whether it is an admin, when it expires."""

    tenant: str
    algorithm: str
    digest: bytes = field(repr=False)
    admin: bool = False
    expires: dt.datetime | None = None

    def expired(self, now: dt.datetime) -> bool:
        return self.expires is not None and now >= self.expires


@dataclass(frozen=True)
class TokenTable:
    entries: tuple[TokenEntry, ...] = ()
    quotas: Mapping[str, Quota] = field(default_factory=dict)

    @property
    def tenants(self) -> frozenset[str]:
        return frozenset(e.tenant for e in self.entries)

    def match(self, token: str) -> TokenEntry | None:
        """The entry whose hash is the token's: every entry compared, constant time each."""
        raw = token.encode()
        digests = {alg: hashlib.new(alg, raw).digest() for alg in _HEX_CHARS}
        found = None
        for entry in self.entries:
            equal = hmac.compare_digest(digests[entry.algorithm], entry.digest)
            if equal and found is None:
                found = entry
        return found


def hash_token(token: str, algorithm: str = "sha256") -> str:
    """The tokens-file form of ``token``'s hash (``sha256:<hex>``)."""
    return f"{algorithm}:{hashlib.new(algorithm, token.encode()).hexdigest()}"


def _where(source: str, tenant: str) -> str:
    return f"{source}: tenant {tenant!r}"


def _digest(value: Any, algorithm: str | None, where: str) -> tuple[str, bytes]:
    text = value.strip() if isinstance(value, str) else ""
    match = _HASH_RE.match(text)
    if match:
        prefix, hexdigits = match.groups()
        alg = prefix or algorithm or "sha256"
        if (algorithm is None or alg == algorithm) and len(hexdigits) == _HEX_CHARS[alg]:
            return alg, bytes.fromhex(hexdigits)
    # Never echo the value: it may be a token pasted by mistake.
    raise ValueError(
        f"{where}: the token hash must be 'sha256:<64 hex digits>' or 'sha512:<128 hex "
        "digits>' (the hash of the token, never the token itself)"
    )


def _expiry(value: Any, where: str) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        when = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{where}: 'expires' must be an ISO 8601 time, e.g. 2026-01-31T00:00:00Z"
            ) from None
    else:
        raise ValueError(f"{where}: 'expires' must be an ISO 8601 time")
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _quota_value(key: str, value: Any, where: str) -> int | float:
    if isinstance(value, str):  # YAML 1.1 reads 2.5e6 (no dot or sign) as a string
        with contextlib.suppress(ValueError):
            value = float(value)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and key not in _RATE_KEYS and float(value) != int(value):
        ok = False
    if not ok or not math.isfinite(value) or value < 0:
        kind = "number" if key in _RATE_KEYS else "integer"
        default = "the default" if key.endswith("burst") else "unlimited"
        raise ValueError(f"{where}: {key!r} must be a non-negative {kind} (0 = {default})")
    return float(value) if key in _RATE_KEYS else int(value)


def _entries_of(tenant: str, value: Any, source: str) -> tuple[list[TokenEntry], dict]:
    where = _where(source, tenant)
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError(f"{where}: no token hash given")
    entries: list[TokenEntry] = []
    quota: dict[str, int | float] = {}
    for item in items:
        if isinstance(item, str):
            alg, digest = _digest(item, None, where)
            entries.append(TokenEntry(tenant, alg, digest))
            continue
        if not isinstance(item, Mapping):
            raise ValueError(f"{where}: expected a hash string, a mapping or a list of them")
        unknown = sorted(str(k) for k in item if k not in _ENTRY_KEYS)
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (known: "
                f"{', '.join(sorted(_ENTRY_KEYS))})"
            )
        given = [k for k in ("sha256", "sha512", "hash") if k in item]
        if len(given) != 1:
            raise ValueError(f"{where}: give exactly one of 'sha256', 'sha512' or 'hash'")
        key = given[0]
        alg, digest = _digest(item[key], None if key == "hash" else key, where)
        admin = item.get("admin", False)
        if not isinstance(admin, bool):
            raise ValueError(f"{where}: 'admin' must be true or false")
        entries.append(TokenEntry(tenant, alg, digest, admin, _expiry(item.get("expires"), where)))
        for qkey in _QUOTA_KEYS:
            if qkey in item:
                qvalue = _quota_value(qkey, item[qkey], where)
                if quota.setdefault(qkey, qvalue) != qvalue:
                    raise ValueError(f"{where}: conflicting {qkey!r} between its tokens")
    return entries, quota


def parse_tokens(data: Any, source: str = "tokens file") -> TokenTable:
    """A parsed tokens document -> ``TokenTable``; ``ValueError`` naming the tenant and key
    (never a hash or a token) on anything wrong."""
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"{source}: expected a non-empty mapping of tenant -> token hash")
    entries: list[TokenEntry] = []
    quotas: dict[str, Quota] = {}
    seen: dict[tuple[str, bytes], str] = {}
    for tenant, value in data.items():
        if not isinstance(tenant, str) or not NAME_RE.match(tenant):
            raise ValueError(
                f"{source}: tenant names are 1-64 of A-Z a-z 0-9 . _ - starting with a letter "
                f"or digit, got {ascii(str(tenant))[:70]}"
            )
        if tenant == ANONYMOUS:
            raise ValueError(f"{source}: {ANONYMOUS!r} is reserved for callers without a token")
        found, quota = _entries_of(tenant, value, source)
        for entry in found:
            key = (entry.algorithm, entry.digest)
            if key in seen:
                other = seen[key]
                raise ValueError(
                    f"{_where(source, tenant)}: a token hash is listed twice" if other == tenant
                    else f"{source}: tenants {other!r} and {tenant!r} list the same token hash"
                )
            seen[key] = tenant
        entries.extend(found)
        if quota:
            quotas[tenant] = Quota(**quota)  # type: ignore[arg-type]
    return TokenTable(tuple(entries), quotas)


def _error_line(exc: Exception) -> str:
    """Where a parse error is, never what is there (the text may hold a hash)."""
    mark = getattr(exc, "problem_mark", None)
    line = getattr(mark, "line", None)
    if line is not None:
        return f" (line {line + 1})"
    lineno = getattr(exc, "lineno", None)
    if lineno is not None:
        return f" (line {lineno})"
    found = re.search(r"at line (\d+)", str(exc))
    return f" (line {found.group(1)})" if found else ""


def load_tokens_file(path: str | os.PathLike[str]) -> TokenTable:
    """Read and validate a tokens file (YAML; ``.json`` JSON; ``.toml`` TOML)."""
    p = Path(path)
    source = f"tokens file {str(p)!r}"
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{source}: cannot read it ({exc.__class__.__name__})") from None
    suffix = p.suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # json/toml/yaml errors: never their text (it quotes the file)
        kind = {".json": "JSON", ".toml": "TOML"}.get(suffix, "YAML")
        raise ValueError(f"{source}: not valid {kind}{_error_line(exc)}") from None
    return parse_tokens(data, source)


def legacy_entry(write_token: str) -> TokenEntry:
    return TokenEntry(
        LEGACY_TENANT, "sha256", hashlib.sha256(write_token.encode()).digest(), admin=True
    )


# ----------------------------------------------------------------------- callers
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


# ------------------------------------------------------------------------ policy
class Tenancy:
    """Authentication, ownership and visibility rules, and fair share, for one server."""

    def __init__(
        self,
        auth: Authenticator | None = None,
        visibility: str = "all",
        fair_share: FairShare | None = None,
    ) -> None:
        if visibility not in VISIBILITIES:
            raise ValueError(f"tenant_visibility must be one of {VISIBILITIES}, got {visibility!r}")
        self.auth = auth or Authenticator()
        self.visibility = visibility
        self.fair_share = fair_share or FairShare(quota=self.auth.quota)

    @classmethod
    def from_settings(cls, s: Any) -> Tenancy:
        auth = Authenticator(s.write_token, s.tokens_file, s.tokens_reload_s)
        shared = None
        if getattr(s, "limits_url", ""):
            from oracle_server.limits import SharedLimits

            shared = SharedLimits(s.limits_url)
            shared.check()  # ValueError (exit 2) if Redis refuses the credentials
        fair = FairShare(s.tenant_max_concurrent_rpcs, s.tenant_rate_limit, s.tenant_burst,
                         quota=auth.quota, work_limit=s.tenant_work_limit,
                         work_burst=s.tenant_work_burst, shared=shared)
        return cls(auth, s.tenant_visibility, fair)

    @property
    def enforcing(self) -> bool:
        return self.auth.enabled

    @property
    def hides(self) -> bool:
        """Whether some caller may not see some device (``tenant_visibility=own``)."""
        return self.enforcing and self.visibility != "all"

    def owner_for(self, caller: Caller) -> str | None:
        """The owner recorded for a device ``caller`` registers (none on an open server)."""
        return caller.tenant if self.enforcing and caller.authenticated else None

    def may_write(self, caller: Caller, owner: str | None) -> bool:
        if not self.enforcing or caller.admin:
            return True
        return bool(owner) and caller.authenticated and owner == caller.tenant

    def required_owner(self, caller: Caller) -> str | None:
        """What the registry must find as the device's owner for this caller's write to go
        through (checked again in the write's transaction); None = anyone's device."""
        if not self.enforcing or caller.admin:
            return None
        return caller.tenant

    def may_see(self, caller: Caller, owner: str | None) -> bool:
        if self.visibility == "all" or not self.enforcing or caller.admin or not owner:
            return True
        return caller.authenticated and owner == caller.tenant

    def check_write(self, caller: Caller, full_name: str, owner: str | None) -> None:
        if not self.may_write(caller, owner):
            whose = "another tenant" if owner else "no tenant (read-only; admins only)"
            raise PermissionDenied(
                f"tenant '{caller.tenant}' may not change device '{full_name}': it belongs to "
                f"{whose}"
            )


def audit(caller: Caller | None, rpc: str, device: str, code: str) -> None:
    """One structured line per write RPC: tenant, RPC, device, result. Never a token."""
    tenant = caller.tenant if caller is not None else "-"
    audit_log.info(
        "audit tenant=%s rpc=%s device=%s code=%s", tenant, rpc, device or "-", code,
        extra={
            "audit": True, "tenant": tenant, "admin": bool(caller and caller.admin),
            "rpc": rpc, "device": device, "code": code,
        },
    )


def visible(items: Sequence[Any], caller: Caller, tenancy: Tenancy) -> list[Any]:
    """Items (with an ``owner``) that ``caller`` may see."""
    return [d for d in items if tenancy.may_see(caller, getattr(d, "owner", None))]
