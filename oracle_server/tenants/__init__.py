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
(``client_sdk.errors.Overloaded``). The limits themselves live in ``fair_share``
(in memory per replica, or shared by all replicas through Redis: ``oracle_server.limits``).

Modules: ``tokens`` (the tokens file, hashed tokens), ``auth`` (token -> ``Caller``, the
caller of the running RPC), ``fair_share`` (per-tenant limits), ``policy`` (ownership,
visibility, the audit line). The names used elsewhere are re-exported here.
"""

from oracle_server.tenants.auth import (
    ANONYMOUS_CALLER,
    MAX_TOKEN_CHARS,
    Authenticator,
    Caller,
    current_caller,
    reset_caller,
    set_caller,
)
from oracle_server.tenants.fair_share import FairShare, Quota, bucket_size
from oracle_server.tenants.policy import VISIBILITIES, Tenancy, audit, audit_log, visible
from oracle_server.tenants.tokens import (
    ANONYMOUS,
    LEGACY_TENANT,
    TokenEntry,
    TokenTable,
    hash_token,
    legacy_entry,
    load_tokens_file,
    parse_tokens,
)

__all__ = [
    "ANONYMOUS",
    "ANONYMOUS_CALLER",
    "LEGACY_TENANT",
    "MAX_TOKEN_CHARS",
    "VISIBILITIES",
    "Authenticator",
    "Caller",
    "FairShare",
    "Quota",
    "Tenancy",
    "TokenEntry",
    "TokenTable",
    "audit",
    "audit_log",
    "bucket_size",
    "current_caller",
    "hash_token",
    "legacy_entry",
    "load_tokens_file",
    "parse_tokens",
    "reset_caller",
    "set_caller",
    "visible",
]
