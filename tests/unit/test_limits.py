"""Shared tenant limits (issue 28): the Lua token bucket in Redis, fail-open, bad URLs.

Uses the machine's Redis on 127.0.0.1:6379 (a unique key prefix per test, its keys deleted
afterwards) and, for outages and passwords, a private ``redis-server`` on a free port that
the test starts and kills. Skipped, with the reason, only when no Redis can be reached.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from client_sdk.errors import Overloaded
from oracle_server import metrics
from oracle_server.limits import (
    ADMIT,
    CHARGE,
    DEFAULT_PREFIX,
    TAKE,
    BucketSpec,
    LimitsConfigError,
    SharedLimits,
    parse_limits_url,
)
from oracle_server.settings import Settings, load_settings
from oracle_server.tenants.fair_share import FairShare, Quota
from tests.helpers import REPO, private_redis
from tests.support.launch import free_port

redis = pytest.importorskip("redis", reason="redis-py is in the [server] extra")

MACHINE_REDIS = "redis://127.0.0.1:6379/0"


def _machine_redis_reason() -> str | None:
    try:
        redis.Redis.from_url(MACHINE_REDIS, socket_connect_timeout=1, socket_timeout=1).ping()
    except Exception as exc:
        return f"no Redis on 127.0.0.1:6379 ({type(exc).__name__}); start redis-server"
    return None


NO_REDIS = _machine_redis_reason()
needs_redis = pytest.mark.skipif(NO_REDIS is not None, reason=str(NO_REDIS))


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of its own (parallel tests never share a bucket); keys deleted after."""
    value = f"test:limits:{uuid.uuid4().hex[:12]}:"
    yield value
    if NO_REDIS is None:
        client = redis.Redis.from_url(MACHINE_REDIS)
        keys = list(client.scan_iter(match=value + "*"))
        if keys:
            client.delete(*keys)
        client.close()


def _limits(prefix: str) -> SharedLimits:
    return SharedLimits(f"{MACHINE_REDIS}?prefix={prefix}")


def _sample(metric, *labels) -> float:
    return metric.labels(*labels)._value.get()


# ---------------------------------------------------------------------- the Lua bucket
@needs_redis
def test_two_replicas_share_one_budget(prefix):
    """Two limiter objects (two replicas) on one Redis: 10 of 30 at 10/s, burst 10."""
    a, b = _limits(prefix), _limits(prefix)
    spec = [BucketSpec("rate", 10.0, 10.0, 1.0, TAKE)]
    allowed = 0
    for i in range(30):
        decision = (a if i % 2 else b).run("team", spec, "admit")
        assert decision is not None
        allowed += decision.refused is None
    assert allowed == 10
    # another tenant has its own bucket
    assert a.run("other", spec, "admit").refused is None


@needs_redis
def test_bucket_refills_at_its_rate(prefix):
    limiter = _limits(prefix)
    spec = [BucketSpec("rate", 10.0, 10.0, 1.0, TAKE)]
    while limiter.run("team", spec, "admit").refused is None:
        pass
    refused = limiter.run("team", spec, "admit")
    assert refused.refused == "rate" and refused.balances["rate"] < 1.0
    time.sleep(0.25)  # 2.5 tokens
    got = [limiter.run("team", spec, "admit").refused for _ in range(4)]
    assert got[:2] == [None, None] and got[3] == "rate"


@needs_redis
def test_cost_above_one_and_debt(prefix):
    limiter = _limits(prefix)
    take4 = [BucketSpec("rate", 1.0, 10.0, 4.0, TAKE)]
    assert [limiter.run("t", take4, "admit").refused for _ in range(3)] == [None, None, "rate"]
    # work: admitted while > 0, a charge may overdraw, then refused until paid back
    admit = [BucketSpec("work", 100.0, 1000.0, 0.0, ADMIT)]
    charge = [BucketSpec("work", 100.0, 1000.0, 2500.0, CHARGE)]
    assert limiter.run("u", admit, "admit").refused is None
    after = limiter.run("u", charge, "charge")
    assert after.refused is None and -1500.5 < after.balances["work"] < -1499
    refused = limiter.run("u", admit, "admit")
    assert refused.refused == "work" and refused.balances["work"] < 0
    # all or nothing: the work refusal takes no rate token
    both = [*admit, BucketSpec("rate", 1.0, 5.0, 1.0, TAKE)]
    for _ in range(3):
        assert limiter.run("u", both, "admit").refused == "work"
    assert (
        limiter.run("u", [BucketSpec("rate", 1.0, 5.0, 1.0, TAKE)], "admit").balances["rate"] > 3.9
    )


