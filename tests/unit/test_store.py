"""DeviceStore: copy-on-write snapshots, injection, replica sync on a shared registry.

The Oracle reads devices only through a store; these tests use the store's public API (no
private fields), and two stores on one database stand for two replicas.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from client_sdk.errors import (
    AlreadyExists,
    DeviceNotFound,
    FailedPrecondition,
    InvalidArgument,
    SpaceNotFound,
)
from oracle_server import metrics
from oracle_server.oracle import Oracle
from oracle_server.predictor import LatencyModel, build_model
from oracle_server.registry import Registry
from oracle_server.store import REGISTERED, TABLE, Device, DeviceStore
from oracle_server.writes import DeviceWrite
from tests.helpers import (
    HELP_NB201_REFS,
    PG_URL,
    TEST_CACHE,
    nb201_non_train_devices,
    postgres_available,
    unique_name,
)

SPACE = "nasbench201"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model() -> LatencyModel:
    return build_model(SPACE, nb201_non_train_devices(), cache_dir=TEST_CACHE)


def _measurements(model: LatencyModel, device: str = "pixel2", extra: int = 0):
    sp = model.space
    genes = sp.genes_of_index(HELP_NB201_REFS)
    if extra:
        genes = np.concatenate([genes, sp.sample(extra, rng=extra)])
    return genes, sp.table.device_column(device)[sp.table_rows(genes)]


def _device(model: LatencyModel, name: str = "reg", device: str = "pixel2") -> Device:
    genes, lat = _measurements(model, device)
    return Device(SPACE, name, REGISTERED, model.fit_head(genes, lat), genes=genes,
                  latency_ms=lat)


# ------------------------------------------------------------ snapshots, injection
def test_snapshot_is_isolated_from_later_writes(model: LatencyModel) -> None:
    store = DeviceStore.in_memory({SPACE: model})
    before = store.snapshot()
    tables = {d.name for d in before.list(SPACE)}
    assert tables == set(model.basis_devices) and all(d.source == TABLE for d in before)

    added = store.add_device(_device(model))
    after = store.snapshot()
    assert after is not before and after.version > before.version
    assert before.get(SPACE, "reg") is None and (SPACE, "reg") not in before
    assert len(before) == len(tables)
    assert after.get(SPACE, "reg") is added and len(after) == len(tables) + 1
    assert store.device(SPACE, "reg") is added
    assert [d.name for d in store.list_devices(SPACE)][-1] == "reg"  # tables first
    with pytest.raises(TypeError):  # a snapshot's map is read-only
        after.devices[(SPACE, "x")] = added  # type: ignore[index]

    replaced = store.add_device(_device(model, device="raspi4"))
    assert after.get(SPACE, "reg") is added  # the old snapshot still holds the old head
    assert store.device(SPACE, "reg") is replaced


def test_table_prediction_cache_follows_the_head(model: LatencyModel) -> None:
    store = DeviceStore.in_memory({SPACE: model}, [_device(model)])
    first = store.table_prediction(store.device(SPACE, "reg"))
    assert store.table_prediction(store.device(SPACE, "reg")) is first  # cached
    assert first.latency_ms.shape == (model.space.num_architectures,)
    store.add_device(_device(model, device="raspi4"))  # a new head: recomputed
    second = store.table_prediction(store.device(SPACE, "reg"))
    assert second is not first and not np.array_equal(second.latency_ms, first.latency_ms)


def test_in_memory_store_is_read_only_and_checks_spaces(model: LatencyModel) -> None:
    store = DeviceStore.in_memory({SPACE: model})
    genes, lat = _measurements(model)
    with pytest.raises(FailedPrecondition, match="registry"):
        store.register(DeviceWrite(SPACE, "new", genes, lat))
    assert store.sync() == 0
    with pytest.raises(SpaceNotFound):
        store.add_device(Device("fbnet", "x", REGISTERED, model.basis_head("pixel3")))
    with pytest.raises(DeviceNotFound):
        store.device(SPACE, "nope")
    with pytest.raises(FailedPrecondition, match="table device"):
        store.delete(DeviceWrite(SPACE, "pixel3"))


def test_oracle_serves_what_its_store_holds(model: LatencyModel) -> None:
    store = DeviceStore.in_memory({SPACE: model})
    oracle = Oracle(store)
    genes = model.space.sample(500, rng=1)
    with pytest.raises(DeviceNotFound):
        oracle.rank(SPACE, genes, ["reg"])
    dev = store.add_device(_device(model))  # visible to the oracle at once
    res = oracle.rank(SPACE, genes, ["reg", "pixel3"])
    assert res.rankings[0].device is dev
    want = dev.head.predict(*store.table_inputs(SPACE)).latency_ms.astype(np.float32)
    np.testing.assert_array_equal(res.rankings[0].latency_ms,
                                  want[model.space.table_rows(genes)])


def test_device_write_is_one_request_through_the_layers(model: LatencyModel) -> None:
    oracle = Oracle(DeviceStore.in_memory({SPACE: model}))
    write = DeviceWrite("", f"{SPACE}/dev", require_owner="team-a")
    resolved = oracle.resolve(write)
    assert (resolved.space, resolved.name, resolved.require_owner) == (SPACE, "dev", "team-a")
    assert oracle.resolve(resolved) is resolved  # already split: unchanged
    with pytest.raises(InvalidArgument):
        oracle.resolve(DeviceWrite("fbnet", f"{SPACE}/dev"))  # two different spaces
    with pytest.raises(InvalidArgument, match="no measurements"):
        write.measurements()  # a delete carries none
    assert write.map_receipt(lambda result: result) is write  # no receipt: nothing to map


def test_rank_counts_proxy_cache_hits_and_misses(model: LatencyModel) -> None:
    store = DeviceStore.in_memory({SPACE: model})

    def count(result: str) -> float:
        value = metrics.REGISTRY.get_sample_value(
            "oracle_proxy_cache_total", {"space": SPACE, "result": result})
        return value or 0.0

    hits, misses = count("hit"), count("miss")
    genes = model.space.sample(300, rng=2)
    Oracle(store).rank(SPACE, genes, ["pixel3", "silver_4114"])
    assert (count("hit") - hits, count("miss") - misses) == (300, 0)  # per architecture
    Oracle(store, table_fast_path=False).rank(SPACE, genes, ["pixel3"])
    assert (count("hit") - hits, count("miss") - misses) == (300, 300)


def test_store_and_comparison_do_not_import_the_pipeline() -> None:
    """The layering: oracle.py -> comparison.py -> store.py, never back."""
    for module in ("store", "comparison"):
        tree = ast.parse((REPO / "oracle_server" / f"{module}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "oracle_server.oracle" not in imported, module


# ------------------------------------------------------------------- replicas
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty registry database: a SQLite file, or a fresh PostgreSQL schema (other test
    runs share the database, and their devices must not show up in these counts)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    reason = postgres_available()
    if reason is not None:
        pytest.skip(reason)
    import sqlalchemy as sa

    schema = unique_name("store").replace("-", "_")
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.fixture()
def replicas(model: LatencyModel, registry_url: str) -> Iterator[tuple[DeviceStore, DeviceStore]]:
    """Two stores (replicas) on one database, each with its own registry connection."""
    regs = [Registry(registry_url), Registry(registry_url)]
    stores = (DeviceStore({SPACE: model}, regs[0]), DeviceStore({SPACE: model}, regs[1]))
    yield stores
    for store in stores:
        store.stop_polling()
    for reg in regs:
        reg.close()


def test_replica_sync_picks_up_register_update_and_delete(
    model: LatencyModel, replicas: tuple[DeviceStore, DeviceStore]
) -> None:
    a, b = replicas
    name = unique_name("sync")
    genes, lat = _measurements(model)
    made = a.register(DeviceWrite(SPACE, name, genes, lat, contract={"runtime": "tflite"}))
    with pytest.raises(DeviceNotFound):
        b.device(SPACE, name)  # not there until b syncs
    seen = b.snapshot()
    assert b.sync() == 1
    assert seen.get(SPACE, name) is None  # the older snapshot is untouched
    got = b.device(SPACE, name)
    assert (got.source, got.revision, got.num_samples) == (REGISTERED, 1, 10)
    assert got.contract["runtime"] == "tflite"
    np.testing.assert_array_equal(got.latency_ms, made.latency_ms)
    inputs = b.table_inputs(SPACE)  # b refit the head from the stored measurements
    np.testing.assert_allclose(got.head.predict(*inputs).latency_ms,
                               made.head.predict(*inputs).latency_ms, rtol=1e-9)
    assert b.sync() == 0  # nothing new

    more_genes, more_lat = _measurements(model, extra=5)
    a.add_measurements(DeviceWrite(SPACE, name, more_genes[10:], more_lat[10:]))
    assert b.sync() == 1
    assert (b.device(SPACE, name).revision, b.device(SPACE, name).num_samples) == (2, 15)

    with pytest.raises(AlreadyExists):  # b knows it now: refused before the database
        b.register(DeviceWrite(SPACE, name, genes, lat))
    assert a.delete(DeviceWrite(SPACE, name)) is True
    assert b.sync() == 1
    with pytest.raises(DeviceNotFound):
        b.device(SPACE, name)
    assert b.sync() == 0


def test_polling_replica_sees_a_registration(
    model: LatencyModel, replicas: tuple[DeviceStore, DeviceStore]
) -> None:
    a, b = replicas
    name = unique_name("poll")
    genes, lat = _measurements(model)
    thread = b.start_polling(0.05)
    try:
        with pytest.raises(RuntimeError):
            b.start_polling(0.05)  # one poller per store
        a.register(DeviceWrite(SPACE, name, genes, lat))
        deadline = time.monotonic() + 20
        while b.snapshot().get(SPACE, name) is None:
            assert time.monotonic() < deadline, "the polling replica never saw the device"
            time.sleep(0.05)
    finally:
        b.stop_polling()
    assert not thread.is_alive()


def test_register_validates_before_writing(
    model: LatencyModel, replicas: tuple[DeviceStore, DeviceStore]
) -> None:
    a, _ = replicas
    genes, lat = _measurements(model)
    with pytest.raises(InvalidArgument):
        a.register(DeviceWrite(SPACE, "-bad name", genes, lat))
    with pytest.raises(AlreadyExists):
        a.register(DeviceWrite(SPACE, "pixel3", genes, lat))  # a table device's name
    assert a.registry is not None and a.registry.snapshot_revisions() == {}
