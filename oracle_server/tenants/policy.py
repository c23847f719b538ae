"""Policy: device ownership and visibility for one server (``Tenancy``, which also holds its
authenticator and fair share), and the audit line of a write RPC. See
``oracle_server.tenants``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from client_sdk.errors import PermissionDenied
from oracle_server.tenants.auth import Authenticator, Caller
from oracle_server.tenants.fair_share import FairShare

audit_log = logging.getLogger("oracle_server.audit")

VISIBILITIES = ("all", "own")


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
        fair = FairShare(
            s.tenant_max_concurrent_rpcs,
            s.tenant_rate_limit,
            s.tenant_burst,
            quota=auth.quota,
            work_limit=s.tenant_work_limit,
            work_burst=s.tenant_work_burst,
            shared=shared,
        )
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
        "audit tenant=%s rpc=%s device=%s code=%s",
        tenant,
        rpc,
        device or "-",
        code,
        extra={
            "audit": True,
            "tenant": tenant,
            "admin": bool(caller and caller.admin),
            "rpc": rpc,
            "device": device,
            "code": code,
        },
    )


def visible(items: Sequence[Any], caller: Caller, tenancy: Tenancy) -> list[Any]:
    """Items (with an ``owner``) that ``caller`` may see."""
    return [d for d in items if tenancy.may_see(caller, getattr(d, "owner", None))]
