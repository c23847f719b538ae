"""Idempotent writes: a request id on RegisterDevice / AddMeasurements / DeleteDevice.

A repeat of an id returns the first reply (byte for byte) and changes nothing; the same id
with a different body is INVALID_ARGUMENT naming ``request_id``. The id is recorded in the
registry in the write's own transaction, so it holds across replicas sharing the database
(SQLite file, PostgreSQL) and across restarts; records expire after the TTL. An existing
database without the table gets it on start-up (migration).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import sqlalchemy as sa

from client_sdk import OracleClient
from client_sdk.errors import AlreadyExists, InvalidArgument
from client_sdk.proto.latency_oracle.v1 import oracle_pb2 as pb
from client_sdk.proto.latency_oracle.v1 import oracle_pb2_grpc as pb_grpc
from client_sdk.spaces import get_space
from oracle_server import registry as registry_module
from oracle_server.app import App
from oracle_server.registry import Registry
from oracle_server.registry_schema import Base
from oracle_server.writes import DeviceWrite, Receipt
from tests.e2e.conftest import make_settings
from tests.helpers import PG_URL, postgres_available, unique_name

SPACE = get_space("nasbench201")
PG_SKIP = postgres_available()
NB = "nasbench201"


def _measurements(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    genes = SPACE.sample(n, rng=seed)
    return genes, SPACE.table.device_column("raspi4")[SPACE.table_rows(genes)]


def _packed(genes: np.ndarray) -> pb.Architectures:
    g8 = np.ascontiguousarray(genes, dtype=np.uint8)
    return pb.Architectures(packed=pb.PackedGenes(num_genes=g8.shape[1], genes=g8.tobytes()))


def _write_req(message: type, name: str, n: int, seed: int, request_id: str):
    """A ``message`` (RegisterDeviceRequest, AddMeasurementsRequest) of ``n`` measurements."""
    genes, lat = _measurements(n, seed)
    return message(
        name=name, space=NB, archs=_packed(genes), latency_ms=list(lat), request_id=request_id
    )


def _register_req(name: str, n: int, seed: int, request_id: str) -> pb.RegisterDeviceRequest:
    return _write_req(pb.RegisterDeviceRequest, name, n, seed, request_id)


def _add_req(name: str, n: int, seed: int, request_id: str) -> pb.AddMeasurementsRequest:
    return _write_req(pb.AddMeasurementsRequest, name, n, seed, request_id)


def _stored_count(url: str, name: str) -> int:
    reg = Registry(url)
    try:
        return int(reg.load(NB, name).latency_ms.shape[0])
    finally:
        reg.close()


def _start(nb201_model, data_dir: Path, url: str, sync_interval_s: float = 0.2) -> App:
    settings = make_settings(data_dir, database_url=url, sync_interval_s=sync_interval_s)
    return App(settings, models={NB: nb201_model}).start(block_until_ready=True, timeout_s=60)


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shared.db'}"


def _pg_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """A fresh schema of the shared PostgreSQL database, dropped afterwards."""
    if PG_SKIP is not None:
        pytest.skip(PG_SKIP)
    schema = f"idem_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _pg_schema_url(schema)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=[pytest.param("sqlite_url", id="sqlite"),
                        pytest.param("pg_url", id="postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """The test's database: a SQLite file, then a fresh PostgreSQL schema."""
    return request.getfixturevalue(request.param)


# ------------------------------------------------------------ one server
def test_same_request_id_twice_is_applied_once_with_the_same_reply(server: App) -> None:
    name = unique_name("idem")
    url = server.settings.resolved_database_url
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = pb_grpc.LatencyOracleStub(ch)
        reg = _register_req(name, 10, 1, str(uuid.uuid4()))
        first = stub.RegisterDevice(reg, timeout=30)
        again = stub.RegisterDevice(reg, timeout=30)  # not ALREADY_EXISTS: the first reply
        assert again.SerializeToString(deterministic=True) == first.SerializeToString(
            deterministic=True
        )
        add = _add_req(name, 5, 2, str(uuid.uuid4()))
        added = stub.AddMeasurements(add, timeout=30)
        assert added.num_samples == 15
        for _ in range(2):
            replayed = stub.AddMeasurements(add, timeout=30)
            assert replayed == added
        assert _stored_count(url, name) == 15
        assert stub.GetDevice(pb.GetDeviceRequest(name=name, space=NB)).num_samples == 15

        delete = pb.DeleteDeviceRequest(name=name, space=NB, request_id=str(uuid.uuid4()))
        assert stub.DeleteDevice(delete, timeout=30).deleted
        assert stub.DeleteDevice(delete, timeout=30).deleted  # the first reply, not False
        fresh = pb.DeleteDeviceRequest(name=name, space=NB, request_id=str(uuid.uuid4()))
        assert not stub.DeleteDevice(fresh, timeout=30).deleted