@needs_redis
def test_keys_carry_a_ttl_and_the_tenant_hash_tag(prefix):
    limiter = _limits(prefix)
    limiter.run("team-a", [BucketSpec("rate", 2.0, 4.0, 1.0, TAKE)], "admit")
    key = f"{prefix}{{team-a}}:rate"
    assert limiter.key("team-a", "rate") == key
    ttl = limiter.client.pttl(key)
    assert 0 < ttl <= 1000 + 500 + 5  # back to full in (4 - 3) / 2 s, plus 1 s


@needs_redis
def test_fair_share_rate_and_work_shared_between_replicas(prefix):
    quotas = {"nas": Quota(work_limit=100.0, work_burst=100)}
    a = FairShare(rate_limit=5.0, burst=5, quota=quotas.get, shared=_limits(prefix))
    b = FairShare(rate_limit=5.0, burst=5, quota=quotas.get, shared=_limits(prefix))
    allowed = 0
    for i in range(20):
        fair = a if i % 2 else b
        try:
            fair.acquire("team")
        except Overloaded as exc:
            assert 0.01 <= exc.retry_after <= 1.0
            continue
        fair.release("team", 0.001)
        allowed += 1
    assert allowed == 5
    # work charged on one replica is debt on the other
    a.acquire("nas", work=True)
    a.charge("nas", 400)
    a.release("nas", 0.001)
    with pytest.raises(Overloaded, match="work limit"):
        b.acquire("nas", work=True)
    assert b.in_flight("nas") == 0  # the refused call holds no slot


# ------------------------------------------------------------------------- fail-open
def test_fail_open_to_local_limits_and_recovery(caplog):
    srv = private_redis()
    try:
        shared = SharedLimits(srv.url(prefix=f"fo{uuid.uuid4().hex[:8]}:"))
        fair = FairShare(rate_limit=3.0, burst=3, shared=shared)
        errors0 = _sample(metrics.LIMITS_BACKEND_ERRORS, "admit")
        open0 = _sample(metrics.LIMITS_FAIL_OPEN, "admit")
        for _ in range(3):  # the shared bucket
            fair.acquire("t")
            fair.release("t", 0.0)
        with pytest.raises(Overloaded):
            fair.acquire("t")
        srv.kill()
        caplog.set_level(logging.WARNING, logger="oracle_server.limits")
        got = []
        for _ in range(10):  # the local bucket (full: first used now): 3 of 10
            try:
                fair.acquire("t")
                fair.release("t", 0.0)
                got.append(True)
            except Overloaded:
                got.append(False)
        assert sum(got) == 3
        assert not shared.up
        assert metrics.LIMITS_BACKEND_UP.labels("redis")._value.get() == 0
        assert _sample(metrics.LIMITS_BACKEND_ERRORS, "admit") >= errors0 + 1
        assert _sample(metrics.LIMITS_FAIL_OPEN, "admit") == open0 + 10
        # backoff: not one connection attempt per call
        assert _sample(metrics.LIMITS_BACKEND_ERRORS, "admit") <= errors0 + 2
        warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warnings) == 1  # at most once a minute
        # Redis back on the same port: shared limits again after the backoff
        srv = private_redis(port=srv.port)
        time.sleep(0.3)
        deadline = time.monotonic() + 10
        while not shared.up and time.monotonic() < deadline:
            shared.run("probe", [BucketSpec("rate", 1.0, 1.0, 1.0, TAKE)], "admit")
            time.sleep(0.1)
        assert shared.up
        assert metrics.LIMITS_BACKEND_UP.labels("redis")._value.get() == 1
    finally:
        srv.kill()


