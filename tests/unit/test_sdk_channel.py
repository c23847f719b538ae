"""Channel options of the SDK for replicated deployments: round-robin over several addresses
or a ``dns:`` name, client-side health checking, the UNAVAILABLE retry policy (reads and,
being idempotent, writes) and a short reconnect backoff."""

from __future__ import annotations

import json

import pytest

from client_sdk._channel import ChannelConfig
from client_sdk._requests import MAX_RECONNECT_BACKOFF_MS


def _config(target) -> tuple[dict, dict]:
    cfg = ChannelConfig.build(target)
    opts = dict(cfg.options)
    return opts, json.loads(opts["grpc.service_config"])


@pytest.mark.parametrize("target", ["dns:///oracle-headless.ns.svc:50051",
                                    ["127.0.0.1:50051", "127.0.0.1:50052"]])
def test_replicated_targets_balance_health_check_and_retry(target) -> None:
    opts, service = _config(target)
    assert service["loadBalancingConfig"] == [{"round_robin": {}}]
    assert service["healthCheckConfig"] == {"serviceName": ""}
    assert opts["grpc.max_reconnect_backoff_ms"] == MAX_RECONNECT_BACKOFF_MS
    (method,) = service["methodConfig"]
    assert method["name"] == [{"service": "latency_oracle.v1.LatencyOracle"}]  # every RPC
    policy = method["retryPolicy"]
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert policy["maxAttempts"] >= 4  # the first try on a dead replica, then others
    assert opts["grpc.enable_retries"] == 1


def test_single_address_is_not_balanced_and_retries_can_be_off() -> None:
    opts, service = _config("127.0.0.1:50051")
    assert "loadBalancingConfig" not in service and "healthCheckConfig" not in service
    assert "grpc.max_reconnect_backoff_ms" not in opts
    cfg = ChannelConfig.build(["127.0.0.1:1", "127.0.0.1:2"], retries=False)
    opts = dict(cfg.options)
    assert opts["grpc.enable_retries"] == 0
    assert "methodConfig" not in json.loads(opts["grpc.service_config"])