def test_same_request_id_different_body_is_invalid_argument(client: OracleClient) -> None:
    name = unique_name("idem")
    rid = f"job-7/step-{uuid.uuid4().hex[:8]}"
    client.register_device(name, NB, _measurements(10, 3), request_id=rid)
    with pytest.raises(InvalidArgument) as err:  # same id, other measurements
        client.register_device(name, NB, _measurements(10, 4), request_id=rid)
    assert err.value.field == "request_id"
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(InvalidArgument) as err:  # same id, another operation
        client.add_measurements(name, _measurements(3, 5), NB, request_id=rid)
    assert err.value.field == "request_id"
    assert "different RegisterDevice request" in err.value.message
    assert client.get_device(name, NB).num_samples == 10  # nothing applied

    add_id = str(uuid.uuid4())
    client.add_measurements(name, _measurements(3, 6), NB, request_id=add_id)
    with pytest.raises(InvalidArgument, match="request_id"):
        client.add_measurements(name, _measurements(3, 7), NB, request_id=add_id)
    assert client.get_device(name, NB).num_samples == 13
    client.delete_device(name, NB)


def test_sdk_sends_a_fresh_request_id_per_write_and_checks_given_ones(
    client: OracleClient,
) -> None:
    seen: list[str] = []
    real_call = client._call

    def spy(method, request, timeout_s=None):
        if hasattr(request, "request_id"):
            seen.append(request.request_id)
        return real_call(method, request, timeout_s)

    client._call = spy  # type: ignore[method-assign]
    name = unique_name("idem")
    client.register_device(name, NB, _measurements(10, 8))
    client.add_measurements(name, _measurements(3, 9), NB)
    client.add_measurements(name, _measurements(3, 9), NB)  # same body, new logical write
    assert client.get_device(name, NB).num_samples == 16
    client.delete_device(name, NB)
    assert len(seen) == 4 and len(set(seen)) == 4
    assert all(uuid.UUID(s).version == 4 for s in seen)
    for bad in ("", "has space", "x" * 129, "é"):
        with pytest.raises(InvalidArgument, match="request_id"):
            client.delete_device(name, NB, request_id=bad)


def test_server_rejects_malformed_request_id(server: App) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = pb_grpc.LatencyOracleStub(ch)
        req = pb.DeleteDeviceRequest(name="x", space=NB, request_id="a b")
        with pytest.raises(grpc.RpcError) as err:
            stub.DeleteDevice(req, timeout=10)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "request_id" in err.value.details()