def test_unreachable_at_start_up_starts_and_fails_open():
    shared = SharedLimits(f"redis://127.0.0.1:{free_port()}/0")
    assert shared.check() is False and not shared.up
    fair = FairShare(rate_limit=1.0, burst=1, shared=shared)
    fair.acquire("t")  # decided locally
    with pytest.raises(Overloaded):
        fair.acquire("t")


# ------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "url, message",
    [
        ("http://127.0.0.1:6379", "scheme"),
        ("redis://", "no host"),
        ("redis://127.0.0.1:99999/0", "not a valid URL"),
        ("redis://127.0.0.1:6379/abc", "database number"),
        ("redis://127.0.0.1:6379/0?sockettimeout=1", "unknown query parameter"),
        ("redis://127.0.0.1:6379/0?socket_timeout=abc", "socket_timeout"),
        ("redis://127.0.0.1:6379/0?prefix=", "prefix"),
        ("127.0.0.1:6379", "scheme"),
    ],
)
def test_malformed_limits_url_is_a_start_up_error(url, message):
    with pytest.raises(ValueError, match=message):
        Settings(limits_url=url)
    with pytest.raises(ValueError, match=message):
        load_settings(env={"ORACLE_LIMITS_URL": url})


def test_url_forms():
    assert parse_limits_url("redis://h:1/2") == ("redis://h:1/2", DEFAULT_PREFIX)
    assert parse_limits_url("rediss://:pw@h/0?prefix=a:&socket_timeout=1") == (
        "rediss://:pw@h/0?socket_timeout=1",
        "a:",
    )
    assert parse_limits_url("unix:///run/redis.sock?db=1")[0] == "unix:///run/redis.sock?db=1"


def test_limits_url_password_never_shown():
    secret = f"pw{uuid.uuid4().hex}"
    with pytest.raises(ValueError) as info:
        Settings(limits_url=f"redis://:{secret}@127.0.0.1:6379/abc")
    assert secret not in str(info.value)
    s = Settings(limits_url=f"redis://user:{secret}@127.0.0.1:6379/0")
    assert secret not in repr(s) and secret not in str(s.redacted())


def test_refused_credentials_exit_2_without_the_password():
    srv = private_redis(password=f"right{uuid.uuid4().hex[:8]}")
    wrong = f"wrong{uuid.uuid4().hex}"
    try:
        with pytest.raises(LimitsConfigError, match="refused the credentials") as info:
            SharedLimits(srv.url(password=wrong)).check()
        assert wrong not in str(info.value)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "oracle_server",
                "serve",
                "--port",
                "0",
                "--metrics-port",
                "-1",
                "--spaces",
                "nasbench201",
                "--limits-url",
                srv.url(password=wrong),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "refused the credentials" in proc.stderr
        assert wrong not in proc.stderr + proc.stdout
        # the right password works and is not logged when Redis goes away either
        shared = SharedLimits(srv.url())
        assert shared.check() is True
        logger = logging.getLogger("oracle_server.limits")
        records: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda r: records.append(r.getMessage() + " " + str(r.__dict__))
        logger.addHandler(handler)
        try:
            srv.kill()
            assert shared.run("t", [BucketSpec("rate", 1.0, 1.0, 1.0, TAKE)], "admit") is None
        finally:
            logger.removeHandler(handler)
        assert records and all(srv.password not in r for r in records)
    finally:
        srv.kill()


def test_zero_limit_means_unlimited_and_negative_is_refused():
    fair = FairShare(rate_limit=0.0, shared=SharedLimits(f"redis://127.0.0.1:{free_port()}/0"))
    for _ in range(50):  # 0 = unlimited: no backend call at all
        fair.acquire("t")
    assert fair.shared.up  # never tried
    with pytest.raises(ValueError, match="tenant_rate_limit"):
        Settings(tenant_rate_limit=-1, limits_url=MACHINE_REDIS)
