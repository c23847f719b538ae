"""The tokens file: tenant -> hashed bearer tokens (with optional expiry, admin flag and
quota), its parsing and validation (errors name the tenant and key, never a hash or a token),
and the constant-time match of a presented token. See ``oracle_server.tenants``."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client_sdk.errors import NAME_RE
from oracle_server.tenants.fair_share import Quota

ANONYMOUS = "anonymous"
#: The tenant the legacy single ``write_token`` stands for (an admin).
LEGACY_TENANT = "admin"
_HEX_CHARS = {"sha256": 64, "sha512": 128}
_HASH_RE = re.compile(r"^(?:(sha256|sha512):)?([0-9a-fA-F]+)$")
_QUOTA_KEYS = ("max_concurrent_rpcs", "rate_limit", "burst", "work_limit", "work_burst")
_RATE_KEYS = frozenset({"rate_limit", "work_limit"})  # numbers; the other quotas are integers
_ENTRY_KEYS = frozenset({"sha256", "sha512", "hash", "admin", "expires", *_QUOTA_KEYS})


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
                    f"{_where(source, tenant)}: a token hash is listed twice"
                    if other == tenant
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
