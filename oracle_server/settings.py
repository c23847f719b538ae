"""One typed settings object, from defaults < ``ORACLE_*`` environment variables < flags."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "ORACLE_"


class SettingError(ValueError):
    """A setting the server cannot start with (a bad tokens file, Redis refusing the limits'
    credentials, ...): ``oracle-server serve`` prints it and exits 2. Any other exception
    at start-up is a bug and keeps its traceback."""


@dataclass(frozen=True)
class Settings:
    """Server settings. Each field ``x`` is also env var ``ORACLE_X`` and flag ``--x``."""

    host: str = field(default="0.0.0.0", metadata={"help": "address to bind"})
    port: int = field(default=50051, metadata={"help": "gRPC port (0 = pick a free one)"})
    metrics_port: int = field(
        default=9464, metadata={"help": "Prometheus /metrics HTTP port (0 = any, -1 = off)"}
    )
    data_dir: Path = field(
        default=Path(".oracle"), metadata={"help": "writable folder: SQLite file, proxy cache"}
    )
    cache_dir: str = field(
        default="", metadata={"help": "proxy artifact cache (default <data_dir>/cache)"}
    )
    database_url: str = field(
        default="",
        repr=False,
        metadata={"help": "SQLAlchemy URL (default: sqlite:///<data_dir>/registry.db)"},
    )
    workers: int = field(default=8, metadata={"help": "gRPC worker threads"})
    max_concurrent_rpcs: int = field(
        default=64, metadata={"help": "admission limit; further RPCs get RESOURCE_EXHAUSTED"}
    )
    max_batch: int = field(default=1_000_000, metadata={"help": "max architectures per Rank"})
    max_devices_per_request: int = field(default=64, metadata={"help": "max devices per Rank"})
    max_message_bytes: int = field(
        default=64 * 1024 * 1024, metadata={"help": "max gRPC message size (both ways)"}
    )
    max_measurements: int = field(default=10_000, metadata={"help": "max measurements per device"})
    holdout_devices: tuple[str, ...] = field(
        default=(), metadata={"help": "comma list of table devices the proxy must not see"}
    )
    grace_s: float = field(default=10.0, metadata={"help": "drain period on SIGTERM (seconds)"})
    request_read_timeout_s: float = field(
        default=30.0,
        metadata={
            "help": "a call whose request message has not fully arrived this long after "
            "its headers is cancelled, freeing its worker (0 = never)"
        },
    )
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING, ERROR"})
    log_format: str = field(default="json", metadata={"help": "json or text"})
    reflection: bool = field(default=True, metadata={"help": "enable gRPC server reflection"})
    sync_interval_s: float = field(
        default=0.5, metadata={"help": "how often to pick up other replicas' registry changes"}
    )
    request_id_ttl_s: float = field(
        default=86_400.0,
        metadata={"help": "how long write request ids are remembered (retries deduplicated)"},
    )
    write_token: str = field(
        default="",
        repr=False,
        metadata={"help": "bearer token required for write RPCs (empty = open)"},
    )
    read_token_required: bool = field(
        default=False, metadata={"help": "require a token for read RPCs too"}
    )
    tokens_file: str = field(
        default="",
        metadata={
            "help": "tenants' token hashes, YAML/JSON/TOML (see docs/security.md); empty = none"
        },
    )
    tokens_reload_s: float = field(
        default=10.0,
        metadata={"help": "re-read a changed tokens file at most this often (0 = never)"},
    )
    tenant_visibility: str = field(
        default="all",
        metadata={
            "help": "'all': tenants see each other's devices; 'own': only their own "
            "(and unowned ones)"
        },
    )
    tenant_max_concurrent_rpcs: int = field(
        default=0, metadata={"help": "per-tenant concurrent RPC limit (0 = none)"}
    )
    tenant_rate_limit: float = field(
        default=0.0, metadata={"help": "per-tenant RPCs per second, token bucket (0 = none)"}
    )
    tenant_burst: int = field(
        default=0, metadata={"help": "per-tenant token bucket size (0 = ceil(rate), at least 1)"}
    )
    tenant_work_limit: float = field(
        default=0.0,
        metadata={
            "help": "per-tenant Rank work per second: architectures x devices, token "
            "bucket (0 = none)"
        },
    )
    tenant_work_burst: int = field(
        default=0,
        metadata={
            "help": "per-tenant work bucket size, architectures x devices (0 = one "
            "second of tenant_work_limit)"
        },
    )
    limits_url: str = field(
        default="",
        repr=False,
        metadata={
            "help": "share the tenants' rate and work limits between replicas through "
            "Redis: redis://[:password@]host:6379/0[?prefix=oracle:limits:] "
            "(empty = in memory, per replica; Redis down = per-replica limits)"
        },
    )
    tls_cert: str = field(default="", metadata={"help": "server certificate (PEM file)"})
    tls_key: str = field(default="", metadata={"help": "server private key (PEM file)"})
    tls_client_ca: str = field(
        default="", metadata={"help": "CA bundle; when set, clients must present a certificate"}
    )
    malloc_tuning: bool = field(
        default=True,
        metadata={"help": "keep multi-MB message buffers on the glibc heap (faster big Ranks)"},
    )
    rank_threads: int = field(
        default=2,
        metadata={"help": "threads evaluating one Rank's proxy tables (open spaces); 1 = none"},
    )
    large_call_work: int = field(
        default=20_000,
        metadata={
            "help": "a Rank of more work (architectures x devices) computes in chunks "
            "and waits between them while smaller calls are in flight, up to "
            "50 ms per chunk (0 = off; docs/operations.md)"
        },
    )
    gil_switch_interval_ms: float = field(
        default=5.0,
        metadata={
            "help": "CPython's GIL switch interval (sys.setswitchinterval) in ms, set "
            "at start: how long a thread holding the GIL keeps it when another "
            "waits"
        },
    )
    spaces: tuple[str, ...] = field(
        default=("nasbench201", "fbnet", "ofa_mbv3", "mobilenetv2", "proxyless"),
        metadata={
            "help": "search spaces to serve: bundled ones and space definitions "
            "(client_sdk/spaces/definitions)"
        },
    )

    def __post_init__(self) -> None:
        """Reject inconsistent settings at start-up (``oracle-server`` exits 2 on them)."""
        for name in (
            "workers",
            "max_concurrent_rpcs",
            "max_batch",
            "max_devices_per_request",
            "max_message_bytes",
            "max_measurements",
            "rank_threads",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.port <= 65535 or not -1 <= self.metrics_port <= 65535:
            raise ValueError("port/metrics_port out of range")
        if self.grace_s < 0 or self.sync_interval_s <= 0:
            raise ValueError("grace_s must be >= 0 and sync_interval_s > 0")
        if not 0 <= self.request_read_timeout_s < float("inf"):
            raise ValueError("request_read_timeout_s must be >= 0 and finite (0 = never)")
        if self.request_id_ttl_s <= 0:
            raise ValueError("request_id_ttl_s must be > 0")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key must be given together")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        if self.read_token_required and not (self.write_token or self.tokens_file):
            raise ValueError("read_token_required needs write_token or tokens_file")
        if self.write_token and (
            any(c in self.write_token for c in " \t\r\n") or not self.write_token.isprintable()
        ):
            raise ValueError("write_token must be printable with no whitespace")
        self._check_tenants()
        if self.large_call_work < 0:
            raise ValueError(f"large_call_work must be >= 0 (0 = off), got {self.large_call_work}")
        if not (math.isfinite(self.gil_switch_interval_ms) and self.gil_switch_interval_ms > 0):
            raise ValueError(
                "gil_switch_interval_ms must be a positive number of milliseconds, got "
                f"{self.gil_switch_interval_ms}"
            )
        if self.log_format not in ("json", "text"):
            raise ValueError(f"log_format must be json or text, got {self.log_format!r}")

    def _check_tenants(self) -> None:
        from oracle_server.tenants import VISIBILITIES, load_tokens_file

        if self.tenant_visibility not in VISIBILITIES:
            raise ValueError(
                f"tenant_visibility must be one of {', '.join(VISIBILITIES)}, got "
                f"{self.tenant_visibility!r}"
            )
        if not 0 <= self.tenant_max_concurrent_rpcs <= self.max_concurrent_rpcs:
            raise ValueError(
                "tenant_max_concurrent_rpcs must be between 0 (off) and max_concurrent_rpcs "
                f"({self.max_concurrent_rpcs}), got {self.tenant_max_concurrent_rpcs}"
            )
        if not (math.isfinite(self.tenant_rate_limit) and self.tenant_rate_limit >= 0):
            raise ValueError(f"tenant_rate_limit must be >= 0, got {self.tenant_rate_limit}")
        if self.tenant_burst < 0:
            raise ValueError(f"tenant_burst must be >= 0, got {self.tenant_burst}")
        if not (math.isfinite(self.tenant_work_limit) and self.tenant_work_limit >= 0):
            raise ValueError(f"tenant_work_limit must be >= 0, got {self.tenant_work_limit}")
        if self.tenant_work_burst < 0:
            raise ValueError(f"tenant_work_burst must be >= 0, got {self.tenant_work_burst}")
        if not (math.isfinite(self.tokens_reload_s) and self.tokens_reload_s >= 0):
            raise ValueError(f"tokens_reload_s must be >= 0, got {self.tokens_reload_s}")
        if self.tokens_file:
            load_tokens_file(self.tokens_file)  # ValueError naming the tenant and key
        if self.limits_url:
            from oracle_server.limits import parse_limits_url

            parse_limits_url(self.limits_url)  # ValueError, the password never shown

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.data_dir).resolve() / 'registry.db'}"

    @property
    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else Path(self.data_dir) / "cache"

    def redacted(self) -> dict[str, Any]:
        """Settings as a dict with secrets masked (safe to log)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "write_token" and value:
                value = "***"
            elif f.name in ("database_url", "limits_url") and value:
                value = redact_url(value)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_SECRET_QUERY = re.compile(r"(?i)((?:^|[?&;])[^=&;]*(?:password|passwd|secret|token|key)=)[^&;]*")


