"""Tenant limits shared by all replicas: token buckets with cost in Redis (``--limits-url``).

One atomic Lua script (:data:`BUCKETS_LUA`) checks and updates a tenant's buckets in one
round trip, on the Redis server's clock (``TIME`` inside the script, so replicas' clocks do
not matter). A bucket is a hash ``{b: balance, t: refilled at (s)}`` that expires once it
would be full again (absent = full), under the key::

    <prefix>{<tenant>}:rate     call-rate bucket, cost 1 per RPC
    <prefix>{<tenant>}:work     work bucket, cost = Rank architectures x devices (may go
                                into debt: admitted while > 0, charged once the cost is known)

``<prefix>`` is ``oracle:limits:`` unless the URL says ``?prefix=...``; the tenant is in a
hash tag so a tenant's keys share one Redis Cluster slot. Each bucket in a call has a mode:

* ``TAKE``: needs ``balance >= cost`` and takes it (the rate bucket: cost 1);
* ``ADMIT``: needs ``balance > 0`` and takes nothing (the work bucket at admission);
* ``CHARGE``: takes ``cost`` unconditionally, debt allowed (the work charge of a Rank).

All-or-nothing: if one bucket refuses, none changes. The limits (rate, size) are sent with
each call, so a tokens-file change applies on the next call.

Failure: any Redis error (refused connection, timeout, auth, script error) makes
:meth:`SharedLimits.run` return ``None``: the caller (``FairShare``) decides with its
per-replica in-memory buckets (fail-open), counted in ``oracle_limits_fail_open_total``.
The backend is then marked down (``oracle_limits_backend_up{backend="redis"} 0``,
``oracle_limits_backend_errors_total``) and retried after a backoff (0.1 s doubling to 5 s)
by one call at a time, so an outage costs no call more than a failed connect. One warning
per minute at most; no log line carries the URL's password (only the redacted URL).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from oracle_server import metrics
from oracle_server.settings import redact_url

log = logging.getLogger(__name__)

TAKE, ADMIT, CHARGE = 0, 1, 2
DEFAULT_PREFIX = "oracle:limits:"
SCHEMES = ("redis", "rediss", "unix")
#: Loopback or in-cluster Redis answers in well under a millisecond; a call that takes
#: longer than this fails open instead of stalling the RPC.
SOCKET_TIMEOUT_S = 0.25
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
LOG_EVERY_S = 60.0

BUCKETS_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = #KEYS
local bal = {}
local refused = 0
for i = 1, n do
  local rate = tonumber(ARGV[4 * i - 3])
  local size = tonumber(ARGV[4 * i - 2])
  local cost = tonumber(ARGV[4 * i - 1])
  local mode = tonumber(ARGV[4 * i])
  local v = redis.call('HMGET', KEYS[i], 'b', 't')
  local b, ts = tonumber(v[1]), tonumber(v[2])
  if b == nil or ts == nil then
    b = size
  else
    b = math.min(size, b + math.max(0, now - ts) * rate)
  end
  bal[i] = b
  if refused == 0 and ((mode == 0 and b < cost) or (mode == 1 and b <= 0)) then
    refused = i
  end
end
local out = {refused}
for i = 1, n do
  local rate = tonumber(ARGV[4 * i - 3])
  local size = tonumber(ARGV[4 * i - 2])
  local cost = tonumber(ARGV[4 * i - 1])
  local mode = tonumber(ARGV[4 * i])
  local b = bal[i]
  if refused == 0 and mode ~= 1 then
    b = b - cost
    redis.call('HSET', KEYS[i], 'b', tostring(b), 't', tostring(now))
    local ttl = math.min(math.ceil((size - b) / rate * 1000) + 1000, 2592000000)
    redis.call('PEXPIRE', KEYS[i], ttl)  -- full again then (absent = full); at most 30 days
  end
  out[i + 1] = tostring(b)
end
return out
"""


