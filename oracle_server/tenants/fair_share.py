"""Fair share: per-tenant concurrency, call-rate and work limits.

Each tenant has a concurrency limit (its RPCs in flight on this replica), a call-rate token
bucket (cost 1 per RPC) and a work token bucket (cost = Rank architectures x devices, which
may run into debt by one call), on top of grpc's global admission limit; 0 = unlimited.
A tenant's quota (tokens file) overrides the server-wide settings.

Where the buckets live:

* in memory, per replica (the default, and the embedded single-replica case): behind N
  replicas a tenant gets up to N times its rate and work share;
* in Redis, shared by every replica (``--limits-url redis://...``,
  :class:`oracle_server.limits.SharedLimits`): one atomic Lua script per admission (and one
  per Rank's work charge), so the rate and work limits hold cluster-wide. If Redis cannot
  be reached the call is decided by the in-memory buckets instead (fail-open to the
  per-replica limits, counted in ``oracle_limits_fail_open_total``): reads never fail
  because of the limits backend.

The concurrency limit stays per replica in both modes: it protects a replica's worker
threads (a tenant at its limit cannot occupy a replica's workers whatever the others do),
which is a per-replica resource; a cluster-wide counter would let one tenant's whole
allowance land on one replica and block others there. See docs/security.md.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from client_sdk.errors import Overloaded
from oracle_server import metrics

if TYPE_CHECKING:  # pragma: no cover
    from oracle_server.limits import SharedLimits


@dataclass(frozen=True)
class Quota:
    """A tenant's fair share; ``None`` = the server-wide setting, 0 = unlimited."""

    max_concurrent_rpcs: int | None = None
    rate_limit: float | None = None
    burst: int | None = None
    work_limit: float | None = None
    work_burst: int | None = None


@dataclass
class _Bucket:
    """A token bucket's balance (< 0: in debt, the work bucket only); full when first used."""

    balance: float = 0.0
    refilled: float = 0.0

    def refill(self, now: float, rate: float, size: float) -> float:
        if self.refilled == 0.0:
            self.balance, self.refilled = size, now
        self.balance = min(size, self.balance + (now - self.refilled) * rate)
        self.refilled = now
        return self.balance


def bucket_size(burst: float, rate: float) -> float:
    """A bucket of ``burst``, or (0) one second of ``rate``, at least 1."""
    return float(burst) if burst else max(1.0, math.ceil(rate))




@dataclass
class _TenantState:
    in_flight: int = 0
    calls: _Bucket = field(default_factory=_Bucket)  # call-rate tokens
    mean_s: float = 0.0  # EWMA of the tenant's RPC durations (for RetryInfo)
    next_retry: float = 0.0  # when the last refused caller was told to come back
    work: _Bucket = field(default_factory=_Bucket)  # architectures x devices
    mean_cost: float = 0.0  # EWMA of the tenant's charged work per call (for RetryInfo)
    work_next_retry: float = 0.0