def redact_url(url: str) -> str:
    """Mask the credentials (user:password@) and secret query parameters of a URL."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    tail = _SECRET_QUERY.sub(r"\1***", tail)
    return f"{scheme}://{netloc}{slash}{tail}"


def _convert(name: str, typ: Any, raw: str) -> Any:
    if typ is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{name}: expected a boolean, got {raw!r}")
    if typ is int:
        return int(raw)
    if typ is float:
        return float(raw)
    if typ is Path:
        return Path(raw)
    if typ == tuple[str, ...]:
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    return raw


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per settings field (default None = not given)."""
    hints = get_type_hints(Settings)
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        typ = hints[f.name]
        env_name = ENV_PREFIX + f.name.upper()
        help_text = f"{f.metadata.get('help', '')} (env {env_name}, default {f.default!r})"
        if typ is bool:
            parser.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(flag, dest=f.name, default=None, help=help_text)


def load_settings(
    args: argparse.Namespace | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults, then ``ORACLE_*`` env vars, then parsed flags, then keyword overrides."""
    env = os.environ if env is None else env
    hints = get_type_hints(Settings)
    values: dict[str, Any] = {}
    for f in fields(Settings):
        key = ENV_PREFIX + f.name.upper()
        if key in env:
            values[f.name] = _convert(key, hints[f.name], env[key])
        if args is not None and getattr(args, f.name, None) is not None:
            raw = getattr(args, f.name)
            values[f.name] = (
                raw
                if isinstance(raw, bool)
                else _convert("--" + f.name.replace("_", "-"), hints[f.name], str(raw))
            )
    values.update(overrides)
    return Settings(**values)


def settings_field_names() -> Sequence[str]:
    return [f.name for f in fields(Settings)]
