"""Tenants without a server: the tokens file (formats, validation, errors that never quote a
hash), callers, the ownership/visibility policy, fair share arithmetic, settings validation
and the registry's owner column (migration of existing databases, owner checked on write)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from client_sdk.errors import Overloaded, PermissionDenied, Unauthenticated
from oracle_server import tenants as tn
from oracle_server.registry import Registry
from oracle_server.settings import Settings, load_settings
from oracle_server.writes import DeviceWrite
from tests.helpers import PG_URL, REPO, postgres_available

A, B, ADMIN = "tok-team-a-1f2e3d", "tok-team-b-9a8b7c", "tok-ops-5e6f7a"
HA, HB, HADMIN = (hashlib.sha256(t.encode()).hexdigest() for t in (A, B, ADMIN))


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _write(tmp_path: Path, text: str, name: str = "tokens.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -------------------------------------------------------------------- the file
def test_yaml_forms(tmp_path: Path) -> None:
    sha512 = hashlib.sha512(b"tok-c-512").hexdigest()
    path = _write(tmp_path, f"""
team-a: sha256:{HA}
team-b: {HB.upper()}
ops: {{sha256: {HADMIN}, admin: true}}
team-c:
  - sha512:{sha512}
  - {{hash: "sha256:{hashlib.sha256(b'tok-c-old').hexdigest()}", expires: 2020-01-01T00:00:00Z}}
batch: {{sha256: {hashlib.sha256(b'tok-batch').hexdigest()}, max_concurrent_rpcs: 2,
         rate_limit: 2.5, burst: 4}}