class LimitsConfigError(ValueError):
    """A ``--limits-url`` that cannot work (malformed, or credentials refused): exit 2."""


@dataclass(frozen=True)
class BucketSpec:
    """One bucket of a call: its name (``rate``/``work``), limit, size, cost and mode."""

    name: str
    rate: float
    size: float
    cost: float
    mode: int


@dataclass(frozen=True)
class Decision:
    """A shared decision: the refusing bucket's name (None = admitted) and every bucket's
    balance after the call (before it, for a refusal)."""

    refused: str | None
    balances: dict[str, float]


def parse_limits_url(url: str) -> tuple[str, str]:
    """(the URL for redis-py, the key prefix); ``LimitsConfigError`` naming what is wrong,
    never the URL's password."""
    shown = redact_url(url)
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # ValueError when out of range or not a number
    except ValueError as exc:
        raise LimitsConfigError(f"limits_url {shown!r} is not a valid URL ({exc})") from None
    if parts.scheme not in SCHEMES:
        raise LimitsConfigError(
            f"limits_url {shown!r}: the scheme must be redis://, rediss:// or unix:// "
            "(e.g. redis://redis:6379/0)"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise LimitsConfigError(f"limits_url {shown!r}: no socket path")
    elif not parts.hostname:
        raise LimitsConfigError(f"limits_url {shown!r}: no host (e.g. redis://redis:6379/0)")
    if parts.scheme != "unix" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise LimitsConfigError(f"limits_url {shown!r}: the path must be a database number")
    del port
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    prefix = DEFAULT_PREFIX
    rest = []
    for key, value in query:
        if key == "prefix":
            prefix = value
        else:
            rest.append((key, value))
    if not prefix or len(prefix) > 64 or not prefix.isprintable() or " " in prefix:
        raise LimitsConfigError(
            f"limits_url {shown!r}: 'prefix' must be 1-64 printable characters without spaces"
        )
    from redis.connection import URL_QUERY_ARGUMENT_PARSERS, parse_url

    known = {*URL_QUERY_ARGUMENT_PARSERS, "db", "password", "username", "client_name"}
    unknown = sorted({k for k, _ in rest if k not in known and not k.startswith("ssl_")})
    if unknown:
        raise LimitsConfigError(
            f"limits_url {shown!r}: unknown query parameter(s) {', '.join(unknown)} (known: "
            f"prefix, {', '.join(sorted(known))})"
        )
    base = url.split("?", 1)[0].split("#", 1)[0]
    clean = base + ("?" + urllib.parse.urlencode(rest) if rest else "")
    try:
        parse_url(clean)
    except (ValueError, TypeError) as exc:  # e.g. socket_timeout=abc
        detail = str(exc).replace(parts.password or "\0", "***")
        raise LimitsConfigError(f"limits_url {shown!r}: {detail[:160]}") from None
    return clean, prefix


def _is_auth_error(exc: BaseException) -> bool:
    from redis import exceptions as rex

    kinds = tuple(getattr(rex, name) for name in
                  ("AuthenticationError", "AuthorizationError", "NoPermissionError",
                   "AuthenticationWrongNumberOfArgsError") if hasattr(rex, name))
    return isinstance(exc, kinds)


class SharedLimits:
    """Per-tenant token buckets in Redis, shared by every replica that uses the same URL and
    prefix. Thread-safe (redis-py's connection pool); ``run`` never raises a Redis error."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = SOCKET_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        log_every_s: float = LOG_EVERY_S,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        clean, self.prefix = parse_limits_url(url)
        self.url = redact_url(url)  # the only form of the URL kept for logs
        parts = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        self._secrets = [x for x in (parts.password, query.get("password"))
                         if x]
        try:
            pool = redis.ConnectionPool.from_url(
                clean, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0), health_check_interval=0,
            )
        except (ValueError, TypeError) as exc:  # an unknown or bad query argument
            raise LimitsConfigError(
                f"limits_url {self.url!r}: {self._scrub(str(exc))}") from None
        self.client = redis.Redis(connection_pool=pool)
        self._script = self.client.register_script(BUCKETS_LUA)
        self._clock = clock
        self._log_every_s = log_every_s
        self._lock = threading.Lock()
        self.up = True
        self._retry_at = 0.0
        self._backoff = BACKOFF_MIN_S
        self._probing = False
        self._logged_at = -float("inf")
        self._up_gauge = metrics.LIMITS_BACKEND_UP.labels("redis")
        self._up_gauge.set(1)

    def key(self, tenant: str, bucket: str) -> str:
        return f"{self.prefix}{{{tenant}}}:{bucket}"

    # ----------------------------------------------------------------- start-up
    def check(self) -> bool:
        """At start-up: load the script. Credentials refused -> ``LimitsConfigError``;
        unreachable -> False (the server starts and fails open until Redis answers)."""
        try:
            self.client.script_load(BUCKETS_LUA)
        except Exception as exc:
            if _is_auth_error(exc):
                metrics.LIMITS_BACKEND_ERRORS.labels("check").inc()
                raise LimitsConfigError(
                    f"limits_url {self.url!r}: Redis refused the credentials "
                    f"({type(exc).__name__}: {self._scrub(str(exc))[:160]})"
                ) from None
            self._failed("check", exc)
            return False
        return True

    # ------------------------------------------------------------------ buckets
    def run(self, tenant: str, specs: Sequence[BucketSpec], operation: str) -> Decision | None:
        """Apply ``specs`` to ``tenant``'s buckets atomically; None = the backend is
        unavailable (decide locally)."""
        if not specs:
            return Decision(None, {})
        if not self._may_try():
            return None
        keys = [self.key(tenant, s.name) for s in specs]
        args: list[Any] = []
        for s in specs:
            args += [repr(float(s.rate)), repr(float(s.size)), repr(float(s.cost)), s.mode]
        try:
            out = self._script(keys=keys, args=args)
        except Exception as exc:  # redis errors, and anything odd: never fail the RPC
            self._failed(operation, exc)
            return None
        self._succeeded()
        index = int(out[0])
        balances = {s.name: float(v) for s, v in zip(specs, out[1:], strict=True)}
        return Decision(specs[index - 1].name if index else None, balances)

    def _may_try(self) -> bool:
        if self.up:
            return True
        with self._lock:  # down: one caller at a time probes, once the backoff has passed
            if self.up:
                return True
            if self._probing or self._clock() < self._retry_at:
                return False
            self._probing = True
            return True

    def _succeeded(self) -> None:
        if self.up:
            return
        with self._lock:
            was_down = not self.up
            self.up, self._probing, self._backoff = True, False, BACKOFF_MIN_S
        if was_down:
            self._up_gauge.set(1)
            log.warning("shared limits backend reachable again; shared limits enforced",
                        extra={"limits_url": self.url})

    def _failed(self, operation: str, exc: BaseException) -> None:
        metrics.LIMITS_BACKEND_ERRORS.labels(operation).inc()
        now = self._clock()
        with self._lock:
            if self.up:
                self._backoff = BACKOFF_MIN_S
            else:
                self._backoff = min(BACKOFF_MAX_S, self._backoff * 2)
            self.up, self._probing = False, False
            self._retry_at = now + self._backoff
            say = now - self._logged_at >= self._log_every_s
            if say:
                self._logged_at = now
        self._up_gauge.set(0)
        if say:
            log.warning(
                "shared limits backend unreachable: per-replica limits apply (fail-open) "
                "until it answers", extra={
                    "limits_url": self.url, "operation": operation,
                    "error": f"{type(exc).__name__}: {self._scrub(str(exc))[:200]}",
                    "retry_in_s": round(self._backoff, 3),
                })

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def close(self) -> None:
        self.client.close()