class FairShare:
    """Per-tenant concurrency, call-rate and work limits; 0 = unlimited.

    The work limit is a token bucket of architectures x devices per second that a call may
    overdraw: a Rank is admitted while the tenant's balance is positive and then charged its
    exact cost (known once its request is parsed, :meth:`charge`), so the balance can go
    into debt by at most the calls in flight, and the tenant is refused until the debt is
    paid back at its rate. The long-run rate is the limit, whatever the calls' sizes, and
    admission needs no cost estimate: it is decided before the request body is read.

    ``shared``: the rate and work buckets live in Redis (shared by all replicas); the
    in-memory buckets then decide only while Redis is unreachable (fail-open).
    """

    MIN_RETRY_S = 0.01
    MAX_RETRY_S = 30.0
    DEFAULT_RETRY_S = 0.5

    def __init__(
        self,
        max_concurrent_rpcs: int = 0,
        rate_limit: float = 0.0,
        burst: int = 0,
        quota: Callable[[str], Quota | None] = lambda _tenant: None,
        clock: Callable[[], float] = time.monotonic,
        work_limit: float = 0.0,
        work_burst: int = 0,
        shared: SharedLimits | None = None,
    ) -> None:
        self.max_concurrent_rpcs = max_concurrent_rpcs
        self.rate_limit = rate_limit
        self.burst = burst
        self.work_limit = work_limit
        self.work_burst = work_burst
        self.shared = shared
        self._quota = quota
        self._clock = clock
        self._lock = threading.Lock()
        self._tenants: dict[str, _TenantState] = {}

    def limits(self, tenant: str) -> tuple[int, float, float]:
        """(max concurrent, rate per s, bucket size) for ``tenant``."""
        q = self._quota(tenant) or Quota()
        conc = self.max_concurrent_rpcs if q.max_concurrent_rpcs is None else q.max_concurrent_rpcs
        rate = self.rate_limit if q.rate_limit is None else q.rate_limit
        burst = self.burst if q.burst is None else q.burst
        return conc, rate, bucket_size(burst, rate)

    def work_limits(self, tenant: str) -> tuple[float, float]:
        """(architectures x devices per s, bucket size) for ``tenant``; (0, 0) = unlimited."""
        q = self._quota(tenant) or Quota()
        rate = self.work_limit if q.work_limit is None else q.work_limit
        burst = self.work_burst if q.work_burst is None else q.work_burst
        if not rate:
            return 0.0, 0.0
        return rate, bucket_size(burst, rate)

    # ------------------------------------------------------------------ admission
    def acquire(self, tenant: str, work: bool = False) -> None:
        """Take a slot for one RPC of ``tenant`` or raise ``Overloaded`` (with retry_after).

        ``work``: the RPC will be charged work (:meth:`charge`), so the work limit applies."""
        conc, rate, size = self.limits(tenant)
        wrate, wsize = self.work_limits(tenant) if work else (0.0, 0.0)
        with self._lock:
            state = self._state(tenant)
            if conc and state.in_flight >= conc:
                # A virtual queue: refused callers are told to come back one per expected
                # slot release (the tenant's mean RPC time / its limit), in turn, so their
                # retries arrive about when slots free up instead of all at once.
                now = self._clock()
                step = (state.mean_s or self.DEFAULT_RETRY_S) / conc
                state.next_retry = min(max(now, state.next_retry) + step, now + self.MAX_RETRY_S)
                self._reject(tenant, "concurrency")
                raise Overloaded(
                    f"tenant '{tenant}' is at its limit of {conc} concurrent RPCs; retry later",
                    retry_after=self._clamp(state.next_retry - now),
                )
            state.in_flight += 1  # the slot is held while the buckets are checked
        if not rate and not wrate:
            return
        try:
            if self.shared is None or not self._shared_admit(
                tenant, state, rate, size, wrate, wsize
            ):
                with self._lock:
                    self._local_admit(tenant, state, rate, size, wrate, wsize)
        except BaseException:
            with self._lock:
                state.in_flight = max(0, state.in_flight - 1)
            raise

    def _local_admit(
        self, tenant: str, state: _TenantState, rate: float, size: float, wrate: float, wsize: float
    ) -> None:
        """The in-memory buckets (held: ``self._lock``)."""
        if wrate:
            balance = state.work.refill(self._clock(), wrate, wsize)
            if balance <= 0.0:
                self._refuse_work(tenant, state, balance, wrate, wsize)
        if rate:
            tokens = state.calls.refill(self._clock(), rate, size)
            if tokens < 1.0:
                self._refuse_rate(tenant, tokens, rate)
            state.calls.balance -= 1.0

    def _shared_admit(
        self, tenant: str, state: _TenantState, rate: float, size: float, wrate: float, wsize: float
    ) -> bool:
        """The shared buckets: True = admitted, False = backend unavailable (decide locally),
        ``Overloaded`` = refused. One round trip, the work check and the rate token atomic."""
        from oracle_server.limits import ADMIT, TAKE, BucketSpec

        assert self.shared is not None
        specs = []
        if wrate:
            specs.append(BucketSpec("work", wrate, wsize, 0.0, ADMIT))
        if rate:
            specs.append(BucketSpec("rate", rate, size, 1.0, TAKE))
        decision = self.shared.run(tenant, specs, "admit")
        if decision is None:
            metrics.LIMITS_FAIL_OPEN.labels("admit").inc()
            return False
        if decision.refused == "work":
            with self._lock:
                self._refuse_work(tenant, state, decision.balances["work"], wrate, wsize)
        if decision.refused == "rate":
            self._refuse_rate(tenant, decision.balances["rate"], rate)
        return True

    def _refuse_work(
        self, tenant: str, state: _TenantState, balance: float, wrate: float, wsize: float
    ) -> None:
        # The same virtual queue: the first refused caller comes back when the debt is
        # paid, the next one a mean call's cost later, and so on.
        now = self._clock()
        step = (state.mean_cost or wsize) / wrate
        state.work_next_retry = min(
            max(now - balance / wrate, state.work_next_retry + step),
            now + self.MAX_RETRY_S,
        )
        self._reject(tenant, "work")
        raise Overloaded(
            f"tenant '{tenant}' is over its work limit of {wrate:g} architectures "
            "x devices per second; retry later",
            retry_after=self._clamp(state.work_next_retry - now),
        )

    def _refuse_rate(self, tenant: str, tokens: float, rate: float) -> None:
        self._reject(tenant, "rate")
        raise Overloaded(
            f"tenant '{tenant}' is over its rate limit of {rate:g} RPCs/s; retry later",
            retry_after=self._clamp((1.0 - tokens) / rate),
        )

    def release(self, tenant: str, seconds: float) -> None:
        with self._lock:
            state = self._state(tenant)
            state.in_flight = max(0, state.in_flight - 1)
            state.mean_s = seconds if not state.mean_s else 0.8 * state.mean_s + 0.2 * seconds

    def charge(self, tenant: str, cost: float) -> None:
        """Charge ``tenant`` the work of an admitted call (architectures x devices)."""
        if cost <= 0:
            return
        metrics.TENANT_WORK.labels(tenant).inc(cost)
        wrate, wsize = self.work_limits(tenant)
        if not wrate:
            return
        with self._lock:
            state = self._state(tenant)
            state.mean_cost = cost if not state.mean_cost else 0.8 * state.mean_cost + 0.2 * cost
        if self.shared is not None:
            from oracle_server.limits import CHARGE, BucketSpec

            spec = BucketSpec("work", wrate, wsize, float(cost), CHARGE)
            if self.shared.run(tenant, [spec], "charge") is not None:
                return
            metrics.LIMITS_FAIL_OPEN.labels("charge").inc()
        with self._lock:
            state.work.refill(self._clock(), wrate, wsize)
            state.work.balance -= cost

    def work_balance(self, tenant: str) -> float:
        """The tenant's in-memory work bucket now (negative: in debt); 0 without a work
        limit. With shared limits this is the fail-open bucket, not the shared one."""
        wrate, wsize = self.work_limits(tenant)
        if not wrate:
            return 0.0
        with self._lock:
            return self._state(tenant).work.refill(self._clock(), wrate, wsize)

    def in_flight(self, tenant: str) -> int:
        with self._lock:
            state = self._tenants.get(tenant)
            return state.in_flight if state else 0

    def _state(self, tenant: str) -> _TenantState:
        state = self._tenants.get(tenant)
        if state is None:
            state = self._tenants[tenant] = _TenantState()
        return state

    def _clamp(self, seconds: float) -> float:
        return round(min(self.MAX_RETRY_S, max(self.MIN_RETRY_S, seconds)), 3)

    @staticmethod
    def _reject(tenant: str, limit: str) -> None:
        metrics.TENANT_THROTTLED.labels(tenant, limit).inc()