nas: {{sha256: {hashlib.sha256(b'tok-nas').hexdigest()}, work_limit: 2.5e6, work_burst: 500000}}
""")
    table = tn.load_tokens_file(path)
    assert table.tenants == {"team-a", "team-b", "ops", "team-c", "batch", "nas"}
    assert table.match(A).tenant == "team-a" and not table.match(A).admin
    assert table.match(B).tenant == "team-b"
    assert table.match(ADMIN).admin
    assert table.match("tok-c-512").tenant == "team-c"
    old = table.match("tok-c-old")
    assert old.expired(dt.datetime.now(dt.UTC)) and old.expires.tzinfo is not None
    assert table.match("nope") is None and table.match(HA) is None  # the hash is no token
    assert table.quotas["batch"] == tn.Quota(2, 2.5, 4)
    assert table.quotas["nas"] == tn.Quota(work_limit=2.5e6, work_burst=500_000)
    assert isinstance(table.quotas["nas"].work_limit, float)


def test_json_and_toml_forms(tmp_path: Path) -> None:
    doc = {"team-a": f"sha256:{HA}", "ops": {"sha256": HADMIN, "admin": True}}
    table = tn.load_tokens_file(_write(tmp_path, json.dumps(doc), "t.json"))
    assert table.match(ADMIN).admin and table.match(A).tenant == "team-a"
    toml = f'team-a = "sha256:{HA}"\n[ops]\nsha256 = "{HADMIN}"\nadmin = true\n' \
           f'expires = 2999-01-01T00:00:00Z\n'
    table = tn.load_tokens_file(_write(tmp_path, toml, "t.toml"))
    assert table.match(ADMIN).expires.year == 2999


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[]", "mapping"),
        ("", "mapping"),
        (f"'bad name': {HA}", "tenant names"),
        (f"anonymous: {HA}", "reserved"),
        ("team-a: tok-team-a-1f2e3d", "hash of the token"),  # a token pasted by mistake
        (f"team-a: sha256:{HA[:-2]}", "hash of the token"),
        (f"team-a: sha512:{HA}", "hash of the token"),
        (f"team-a: {{sha256: {HA}, expire: 2030-01-01}}", "unknown key"),
        (f"team-a: {{sha256: {HA}, hash: 'sha256:{HA}'}}", "exactly one"),
        ("team-a: {admin: true}", "exactly one"),
        (f"team-a: {{sha256: {HA}, admin: 'yes'}}", "admin"),
        (f"team-a: {{sha256: {HA}, expires: soon}}", "ISO 8601"),
        (f"team-a: {HA}\nteam-b: {HA}", "same token hash"),
        (f"team-a: [{HA}, {HA}]", "listed twice"),
        (f"team-a: {{sha256: {HA}, rate_limit: -1}}", "rate_limit"),
        (f"team-a: {{sha256: {HA}, max_concurrent_rpcs: 1.5}}", "max_concurrent_rpcs"),
        (f"team-a: {{sha256: {HA}, work_limit: -5}}", "'work_limit' must be a non-negative number"),
        (f"team-a: {{sha256: {HA}, work_limit: lots}}", "'work_limit' must be"),
        (f"team-a: {{sha256: {HA}, work_burst: 0.5}}", "'work_burst' must be a non-negative int"),
        (f"team-a: {{sha256: {HA}, work_limit: .inf}}", "'work_limit' must be"),
        (f"team-a: {{sha256: {HA}, work_limit: true}}", "'work_limit' must be"),
        (f"team-a: [{{sha256: {HA}, burst: 1}}, {{sha256: {HB}, burst: 2}}]", "conflicting"),
        ("team-a: []", "no token hash"),
        ("team-a: 12", "hash"),
        (f"team-a: sha256:{HA}\n  bad: [", r"not valid YAML \(line"),
    ],
)
def test_invalid_tokens_files_are_rejected_without_quoting_hashes(
    tmp_path: Path, text: str, fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment) as info:
        tn.load_tokens_file(_write(tmp_path, text))
    message = str(info.value)
    assert HA not in message and HA[:16] not in message and A not in message


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        tn.load_tokens_file(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match=r"not valid JSON \(line 2\)") as info:
        tn.load_tokens_file(_write(tmp_path, f'{{"a": "{HA}",\n  oops}}', "t.json"))
    assert HA not in str(info.value)
    with pytest.raises(ValueError, match="not valid TOML") as info:
        tn.load_tokens_file(_write(tmp_path, f'a = "{HA}"\nb = = 1', "t.toml"))
    assert HA not in str(info.value)


def test_hash_token_helper_round_trips() -> None:
    table = tn.parse_tokens({"team-a": tn.hash_token(A), "b": tn.hash_token(B, "sha512")})
    assert table.match(A).tenant == "team-a" and table.match(B).tenant == "b"


# --------------------------------------------------------------------- callers
def test_identify(tmp_path: Path) -> None:
    path = _write(tmp_path, f"team-a: {HA}\nops: {{sha256: {HADMIN}, admin: true}}\n"
                            f"old: {{sha256: {HB}, expires: 2001-01-01}}\n")
    auth = tn.Authenticator(write_token="legacy-tok", tokens_file=str(path))
    assert auth.identify(_bearer(A)) == tn.Caller("team-a", False, True)
    assert auth.identify((("authorization", f"bearer {ADMIN}"),)) == tn.Caller("ops", True, True)
    assert auth.identify(_bearer("legacy-tok")) == tn.Caller("admin", True, True)
    assert auth.identify(None) == tn.ANONYMOUS_CALLER
    assert auth.identify((("x-token", A),)) == tn.ANONYMOUS_CALLER
    for bad in (f"Basic {A}", A, "Bearer ", f"Bearer {A.upper()}", f"Bearer  {A}",
                f"Bearer {HA}", "Bearer " + "x" * 5000):
        with pytest.raises(Unauthenticated):
            auth.identify((("authorization", bad),))
    with pytest.raises(Unauthenticated, match="expired"):
        auth.identify(_bearer(B))
    # an open server (no token configured) ignores the header, as before
    assert tn.Authenticator().identify(_bearer("anything")) == tn.ANONYMOUS_CALLER


def test_tokens_file_reload(tmp_path: Path) -> None:
    path = _write(tmp_path, f"team-a: {HA}\n")
    auth = tn.Authenticator(tokens_file=str(path), reload_s=0.001)
    assert auth.identify(_bearer(A)).tenant == "team-a"
    path.write_text(f"team-b: {HB}\n# changed\n")
    import time

    time.sleep(0.01)
    assert auth.identify(_bearer(B)).tenant == "team-b"
    with pytest.raises(Unauthenticated):
        auth.identify(_bearer(A))
    path.write_text("team-b: not-a-hash-at-all\n")  # broken update: the previous tokens stay
    time.sleep(0.01)
    assert auth.identify(_bearer(B)).tenant == "team-b"


def test_policy() -> None:
    a, b = tn.Caller("team-a", False, True), tn.Caller("team-b", False, True)
    admin, anon = tn.Caller("ops", True, True), tn.ANONYMOUS_CALLER
    auth = tn.Authenticator(write_token="x")
    shared, private = tn.Tenancy(auth, "all"), tn.Tenancy(auth, "own")
    for t in (shared, private):
        assert t.may_write(a, "team-a") and t.may_write(admin, "team-a")
        assert not t.may_write(b, "team-a") and not t.may_write(a, None)
        assert not t.may_write(anon, "team-a") and t.may_write(admin, None)
        assert t.owner_for(a) == "team-a" and t.owner_for(anon) is None
        assert t.required_owner(a) == "team-a" and t.required_owner(admin) is None
        with pytest.raises(PermissionDenied, match="another tenant"):
            t.check_write(b, "nasbench201/x", "team-a")
    assert shared.may_see(b, "team-a") and shared.may_see(anon, "team-a")
    assert not private.may_see(b, "team-a") and not private.may_see(anon, "team-a")
    assert private.may_see(a, "team-a") and private.may_see(admin, "team-a")
    assert private.may_see(b, None) and private.may_see(anon, None)  # table / unowned
    assert private.hides and not shared.hides
    open_ = tn.Tenancy(tn.Authenticator(), "own")  # no token configured: as before
    assert open_.may_write(anon, "team-a") and open_.may_see(anon, "team-a")
    assert open_.owner_for(anon) is None and open_.required_owner(anon) is None
    assert not open_.hides
    with pytest.raises(ValueError, match="tenant_visibility"):
        tn.Tenancy(auth, "none")


# ------------------------------------------------------------------ fair share
class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_concurrency_limit_and_retry_after() -> None:
    clock = Clock()
    fair = tn.FairShare(max_concurrent_rpcs=2, clock=clock)
    fair.acquire("a")
    fair.acquire("a")
    with pytest.raises(Overloaded) as info:
        fair.acquire("a")
    # no history yet: the default RPC time, one slot release = default / limit away
    assert info.value.retry_after == tn.FairShare.DEFAULT_RETRY_S / 2
    assert "2 concurrent" in info.value.message
    with pytest.raises(Overloaded) as info:
        fair.acquire("a")
    assert info.value.retry_after == tn.FairShare.DEFAULT_RETRY_S  # next in the virtual queue
    fair.acquire("b")  # another tenant is not affected
    clock.t += 10.0
    fair.release("a", 1.5)
    fair.acquire("a")
    with pytest.raises(Overloaded) as info:
        fair.acquire("a")
    assert info.value.retry_after == 0.75  # the tenant's own recent RPC time / its limit
    assert fair.in_flight("a") == 2 and fair.in_flight("b") == 1
    for _ in range(200):  # callers ignoring the advice cannot push it past the cap
        with pytest.raises(Overloaded) as info:
            fair.acquire("a")
    assert info.value.retry_after == tn.FairShare.MAX_RETRY_S


def test_rate_limit_token_bucket() -> None:
    clock = Clock()
    fair = tn.FairShare(rate_limit=2.0, burst=3, clock=clock)
    for _ in range(3):
        fair.acquire("a")
        fair.release("a", 0.01)
    with pytest.raises(Overloaded, match="rate limit of 2 RPCs/s") as info:
        fair.acquire("a")
    assert info.value.retry_after == pytest.approx(0.5)
    clock.t += 0.25
    with pytest.raises(Overloaded) as info:
        fair.acquire("a")
    assert info.value.retry_after == pytest.approx(0.25)
    clock.t += 0.25
    fair.acquire("a")
    fair.acquire("b")  # per tenant


def test_work_limit_bucket_runs_into_debt_and_is_paid_back() -> None:
    clock = Clock()
    fair = tn.FairShare(work_limit=1000.0, work_burst=2000, clock=clock)
    assert fair.work_limits("a") == (1000.0, 2000.0)
    fair.acquire("a", work=True)  # a full bucket: admitted, then charged its exact cost
    fair.charge("a", 5000)  # bigger than the bucket: allowed once, the balance goes into debt
    fair.release("a", 0.01)
    assert fair.work_balance("a") == -3000
    with pytest.raises(Overloaded, match="work limit of 1000 architectures") as info:
        fair.acquire("a", work=True)
    assert info.value.retry_after == pytest.approx(3.0)  # the debt paid back at 1000/s
    with pytest.raises(Overloaded) as info:
        fair.acquire("a", work=True)
    # next in the virtual queue: one mean call's cost (5000) later
    assert info.value.retry_after == pytest.approx(8.0)
    assert fair.in_flight("a") == 0  # refused calls take no slot
    fair.acquire("a")  # an RPC that is not charged work is not held back by the debt
    fair.release("a", 0.01)
    fair.acquire("b", work=True)  # nor is another tenant
    clock.t += 2.0
    with pytest.raises(Overloaded):
        fair.acquire("a", work=True)
    clock.t += 1.001  # paid back: admitted again
    fair.acquire("a", work=True)
    fair.charge("a", 10)
    fair.release("a", 0.01)
    clock.t += 1000.0  # refills up to the bucket size, not beyond
    assert fair.work_balance("a") == 2000
    for _ in range(4):  # four calls of 600 from a full bucket of 2000: the fourth overdraws
        fair.acquire("a", work=True)
        fair.charge("a", 600)
        fair.release("a", 0.01)
    with pytest.raises(Overloaded):
        fair.acquire("a", work=True)
    for _ in range(500):  # callers ignoring the advice cannot push it past the cap
        with pytest.raises(Overloaded) as info:
            fair.acquire("a", work=True)
    assert info.value.retry_after == tn.FairShare.MAX_RETRY_S


def test_work_limit_defaults_and_overrides() -> None:
    off = tn.FairShare()
    assert off.work_limits("a") == (0.0, 0.0)
    for _ in range(3):
        off.acquire("a", work=True)
        off.charge("a", 10**9)  # no limit: nothing is held back
    assert off.work_balance("a") == 0.0
    quotas = {"nas": tn.Quota(work_limit=50.0), "free": tn.Quota(work_limit=0)}
    fair = tn.FairShare(work_limit=1e6, quota=quotas.get, clock=Clock())
    assert fair.work_limits("other") == (1e6, 1e6)  # bucket: one second of the rate
    assert fair.work_limits("nas") == (50.0, 50.0)
    assert fair.work_limits("free") == (0.0, 0.0)  # 0 = unlimited for this tenant
    fair.acquire("nas", work=True)
    fair.charge("nas", 51)
    fair.release("nas", 0.01)
    with pytest.raises(Overloaded) as info:
        fair.acquire("nas", work=True)
    assert info.value.retry_after == pytest.approx(0.02)
    fair.acquire("free", work=True)
    fair.charge("free", 10**9)
    fair.acquire("free", work=True)
    fair.charge("nas", 0)  # nothing to charge: nothing changes
    fair.charge("nas", -5)


def test_per_tenant_quota_overrides() -> None:
    quotas = {"big": tn.Quota(max_concurrent_rpcs=0), "small": tn.Quota(max_concurrent_rpcs=1)}
    fair = tn.FairShare(max_concurrent_rpcs=2, quota=quotas.get)
    for _ in range(5):
        fair.acquire("big")  # 0 = unlimited for this tenant
    fair.acquire("small")
    with pytest.raises(Overloaded):
        fair.acquire("small")
    assert fair.limits("other") == (2, 0.0, 1.0)


# ------------------------------------------------------------------- settings
def test_settings_validation(tmp_path: Path) -> None:
    good = _write(tmp_path, f"team-a: {HA}\n")
    s = Settings(tokens_file=str(good), read_token_required=True, tenant_visibility="own",
                 tenant_max_concurrent_rpcs=4, tenant_rate_limit=10, tenant_burst=20)
    assert s.redacted()["tokens_file"] == str(good)
    bad = _write(tmp_path, f"team-a: {A}\n", "bad.yaml")
    cases = [
        ({"tenant_visibility": "nobody"}, "tenant_visibility"),
        ({"tenant_max_concurrent_rpcs": -1}, "tenant_max_concurrent_rpcs"),
        ({"tenant_max_concurrent_rpcs": 65}, "max_concurrent_rpcs"),
        ({"tenant_rate_limit": -0.5}, "tenant_rate_limit"),
        ({"tenant_rate_limit": float("nan")}, "tenant_rate_limit"),
        ({"tenant_burst": -1}, "tenant_burst"),
        ({"tenant_work_limit": -1.0}, "tenant_work_limit must be >= 0"),
        ({"tenant_work_limit": float("inf")}, "tenant_work_limit"),
        ({"tenant_work_burst": -1}, "tenant_work_burst must be >= 0"),
        ({"tokens_reload_s": -1}, "tokens_reload_s"),
        ({"tokens_file": str(bad)}, "hash of the token"),
        ({"tokens_file": str(tmp_path / "nope.yaml")}, "cannot read"),
        ({"read_token_required": True}, "tokens_file"),
    ]
    for changes, fragment in cases:
        with pytest.raises(ValueError, match=fragment):
            Settings(**changes)
    env = {"ORACLE_TOKENS_FILE": str(good), "ORACLE_TENANT_VISIBILITY": "own",
           "ORACLE_TENANT_RATE_LIMIT": "2.5", "ORACLE_TENANT_MAX_CONCURRENT_RPCS": "3",
           "ORACLE_TENANT_WORK_LIMIT": "2e6", "ORACLE_TENANT_WORK_BURST": "4000000"}
    s = load_settings(env=env)
    assert (s.tenant_visibility, s.tenant_rate_limit, s.tenant_max_concurrent_rpcs) == (
        "own", 2.5, 3)
    assert (s.tenant_work_limit, s.tenant_work_burst) == (2e6, 4_000_000)
    fair = tn.Tenancy.from_settings(s).fair_share
    assert fair.work_limits("team-a") == (2e6, 4e6)
    assert Settings().tenant_work_limit == 0  # nothing configured: no limits


def test_cli_exits_2_on_a_bad_tokens_file(tmp_path: Path) -> None:
    bad = _write(tmp_path, f"team-a: {A}\nteam-b: {{sha256: {HB}, admin: maybe}}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "oracle_server", "serve", "--tokens-file", str(bad)],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "team-a" in proc.stderr and "hash of the token" in proc.stderr
    assert A not in proc.stderr and HB not in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------- registry: owner column
_OLD_SCHEMA = (  # oracle_devices as created before tenants (no owner column)
    "CREATE TABLE oracle_devices (id INTEGER PRIMARY KEY, space VARCHAR(64) NOT NULL, "
    "name VARCHAR(128) NOT NULL, contract JSON NOT NULL, revision INTEGER NOT NULL, "
    "created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL, "
    "CONSTRAINT uq_oracle_devices_space_name UNIQUE (space, name))",
    "CREATE TABLE oracle_measurements (id INTEGER PRIMARY KEY, device_id INTEGER NOT NULL "
    "REFERENCES oracle_devices(id) ON DELETE CASCADE, genes BYTEA NOT NULL, "
    "latency_ms FLOAT NOT NULL, created_at TIMESTAMP NOT NULL)",
    "INSERT INTO oracle_devices (space, name, contract, revision, created_at, updated_at) "
    "VALUES ('nasbench201', 'old-dev', '{}', 1, '2024-01-01 00:00:00', "
    "'2024-01-01 00:00:00')",
)


def _check_migrated(url: str) -> None:
    reg = Registry(url)
    try:
        old = reg.load("nasbench201", "old-dev")
        assert old.owner is None  # registered before tenants: owned by nobody
        genes, lat = np.zeros((2, 6), np.int16), np.array([1.0, 2.0])
        new = reg.create(DeviceWrite("nasbench201", "new-dev", genes, lat, owner="team-a"))
        assert new.owner == "team-a" and reg.load("nasbench201", "new-dev").owner == "team-a"
        with pytest.raises(PermissionDenied, match="another tenant"):
            reg.add_measurements(DeviceWrite("nasbench201", "new-dev", genes, lat,
                                             require_owner="team-b"))
        with pytest.raises(PermissionDenied, match="admins only"):
            reg.delete(DeviceWrite("nasbench201", "old-dev", require_owner="team-a"))
        assert reg.load("nasbench201", "new-dev").latency_ms.shape == (2,)
        assert reg.add_measurements(DeviceWrite("nasbench201", "new-dev", genes, lat,
                                                require_owner="team-a")).latency_ms.shape == (4,)
        assert reg.delete(DeviceWrite("nasbench201", "new-dev", require_owner="team-a"))
        assert reg.delete(DeviceWrite("nasbench201", "old-dev"))  # an admin (no owner required)
    finally:
        reg.close()
    Registry(url).close()  # idempotent: a second start migrates nothing


def test_sqlite_database_from_before_tenants_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        for statement in _OLD_SCHEMA:
            conn.execute(statement.replace("BYTEA", "BLOB"))
    _check_migrated(f"sqlite:///{path}")


@pytest.mark.postgres
@pytest.mark.skipif(postgres_available() is not None, reason="needs the local PostgreSQL")
def test_postgres_database_from_before_tenants_is_migrated() -> None:
    import sqlalchemy as sa

    schema = f"tenants_mig_{uuid.uuid4().hex[:8]}"  # own schema: the shared tables are untouched
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        conn.execute(sa.text(f"SET search_path TO {schema}"))
        for statement in _OLD_SCHEMA:
            conn.execute(sa.text(statement.replace("INTEGER PRIMARY KEY", "SERIAL PRIMARY KEY")))
    try:
        _check_migrated(f"{PG_URL}?options=-csearch_path%3D{schema}")
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