# --------------------------------------------------- replicas and restarts
def test_request_ids_hold_across_replicas(nb201_model, tmp_path: Path, db_url: str) -> None:
    # No polling during the test: B learns of A's device only when a write needs it.
    a = _start(nb201_model, tmp_path / "a", db_url, sync_interval_s=60)
    b = _start(nb201_model, tmp_path / "b", db_url, sync_interval_s=60)
    name = unique_name("idem")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{a.port}") as ca, grpc.insecure_channel(
            f"127.0.0.1:{b.port}"
        ) as cb:
            sa_, sb = pb_grpc.LatencyOracleStub(ca), pb_grpc.LatencyOracleStub(cb)
            reg = _register_req(name, 10, 11, str(uuid.uuid4()))
            first = sa_.RegisterDevice(reg, timeout=30)
            assert sb.RegisterDevice(reg, timeout=30) == first  # the retry lands on B
            with pytest.raises(grpc.RpcError):  # B has not polled: reads do not see it yet
                sb.GetDevice(pb.GetDeviceRequest(name=name, space=NB), timeout=5)
            # ... but a write through B right after the registration through A works.
            add = _add_req(name, 4, 12, str(uuid.uuid4()))
            added = sb.AddMeasurements(add, timeout=30)
            assert sa_.AddMeasurements(add, timeout=30) == added
            assert added.num_samples == 14
            assert _stored_count(db_url, name) == 14

            # The same write sent to both replicas at once: exactly one applies it.
            race = _add_req(name, 4, 13, str(uuid.uuid4()))
            replies: list[pb.Device] = []
            errors: list[BaseException] = []

            def send(stub: pb_grpc.LatencyOracleStub) -> None:
                try:
                    replies.append(stub.AddMeasurements(race, timeout=30))
                except BaseException as exc:  # reported below
                    errors.append(exc)

            threads = [threading.Thread(target=send, args=(s,)) for s in (sa_, sb, sa_, sb)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert errors == []
            assert len(replies) == 4 and all(r == replies[0] for r in replies)
            assert replies[0].num_samples == 18
            assert _stored_count(db_url, name) == 18
            sa_.DeleteDevice(pb.DeleteDeviceRequest(name=name, space=NB), timeout=30)
    finally:
        a.stop(0)
        b.stop(0)


def test_request_ids_survive_restart(nb201_model, tmp_path: Path, db_url: str) -> None:
    name = unique_name("idem")
    reg = _register_req(name, 10, 21, str(uuid.uuid4()))
    add = _add_req(name, 5, 22, str(uuid.uuid4()))
    app = _start(nb201_model, tmp_path / "first", db_url)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{app.port}") as ch:
            stub = pb_grpc.LatencyOracleStub(ch)
            first = stub.RegisterDevice(reg, timeout=30)
            added = stub.AddMeasurements(add, timeout=30)
    finally:
        app.stop(0)
    app = _start(nb201_model, tmp_path / "second", db_url)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{app.port}") as ch:
            stub = pb_grpc.LatencyOracleStub(ch)
            assert stub.RegisterDevice(reg, timeout=30) == first
            assert stub.AddMeasurements(add, timeout=30) == added
            assert stub.GetDevice(pb.GetDeviceRequest(name=name, space=NB)).num_samples == 15
    finally:
        app.stop(0)
    assert _stored_count(db_url, name) == 15


# ------------------------------------------------------- registry level
def _receipt(request_id: str, reply=lambda result: b"reply") -> Receipt:
    return Receipt(request_id, "AddMeasurements", "f" * 64, reply)


def test_request_id_is_recorded_in_the_write_transaction(db_url: str) -> None:
    reg = Registry(db_url)
    name = unique_name("idem")
    try:
        genes, lat = _measurements(10, 31)
        reg.create(DeviceWrite(NB, name, genes, lat))
        # The reply fails inside the transaction: neither the write nor the id is stored.
        def broken(_stored):
            raise RuntimeError("crash between the write and its record")

        with pytest.raises(RuntimeError):
            reg.add_measurements(DeviceWrite(NB, name, *_measurements(3, 32),
                                             receipt=_receipt("r1", broken)))
        assert reg.load(NB, name).latency_ms.shape == (10,)
        assert reg.recall("r1") is None
        # The id is already recorded: the write that would record it again is rolled back.
        reg.add_measurements(DeviceWrite(NB, name, *_measurements(3, 33), receipt=_receipt("r2")))
        with pytest.raises(AlreadyExists):
            reg.add_measurements(DeviceWrite(NB, name, *_measurements(3, 34),
                                             receipt=_receipt("r2")))
        assert reg.load(NB, name).latency_ms.shape == (13,)
        recorded = reg.recall("r2")
        assert recorded is not None and recorded.response == b"reply"
        assert recorded.operation == "AddMeasurements"
        reg.delete(DeviceWrite(NB, name))
    finally:
        reg.close()


def test_request_ids_expire_after_the_ttl(sqlite_url, monkeypatch) -> None:
    import datetime as dt

    reg = Registry(sqlite_url, request_ttl_s=60)
    name = unique_name("idem")
    try:
        reg.create(DeviceWrite(NB, name, *_measurements(10, 41), receipt=_receipt("old")))
        reg.add_measurements(DeviceWrite(NB, name, *_measurements(2, 42), receipt=_receipt("new")))
        assert reg.recall("old") is not None
        later = registry_module._now() + dt.timedelta(seconds=61)
        monkeypatch.setattr(registry_module, "_now", lambda: later)
        assert reg.recall("old") is None and reg.recall("new") is None  # expired: unknown
        # An expired id is a new request again (its old record is replaced, not a conflict).
        reg.add_measurements(DeviceWrite(NB, name, *_measurements(2, 43), receipt=_receipt("old")))
        assert reg.recall("old") is not None
        assert reg.purge_requests() == 1  # "new" (61 s old); "old" was just re-recorded
        monkeypatch.undo()
        with reg.engine.connect() as conn:
            ids = conn.execute(sa.text("select request_id from oracle_requests")).scalars().all()
        assert ids == ["old"]
    finally:
        reg.close()
    with pytest.raises(ValueError):
        Registry(sqlite_url, request_ttl_s=0)


# ------------------------------------------------------------- migration
def _old_schema_database(url: str) -> str:
    """A database as the previous version left it: devices and measurements, no
    ``oracle_requests``; returns the name of the device in it."""
    old = sa.MetaData()
    for table in Base.metadata.sorted_tables:
        if table.name != "oracle_requests":
            table.to_metadata(old)
    engine = sa.create_engine(url)
    old.create_all(engine)
    name = unique_name("old")
    genes, lat = _measurements(10, 51)
    now = registry_module._now()
    with engine.begin() as conn:
        device_id = conn.execute(
            old.tables["oracle_devices"].insert().returning(old.tables["oracle_devices"].c.id),
            {"space": NB, "name": name, "contract": {}, "revision": 1, "created_at": now,
             "updated_at": now},
        ).scalar_one()
        conn.execute(old.tables["oracle_measurements"].insert(), [
            {"device_id": device_id, "genes": genes[i].astype(np.uint8).tobytes(),
             "latency_ms": float(lat[i]), "created_at": now}
            for i in range(10)
        ])
    assert not sa.inspect(engine).has_table("oracle_requests")
    engine.dispose()
    return name


def test_existing_database_gets_the_request_table(db_url: str) -> None:
    name = _old_schema_database(db_url)
    reg = Registry(db_url)
    try:
        assert sa.inspect(reg.engine).has_table("oracle_requests")
        indexes = {ix["name"] for ix in sa.inspect(reg.engine).get_indexes("oracle_requests")}
        assert "ix_oracle_requests_created_at" in indexes
        assert reg.load(NB, name).latency_ms.shape == (10,)
        reg.add_measurements(DeviceWrite(NB, name, *_measurements(2, 52), receipt=_receipt("m1")))
        assert reg.recall("m1") is not None
    finally:
        reg.close()


# ----------------------------------------------------------------- tenants
def test_request_ids_are_per_tenant(nb201_model, tmp_path) -> None:
    """One tenant's request id neither answers nor blocks another tenant's write."""
    import hashlib
    import secrets

    tokens = {t: f"{t}-{secrets.token_urlsafe(16)}" for t in ("team-a", "team-b")}
    path = tmp_path / "tokens.yaml"
    path.write_text("".join(
        f"{t}: sha256:{hashlib.sha256(tok.encode()).hexdigest()}\n" for t, tok in tokens.items()
    ))
    settings = make_settings(tmp_path, tokens_file=str(path))
    app = App(settings, models={NB: nb201_model}).start(block_until_ready=True, timeout_s=60)
    rid = str(uuid.uuid4())
    a_name, b_name = unique_name("ta"), unique_name("tb")
    try:
        with OracleClient(f"127.0.0.1:{app.port}", token=tokens["team-a"]) as a, OracleClient(
            f"127.0.0.1:{app.port}", token=tokens["team-b"]
        ) as b:
            first = a.register_device(a_name, NB, _measurements(10, 61), request_id=rid)
            assert first.owner == "team-a"
            # the same id from team-b is a new write of team-b's (not a mismatch, no replay)
            other = b.register_device(b_name, NB, _measurements(10, 62), request_id=rid)
            assert other.owner == "team-b" and other.name == b_name
            again = a.register_device(a_name, NB, _measurements(10, 61), request_id=rid)
            assert again == first  # team-a's retry still gets team-a's first reply
    finally:
        app.stop(0)
