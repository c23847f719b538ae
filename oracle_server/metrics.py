"""Every Prometheus metric the server exports, defined once.

Standard gRPC server metrics (names as in go-grpc-prometheus / py-grpc-prometheus) plus the
oracle's own ``oracle_*`` metrics. All objects live in one ``CollectorRegistry`` so tests and
several in-process servers do not collide with the global default registry.
"""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

REGISTRY = CollectorRegistry(auto_describe=True)

_RPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

GRPC_STARTED = Counter(
    "grpc_server_started_total", "RPCs started on the server.", _RPC_LABELS, registry=REGISTRY
)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, regardless of success or failure.",
    (*_RPC_LABELS, "grpc_code"),
    registry=REGISTRY,
)
GRPC_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Response latency (seconds) of RPCs handled by the server.",
    _RPC_LABELS,
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
GRPC_MSG_RECEIVED = Counter(
    "grpc_server_msg_received_total", "RPC messages received.", _RPC_LABELS, registry=REGISTRY
)
GRPC_MSG_SENT = Counter(
    "grpc_server_msg_sent_total", "RPC messages sent.", _RPC_LABELS, registry=REGISTRY
)

RANK_ARCHITECTURES = Counter(
    "oracle_rank_architectures_total",
    "Architectures ranked (one per architecture per device).",
    ("space",),
    registry=REGISTRY,
)
RANK_STAGE_SECONDS = Histogram(
    "oracle_rank_stage_seconds",
    "Time spent in each stage of the Rank pipeline.",
    ("stage",),  # decode, proxy, head, rank, encode
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
RANK_STAGES = ("decode", "proxy", "head", "rank", "encode")
DEVICES = Gauge(
    "oracle_devices", "Devices served, by space and source.", ("space", "source"), registry=REGISTRY
)
HEAD_FIT_SECONDS = Histogram(
    "oracle_head_fit_seconds",
    "Time to fit a device's adaptation head (selection included).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
    registry=REGISTRY,
)
HEAD_FIT_FAILURES = Counter(
    "oracle_head_fit_failures_total", "Head fits that failed.", registry=REGISTRY
)
REGISTRY_ERRORS = Counter(
    "oracle_registry_errors_total",
    "Registry (database) operations that failed, by operation.",
    ("operation",),
    registry=REGISTRY,
)
IDEMPOTENT_REPLAYS = Counter(
    "oracle_idempotent_replays_total",
    "Write RPCs answered from the record of their request id (a retry), by method.",
    ("method",),
    registry=REGISTRY,
)
PROXY_CACHE = Counter(
    "oracle_proxy_cache_total",
    "Rank architectures by where their predictions came from: hit = the cached per-head "
    "predictions over the space's table (spaces whose table holds every architecture), "
    "miss = the proxy ran on the request's genes.",
    ("space", "result"),
    registry=REGISTRY,
)
TENANT_THROTTLED = Counter(
    "oracle_tenant_throttled_total",
    "RPCs refused with RESOURCE_EXHAUSTED by a tenant's fair share, by tenant and limit "
    "(concurrency/rate/work). Tenants come from the tokens file (plus 'anonymous').",
    ("tenant", "limit"),
    registry=REGISTRY,
)
TENANT_WORK = Counter(
    "oracle_tenant_work_total",
    "Work charged to a tenant: Rank architectures x devices (what --tenant-work-limit and "
    "the tokens file's work_limit count, per second).",
    ("tenant",),
    registry=REGISTRY,
)
#: Finer than _LATENCY_BUCKETS below 20 ms, where a light tenant's small Ranks are; the same
#: from 100 ms up.
_TENANT_BUCKETS = (
    *(0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0065, 0.008, 0.01, 0.0125, 0.015),
    *(0.02, 0.03, 0.05, 0.075),
    *(b for b in _LATENCY_BUCKETS if b >= 0.1),
)
TENANT_REQUEST_SECONDS = Histogram(
    "oracle_tenant_request_seconds",
    "Server-side time of a tenant's admitted oracle RPCs: admission (fair share, shared "
    "limits round trip) + handling, by method and tenant. Refused calls are counted in "
    "oracle_tenant_throttled_total instead.",
    ("method", "tenant"),
    buckets=_TENANT_BUCKETS,
    registry=REGISTRY,
)
LIMITS_BACKEND_UP = Gauge(
    "oracle_limits_backend_up",
    "1 when the shared limits backend (--limits-url) answers, 0 while it is unreachable and "
    "the per-replica in-memory limits decide (fail-open). Absent without --limits-url.",
    ("backend",),
    registry=REGISTRY,
)
LIMITS_BACKEND_ERRORS = Counter(
    "oracle_limits_backend_errors_total",
    "Calls to the shared limits backend that failed (connection, timeout, auth, script), "
    "by operation (check/admit/charge).",
    ("operation",),
    registry=REGISTRY,
)
LIMITS_FAIL_OPEN = Counter(
    "oracle_limits_fail_open_total",
    "Fair-share decisions taken by the per-replica in-memory limits because the shared "
    "limits backend was unreachable, by operation (admit/charge).",
    ("operation",),
    registry=REGISTRY,
)
TOKENS_RELOADS = Counter(
    "oracle_tokens_reloads_total",
    "Reloads of a changed tokens file, by result (ok/error: the previous tokens stay).",
    ("result",),
    registry=REGISTRY,
)
LARGE_CALL_YIELDS = Counter(
    "oracle_large_call_yields_total",
    "Times a large Rank (work above --large-call-work) paused between its chunks because "
    "small calls were in flight (oracle_server.priority).",
    registry=REGISTRY,
)
LARGE_CALL_YIELD_SECONDS = Histogram(
    "oracle_large_call_yield_seconds",
    "How long a large Rank waited for the small calls in flight before one of its chunks "
    "(bounded per chunk; oracle_server.priority).",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
    registry=REGISTRY,
)
READY = Gauge("oracle_ready", "1 when the server reports SERVING.", registry=REGISTRY)
BUILD_INFO = Info("oracle_build", "Build information of the running server.", registry=REGISTRY)


@functools.cache
def rank_stage(stage: str) -> Any:
    """``RANK_STAGE_SECONDS.labels(stage)``, bound once (the labelled child is the same
    object every time; ``labels()`` costs a lock and a dict lookup per call)."""
    return RANK_STAGE_SECONDS.labels(stage)
