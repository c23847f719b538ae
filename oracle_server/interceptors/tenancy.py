"""The tenant steps (``oracle_server.tenants``): who is calling, its fair share, the audit.

They run before the request body is received (unary oracle RPCs are served as
request-streaming, so the handler runs on the call's headers): a refused call costs no
decoding and holds no worker thread while its bytes arrive.
"""

from __future__ import annotations

import time
from typing import Any

from client_sdk.errors import DEVICE_RE, Unauthenticated
from oracle_server import metrics
from oracle_server.interceptors.chain import WORK_METHODS, WRITE_METHODS, Call, Proceed
from oracle_server.interceptors.errors import code_of
from oracle_server.interceptors.requests import shown
from oracle_server.tenants import (
    ANONYMOUS_CALLER,
    Authenticator,
    FairShare,
    audit,
    reset_caller,
    set_caller,
)


class Authentication:
    """Step: the caller's tenant from its bearer token (hashed tokens, constant-time
    comparison), required for write RPCs, or for every oracle RPC when configured; the
    caller is handed to the servicer through a context variable (``current_caller``)."""

    def __init__(
        self,
        auth: Authenticator,
        read_token_required: bool = False,
    ) -> None:
        self.auth = auth
        self.read_token_required = read_token_required

    def __call__(self, call: Call, proceed: Proceed) -> Any:
        caller = call.caller = self.auth.identify(call.context.invocation_metadata())
        needs_token = self.auth.enabled and (
            call.method in WRITE_METHODS or self.read_token_required
        )
        if needs_token and not caller.authenticated:
            raise Unauthenticated("this RPC needs 'authorization: Bearer <token>' metadata")
        token = set_caller(caller)
        try:
            return proceed(call)
        finally:
            reset_caller(token)


class Admission:
    """Step: the tenant's fair share (concurrency, rate, work): ``RESOURCE_EXHAUSTED`` with
    ``RetryInfo`` when over it; an admitted call's admission (incl. the shared limits' round
    trip) + handling time in ``oracle_tenant_request_seconds{method, tenant}``."""

    def __init__(self, fair_share: FairShare) -> None:
        self.fair_share = fair_share

    def __call__(self, call: Call, proceed: Proceed) -> Any:
        tenant = (call.caller or ANONYMOUS_CALLER).tenant
        fair = self.fair_share
        admit = time.perf_counter()
        fair.acquire(tenant, work=call.method in WORK_METHODS)
        start = time.perf_counter()
        try:
            return proceed(call)
        finally:
            end = time.perf_counter()
            fair.release(tenant, end - start)
            metrics.TENANT_REQUEST_SECONDS.labels(call.method, tenant).observe(end - admit)


class Audit:
    """Step: one audit line per write RPC (tenant, RPC, device, final status code), whether
    it succeeded, was refused or failed; ``-`` for a tenant or device not known."""

    def __call__(self, call: Call, proceed: Proceed) -> Any:
        if call.method not in WRITE_METHODS:
            return proceed(call)
        code = "OK"
        try:
            return proceed(call)
        except Exception as exc:
            code = code_of(call.context, exc)
            raise
        finally:
            audit(call.caller, call.method, device_of(call.request), code)


def device_of(request: Any) -> str:
    """``space/name`` of a write request for the audit line (ASCII-safe, bounded)."""
    if request is None:
        return ""
    name, space = getattr(request, "name", ""), getattr(request, "space", "")
    full = name if "/" in name or not space else f"{space}/{name}"
    return full if DEVICE_RE.match(full) else shown(full)
