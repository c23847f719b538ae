"""Tenants end to end (issue #18): a real server on port 0 with a tokens file.

- isolation: cross-tenant writes are PERMISSION_DENIED, missing/forged/expired/malformed
  tokens UNAUTHENTICATED, table and unowned devices read-only for tenants, admins may act,
  devices invisible to other tenants when ``tenant_visibility=own``;
- fair share: a tenant over its concurrency, rate or work limit gets RESOURCE_EXHAUSTED
  with a ``google.rpc.RetryInfo`` while another tenant is served;
- logs: one audit line per write RPC, and neither a token nor its hash anywhere in the
  server's complete output.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from client_sdk import OracleClient
from client_sdk.errors import (
    DeviceNotFound,
    FailedPrecondition,
    OracleError,
    Overloaded,
    PermissionDenied,
    Unauthenticated,
)
from client_sdk.proto.latency_oracle.v1 import oracle_pb2 as pb
from client_sdk.proto.latency_oracle.v1 import oracle_pb2_grpc as pb_grpc
from client_sdk.spaces import get_space
from oracle_server import metrics
from oracle_server.app import App
from oracle_server.tenants import current_caller
from oracle_server.writes import DeviceWrite
from tests.e2e.conftest import make_settings
from tests.helpers import TEST_CACHE, nb201_non_train_devices, server_process, unique_name

SPACE_NAME = "nasbench201"
SPACE = get_space(SPACE_NAME)
#: Fresh random tokens per run, so that grepping the logs for them means something.
TOK = {name: f"{name}-{secrets.token_urlsafe(24)}" for name in
       ("team-a", "team-b", "team-b-new", "ops", "gone", "legacy", "rl", "wk", "forged")}


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _tokens_file(directory: Path, extra: str = "") -> Path:
    path = directory / "tokens.yaml"
    path.write_text(
        f"team-a: sha256:{_sha(TOK['team-a'])}\n"
        f"team-b:\n  - sha256:{_sha(TOK['team-b'])}\n"
        f"  - {{sha256: {_sha(TOK['team-b-new'])}, expires: 2999-01-01T00:00:00Z}}\n"
        f"ops: {{sha256: {_sha(TOK['ops'])}, admin: true}}\n"
        f"gone: {{sha256: {_sha(TOK['gone'])}, expires: 2001-01-01T00:00:00Z}}\n"
        f"rl: {{sha256: {_sha(TOK['rl'])}, rate_limit: 1, burst: 2}}\n"
        f"wk: {{sha256: {_sha(TOK['wk'])}, work_limit: 10, work_burst: 1000}}\n" + extra
    )
    return path


def _measurements(n: int = 8, seed: int = 0):
    genes = SPACE.sample(n, rng=seed)
    return genes, SPACE.table.device_column("raspi4")[SPACE.table_rows(genes)]


def _start(nb201_model, tmp_path: Path, **overrides) -> App:
    settings = make_settings(tmp_path, tokens_file=str(_tokens_file(tmp_path)),
                             write_token=TOK["legacy"], **overrides)
    return App(settings, models={SPACE_NAME: nb201_model}).start(
        block_until_ready=True, timeout_s=60)


def _client(app: App, who: str | None = None, token: str | None = None) -> OracleClient:
    token = token if token is not None else (TOK[who] if who else None)
    return OracleClient(f"127.0.0.1:{app.port}", timeout_s=20, retries=False, token=token)


@pytest.fixture(scope="module")
def shared(nb201_model, tmp_path_factory) -> Iterator[App]:
    app = _start(nb201_model, tmp_path_factory.mktemp("shared"))
    yield app
    app.stop(0.5)


@pytest.fixture(scope="module")
def private(nb201_model, tmp_path_factory) -> Iterator[App]:
    app = _start(nb201_model, tmp_path_factory.mktemp("private"), tenant_visibility="own")
    yield app
    app.stop(0.5)


def _register(app: App, who: str, name: str | None = None) -> str:
    name = name or unique_name(who)
    with _client(app, who) as c:
        c.register_device(name, SPACE_NAME, _measurements())
    return name


def _unowned(app: App) -> str:
    """A device from before tenants (or from an open server): no owner in the registry."""
    assert app.oracle is not None
    name = unique_name("legacy")
    genes, lat = _measurements()
    app.oracle.register(DeviceWrite(SPACE_NAME, name, genes, lat))
    return name


# ------------------------------------------------------------------- ownership
def test_owner_is_recorded_and_exposed(shared: App) -> None:
    name = _register(shared, "team-a")
    with _client(shared, "team-b") as b:  # visible by default
        assert b.get_device(name, SPACE_NAME).owner == "team-a"
        assert b.get_device("pixel3", SPACE_NAME).owner == ""  # table: nobody's
        assert {d.name: d.owner for d in b.list_devices(SPACE_NAME)}[name] == "team-a"
        res = b.rank(SPACE_NAME, SPACE.sample(5, rng=1), [name, "pixel3"])
        assert res.num_architectures == 5
    with _client(shared, "team-b-new") as b2:  # a tenant's second (rotated) token: same tenant
        own = _register(shared, "team-b-new")
        assert b2.get_device(own, SPACE_NAME).owner == "team-b"
    with _client(shared, "team-b") as b:
        assert b.add_measurements(own, _measurements(seed=2), SPACE_NAME).num_samples == 16
        assert b.delete_device(own, SPACE_NAME)


def _attempt(kind: str, c: OracleClient, name: str) -> None:
    if kind == "register":
        c.register_device(name, SPACE_NAME, _measurements(seed=3))
    elif kind == "add":
        c.add_measurements(name, _measurements(seed=4), SPACE_NAME)
    elif kind == "add_full_name":
        c.add_measurements(f"{SPACE_NAME}/{name}", _measurements(seed=4))
    elif kind == "delete":
        c.delete_device(name, SPACE_NAME)
    elif kind == "delete_full_name":
        c.delete_device(f"{SPACE_NAME}/{name}")
    else:
        raise AssertionError(kind)


# (who or a literal token, what, which device, expected error)
NEGATIVE_WRITES = [
    ("team-b", "add", "a", PermissionDenied),
    ("team-b", "add_full_name", "a", PermissionDenied),
    ("team-b", "delete", "a", PermissionDenied),
    ("team-b", "delete_full_name", "a", PermissionDenied),
    ("team-b", "register", "a", PermissionDenied),  # re-register another tenant's name
    ("team-b-new", "delete", "a", PermissionDenied),
    (None, "register", "new", Unauthenticated),  # anonymous, tenants configured
    (None, "add", "a", Unauthenticated),
    (None, "delete", "a", Unauthenticated),
    ("forged", "register", "new", Unauthenticated),
    ("forged", "add", "a", Unauthenticated),
    ("forged", "delete", "a", Unauthenticated),
    ("hash-of-a", "delete", "a", Unauthenticated),  # the hash is not the token
    ("upper-a", "delete", "a", Unauthenticated),  # tokens are case-sensitive
    ("prefix-a", "delete", "a", Unauthenticated),
    ("gone", "register", "new", Unauthenticated),  # expired
    ("gone", "add", "a", Unauthenticated),
    ("team-a", "add", "table", FailedPrecondition),  # table devices: read-only, as before
    ("team-a", "delete", "table", FailedPrecondition),
    ("ops", "delete", "table", FailedPrecondition),  # even for an admin
    ("team-a", "add", "unowned", PermissionDenied),  # unowned: admins only
    ("team-a", "delete", "unowned", PermissionDenied),
    ("team-a", "register", "unowned", PermissionDenied),
]


def _token_for(who: str | None) -> str | None:
    special = {
        "hash-of-a": _sha(TOK["team-a"]),
        "upper-a": TOK["team-a"].upper(),
        "prefix-a": TOK["team-a"][:-1],
    }
    return special.get(who, TOK.get(who) if who else None)


@pytest.mark.parametrize(("who", "kind", "target", "error"), NEGATIVE_WRITES)
def test_write_isolation(shared: App, who, kind: str, target: str, error) -> None:
    owned = _register(shared, "team-a")
    name = {"a": owned, "new": unique_name("new"), "table": "pixel3",
            "unowned": _unowned(shared)}[target]
    with _client(shared, token=_token_for(who)) as c, pytest.raises(error) as info:
        _attempt(kind, c, name)
    assert TOK["team-a"] not in info.value.message and _sha(TOK["team-a"]) not in info.value.message
    with _client(shared, "ops") as admin:  # nothing changed
        assert admin.get_device(owned, SPACE_NAME).num_samples == 8
        if target == "new":
            with pytest.raises(DeviceNotFound):
                admin.get_device(name, SPACE_NAME)


def test_permission_denied_wire_form(shared: App) -> None:
    owned = _register(shared, "team-a")
    with grpc.insecure_channel(f"127.0.0.1:{shared.port}") as ch:
        stub = pb_grpc.LatencyOracleStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.DeleteDevice.with_call(
                pb.DeleteDeviceRequest(name=owned, space=SPACE_NAME), timeout=10,
                metadata=(("authorization", f"Bearer {TOK['team-b']}"),))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    status = rpc_status.from_call(info.value)
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    reason = error_details_pb2.ErrorInfo()
    infos[0].Unpack(reason)
    assert reason.reason == "PERMISSION_DENIED"
    assert "another tenant" in info.value.details()


def test_own_device_re_register_is_already_exists(shared: App) -> None:
    from client_sdk.errors import AlreadyExists

    name = _register(shared, "team-a")
    with _client(shared, "team-a") as a, pytest.raises(AlreadyExists):
        a.register_device(name, SPACE_NAME, _measurements())


@pytest.mark.parametrize(
    ("token", "call"),
    [
        ("forged", lambda c: c.list_devices(SPACE_NAME)),
        ("gone", lambda c: c.rank(SPACE_NAME, SPACE.sample(3, rng=0), "pixel3")),
        ("hash-of-a", lambda c: c.get_device("pixel3", SPACE_NAME)),
        ("forged", lambda c: c.compare_devices("pixel3", "raspi4", SPACE_NAME)),
    ],
)
def test_bad_tokens_are_refused_on_reads_too(shared: App, token: str, call: Callable) -> None:
    with _client(shared, token=_token_for(token)) as c, pytest.raises(Unauthenticated):
        call(c)


@pytest.mark.parametrize("form", ["basic", "bare", "empty"])
def test_malformed_authorization_header(shared: App, form: str) -> None:
    header = {"basic": f"Basic {TOK['team-a']}", "bare": TOK["team-a"], "empty": "Bearer "}[form]
    with grpc.insecure_channel(f"127.0.0.1:{shared.port}") as ch:
        stub = pb_grpc.LatencyOracleStub(ch)
        for method, req in (("GetDevice", pb.GetDeviceRequest(name="pixel3", space=SPACE_NAME)),
                            ("DeleteDevice", pb.DeleteDeviceRequest(name="x", space=SPACE_NAME))):
            with pytest.raises(grpc.RpcError) as info:
                getattr(stub, method)(req, timeout=10, metadata=(("authorization", header),))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, method


def test_admins_may_act_on_every_device(shared: App) -> None:
    for admin in ("ops", "legacy"):  # a tokens-file admin and the legacy write_token
        owned, unowned = _register(shared, "team-a"), _unowned(shared)
        with _client(shared, admin) as c:
            assert c.add_measurements(owned, _measurements(seed=5), SPACE_NAME).num_samples == 16
            assert c.add_measurements(unowned, _measurements(seed=5), SPACE_NAME).owner == ""
            assert c.delete_device(owned, SPACE_NAME) and c.delete_device(unowned, SPACE_NAME)
    mine = _register(shared, "legacy")
    with _client(shared, "team-a") as a:
        assert a.get_device(mine, SPACE_NAME).owner == "admin"  # the legacy token's tenant
        with pytest.raises(PermissionDenied):
            a.delete_device(mine, SPACE_NAME)


def test_anonymous_reads_when_tenants_are_configured(shared: App) -> None:
    owned = _register(shared, "team-a")
    with _client(shared) as anon:
        assert anon.get_device(owned, SPACE_NAME).owner == "team-a"  # visible by default
        assert anon.rank(SPACE_NAME, SPACE.sample(3, rng=0), [owned]).num_architectures == 3


def test_registry_rechecks_the_owner_in_the_write(shared: App) -> None:
    """A replica's stale view of the owner cannot let a write through: the registry checks
    the owner on the locked row."""
    assert shared.oracle is not None
    owned = _register(shared, "team-a")
    genes, lat = _measurements(seed=6)
    with pytest.raises(PermissionDenied):
        shared.oracle.add_measurements(
            DeviceWrite(SPACE_NAME, owned, genes, lat, require_owner="team-b"))
    with pytest.raises(PermissionDenied):
        shared.oracle.delete(DeviceWrite(SPACE_NAME, owned, require_owner="team-b"))
    assert shared.oracle.device(owned, SPACE_NAME).num_samples == 8


# ------------------------------------------------------------------ visibility
@pytest.mark.parametrize(
    ("who", "call"),
    [
        ("team-b", lambda c, n: c.get_device(n, SPACE_NAME)),
        ("team-b", lambda c, n: c.get_device(f"{SPACE_NAME}/{n}")),
        ("team-b", lambda c, n: c.rank(SPACE_NAME, SPACE.sample(3, rng=0), ["pixel3", n])),
        ("team-b", lambda c, n: c.compare_devices("pixel3", n, SPACE_NAME)),
        ("team-b", lambda c, n: c.suggest_references(SPACE_NAME, 3, device=n)),
        (None, lambda c, n: c.get_device(n, SPACE_NAME)),
        (None, lambda c, n: c.rank(SPACE_NAME, SPACE.sample(3, rng=0), n)),
    ],
)
def test_private_devices_are_invisible_to_other_tenants(private: App, who, call) -> None:
    owned = _register(private, "team-a")
    with _client(private, who) as c, pytest.raises(DeviceNotFound) as info:
        call(c, owned)
    # exactly what a device that does not exist gets
    with _client(private, who) as c, pytest.raises(DeviceNotFound) as missing:
        c.get_device("no-such-device", SPACE_NAME)
    assert info.value.message == missing.value.message.replace("no-such-device", owned)


def test_private_listing(private: App) -> None:
    a_dev, b_dev, unowned = (_register(private, "team-a"), _register(private, "team-b"),
                             _unowned(private))

    def names(who):
        with _client(private, who) as c:
            return {d.name for d in c.list_devices(SPACE_NAME)}

    seen_by = {who: names(who) for who in ("team-a", "team-b", None, "ops", "legacy")}
    assert a_dev in seen_by["team-a"] and b_dev not in seen_by["team-a"]
    assert b_dev in seen_by["team-b"] and a_dev not in seen_by["team-b"]
    assert a_dev not in seen_by[None] and b_dev not in seen_by[None]
    for who, seen in seen_by.items():
        assert {"pixel3", unowned} <= seen, who  # table and unowned devices: everyone
    assert {a_dev, b_dev} <= seen_by["ops"] and {a_dev, b_dev} <= seen_by["legacy"]
    with _client(private, "team-a") as a:  # the owner uses it as usual
        assert a.rank(SPACE_NAME, SPACE.sample(3, rng=0), a_dev).num_architectures == 3
        assert a.compare_devices(a_dev, "pixel3", SPACE_NAME).num_predicted > 0
    with _client(private, "team-b") as b, pytest.raises(PermissionDenied):
        b.delete_device(a_dev, SPACE_NAME)  # writes: PERMISSION_DENIED, hidden or not


def test_read_token_required_with_tenants(nb201_model, tmp_path) -> None:
    app = _start(nb201_model, tmp_path, read_token_required=True)
    try:
        with _client(app) as anon:
            assert anon.health() == "SERVING"
            with pytest.raises(Unauthenticated):
                anon.list_devices(SPACE_NAME)
        with _client(app, "team-b") as b:
            assert b.list_devices(SPACE_NAME)
    finally:
        app.stop(0)


def test_tokens_file_change_is_picked_up(nb201_model, tmp_path) -> None:
    app = _start(nb201_model, tmp_path, tokens_reload_s=0.05)
    try:
        with _client(app, "team-a") as a:
            assert a.list_devices(SPACE_NAME)
        path = Path(app.settings.tokens_file)
        path.write_text(f"team-b: sha256:{_sha(TOK['team-b'])}\n")  # team-a revoked
        time.sleep(0.2)
        with _client(app, "team-a") as a, pytest.raises(Unauthenticated):
            a.list_devices(SPACE_NAME)
        with _client(app, "team-b") as b:
            assert b.list_devices(SPACE_NAME)
    finally:
        app.stop(0)


# ------------------------------------------------------------------ fair share
@pytest.fixture(scope="module")
def fair(nb201_model, tmp_path_factory) -> Iterator[App]:
    app = _start(nb201_model, tmp_path_factory.mktemp("fair"), tenant_max_concurrent_rpcs=1)
    yield app
    app.stop(0.5)


class Blocker:
    """Holds the ListDevices calls of one tenant inside the handler until released."""

    def __init__(self, app: App, tenant: str, monkeypatch) -> None:
        assert app.oracle is not None
        self.release = threading.Event()
        real = app.oracle.list_devices

        def list_devices(space: str = ""):
            if current_caller().tenant == tenant:
                self.release.wait(30)
            return real(space)

        monkeypatch.setattr(app.oracle, "list_devices", list_devices)


def _hold(app: App, who: str | None, blocker: Blocker, tenant: str) -> threading.Thread:
    done: list = []

    def run() -> None:
        with _client(app, who) as c:
            done.append(c.list_devices(SPACE_NAME))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while app.tenancy.fair_share.in_flight(tenant) < 1:
        assert time.monotonic() < deadline, "the held call never started"
        time.sleep(0.01)
    thread.done = done  # type: ignore[attr-defined]
    return thread


def _throttled(tenant: str, limit: str) -> float:
    return metrics.REGISTRY.get_sample_value(
        "oracle_tenant_throttled_total", {"tenant": tenant, "limit": limit}) or 0.0


def test_tenant_over_its_concurrency_limit_gets_retry_info(fair: App, monkeypatch) -> None:
    blocker = Blocker(fair, "team-a", monkeypatch)
    before = _throttled("team-a", "concurrency")
    held = _hold(fair, "team-a", blocker, "team-a")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{fair.port}") as ch:
            stub = pb_grpc.LatencyOracleStub(ch)
            with pytest.raises(grpc.RpcError) as info:
                stub.Rank.with_call(
                    pb.RankRequest(space=SPACE_NAME, devices=["pixel3"]), timeout=10,
                    metadata=(("authorization", f"Bearer {TOK['team-a']}"),))
            # refused before the request is parsed: garbage bytes get the same answer
            raw = ch.unary_unary("/latency_oracle.v1.LatencyOracle/Rank")
            with pytest.raises(grpc.RpcError) as garbage:
                raw(b"\xff\xff\xff", timeout=10,
                    metadata=(("authorization", f"Bearer {TOK['team-a']}"),))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert garbage.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        status = rpc_status.from_call(info.value)
        assert status is not None and status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
        assert len(retry) == 1
        delay = error_details_pb2.RetryInfo()
        retry[0].Unpack(delay)
        assert 0 < delay.retry_delay.ToNanoseconds() <= 30e9
        with _client(fair, "team-a") as a, pytest.raises(Overloaded) as sdk:
            a.rank(SPACE_NAME, SPACE.sample(3, rng=0), "pixel3")
        assert sdk.value.retry_after and sdk.value.retry_after > 0
        assert "team-a" in sdk.value.message and "1 concurrent" in sdk.value.message
        # meanwhile other tenants, and anonymous callers, are served
        with _client(fair, "team-b") as b, _client(fair) as anon:
            assert b.rank(SPACE_NAME, SPACE.sample(3, rng=0), "pixel3").num_architectures == 3
            assert anon.list_devices(SPACE_NAME)
        assert _throttled("team-a", "concurrency") == before + 3
    finally:
        blocker.release.set()
        held.join(30)
    assert held.done  # type: ignore[attr-defined]  # the held call completed normally
    with _client(fair, "team-a") as a:  # and the slot is free again
        assert a.list_devices(SPACE_NAME)


def test_anonymous_callers_share_one_tenant(fair: App, monkeypatch) -> None:
    blocker = Blocker(fair, "anonymous", monkeypatch)
    held = _hold(fair, None, blocker, "anonymous")
    try:
        with _client(fair) as other, pytest.raises(Overloaded):  # another channel, same share
            other.list_devices(SPACE_NAME)
        with _client(fair, "team-a") as a:
            assert a.list_devices(SPACE_NAME)
    finally:
        blocker.release.set()
        held.join(30)


def test_tenant_over_its_rate_limit(fair: App) -> None:
    with _client(fair, "rl") as c:  # rate_limit 1/s, burst 2 (tokens file)
        results: list = []
        for _ in range(4):
            try:
                results.append(c.get_device("pixel3", SPACE_NAME).name)
            except Overloaded as exc:
                results.append(exc)
        refused = [r for r in results if isinstance(r, OracleError)]
        assert results[:2] == ["pixel3", "pixel3"] and refused
        assert 0 < refused[0].retry_after <= 1.0 and "rate limit of 1" in refused[0].message
        time.sleep(refused[-1].retry_after + 0.05)
        assert c.get_device("pixel3", SPACE_NAME).name == "pixel3"
    with _client(fair, "team-b") as b:  # not rate limited
        for _ in range(5):
            b.get_device("pixel3", SPACE_NAME)


def _work(tenant: str) -> float:
    return metrics.REGISTRY.get_sample_value(
        "oracle_tenant_work_total", {"tenant": tenant}) or 0.0


def test_tenant_over_its_work_limit(fair: App) -> None:
    """work_limit 10 architectures x devices per s, bucket 1000 (tokens file): two Ranks of
    300 x 2 devices are admitted (the second one overdraws the bucket), the third is
    refused before its request is read, with the time to pay the debt back as RetryInfo."""
    before, work_before = _throttled("wk", "work"), _work("wk")
    genes = SPACE.sample(300, rng=3)
    with _client(fair, "wk") as c:
        for _ in range(2):
            res = c.rank(SPACE_NAME, genes, ["pixel3", "samsung_a50"])
            assert res.num_architectures == 300
        assert _work("wk") == work_before + 1200
        with pytest.raises(Overloaded) as info:
            c.rank(SPACE_NAME, genes, ["pixel3", "samsung_a50"])
        # debt ~200 at 10/s: ~20 s (less what refilled meanwhile)
        assert 10 < info.value.retry_after <= 20
        assert "work limit of 10 architectures" in info.value.message
        assert c.list_devices(SPACE_NAME)  # calls that are not charged work still pass
        assert c.get_device("pixel3", SPACE_NAME).name == "pixel3"
    with grpc.insecure_channel(f"127.0.0.1:{fair.port}") as ch:
        raw = ch.unary_unary("/latency_oracle.v1.LatencyOracle/Rank")
        with pytest.raises(grpc.RpcError) as garbage:  # refused before the bytes are parsed
            raw(b"\xff\xff\xff", timeout=10, metadata=(("authorization", f"Bearer {TOK['wk']}"),))
    assert garbage.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(garbage.value)
    assert status is not None
    retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(retry) == 1
    assert _throttled("wk", "work") == before + 2
    assert _work("wk") == work_before + 1200  # refused calls are not charged
    with _client(fair, "team-b") as b:  # another tenant (no work limit) is served meanwhile
        assert b.rank(SPACE_NAME, genes, ["pixel3", "samsung_a50"]).num_architectures == 300
    assert fair.tenancy.fair_share.in_flight("wk") == 0


# ------------------------------------------------------------------------ logs
def _secrets_in(text: str) -> list[str]:
    found = []
    for name, token in TOK.items():
        digest = hashlib.sha256(token.encode()).digest()
        for form in (token, digest.hex(), digest.hex().upper(),
                     base64.b64encode(digest).decode()):
            if form in text:
                found.append(f"{name}: {form[:6]}...")
    return found


def test_audit_lines_and_no_token_or_hash_in_logs(tmp_path) -> None:
    tokens = _tokens_file(tmp_path)
    args = ["--spaces", SPACE_NAME, "--data-dir", str(tmp_path), "--cache-dir", str(TEST_CACHE),
            "--holdout-devices", ",".join(nb201_non_train_devices()), "--grace-s", "1",
            "--tokens-file", str(tokens), "--log-level", "DEBUG", "--tenant-visibility", "own"]
    mine = unique_name("audit")
    expected = []
    with server_process(args, env={"ORACLE_WRITE_TOKEN": TOK["legacy"]}) as srv:
        srv.wait_serving()
        app = type("A", (), {"port": srv.port})

        def attempt(who: str | None, kind: str, name: str, code: str, tenant: str) -> None:
            with _client(app, token=_token_for(who)) as c:  # type: ignore[arg-type]
                try:
                    _attempt(kind, c, name)
                except OracleError as exc:
                    assert exc.code.name == code, (who, kind, exc)
                else:
                    assert code == "OK", (who, kind)
            rpc = {"register": "RegisterDevice", "add": "AddMeasurements",
                   "delete": "DeleteDevice"}[kind]
            device = f"{SPACE_NAME}/{name}" if code not in ("UNAUTHENTICATED",) else ""
            expected.append((tenant, rpc, device, code))

        attempt("team-a", "register", mine, "OK", "team-a")
        attempt("team-b", "add", mine, "PERMISSION_DENIED", "team-b")
        attempt(None, "delete", mine, "UNAUTHENTICATED", "anonymous")
        attempt("forged", "register", mine, "UNAUTHENTICATED", "-")
        attempt("gone", "add", mine, "UNAUTHENTICATED", "-")
        attempt("hash-of-a", "delete", mine, "UNAUTHENTICATED", "-")
        attempt("team-a", "add", mine, "OK", "team-a")
        attempt("team-a", "delete", "pixel3", "FAILED_PRECONDITION", "team-a")
        attempt("legacy", "register", mine, "ALREADY_EXISTS", "admin")
        attempt("ops", "delete", mine, "OK", "ops")
        for who in ("team-b", "forged", "gone", None):  # reads with every kind of token
            with _client(app, token=_token_for(who)) as c, contextlib.suppress(Unauthenticated):
                c.list_devices(SPACE_NAME)
        assert srv.terminate(30) == 0
    text = "\n".join(srv.lines)
    assert _secrets_in(text) == []
    records = [json.loads(line) for line in srv.lines if line.startswith("{")]
    audit = [(r["tenant"], r["rpc"], r["device"], r["code"]) for r in records if r.get("audit")]
    assert audit == expected
    for r in records:
        if r.get("audit"):
            assert r["logger"] == "oracle_server.audit" and r["msg"].startswith("audit tenant=")
