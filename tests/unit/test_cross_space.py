"""The transferred basis of a space with no table (``predictor.cross_space``) and the rich
descriptors it transfers on (``predictor.transfer_features``)."""

from __future__ import annotations

import numpy as np
import pytest

from client_sdk.spaces import Table, get_space
from client_sdk.spaces.descriptors import descriptors
from oracle_server.predictor import cross_space
from oracle_server.predictor.transfer_features import (
    BASE_FROM_RICH,
    NUM_RICH,
    RICH_NAMES,
    layer_row,
    rich_descriptors,
)


@pytest.mark.parametrize("space", ["nasbench201", "fbnet", "ofa_mbv3", "proxyless",
                                   "mobilenetv2"])
def test_rich_descriptors_refine_the_six(space: str) -> None:
    sp = get_space(space)
    genes = sp.sample(300, rng=4)
    rich = rich_descriptors(space, genes)
    assert rich.shape == (300, NUM_RICH) == (300, len(RICH_NAMES))
    assert np.isfinite(rich).all() and (rich >= 0).all()
    np.testing.assert_allclose(rich @ BASE_FROM_RICH, descriptors(space, genes)[:, :6],
                               rtol=1e-9)


def test_rich_descriptors_of_a_definition_equal_its_layer_lists() -> None:
    sp = get_space("proxyless")
    genes = sp.sample(5, rng=2)
    expected = np.array([np.sum([layer_row(la) for la in sp.layers(g)], axis=0)
                         for g in genes])
    np.testing.assert_allclose(rich_descriptors("proxyless", genes), expected, rtol=1e-9)


def test_roofline_columns_are_bounded_by_compute_and_traffic() -> None:
    rich = rich_descriptors("fbnet", get_space("fbnet").sample(50, rng=1))
    roof = [i for i, n in enumerate(RICH_NAMES) if n.startswith("roof_")]
    traffic = rich[:, 3] + rich[:, 4] + rich[:, 5]  # weights + activations
    for i in roof:
        assert (rich[:, i] >= traffic - 1e-6).all()
    assert (np.diff(rich[:, roof], axis=1) <= 1e-6).all()  # higher ratio: less compute-bound


def _clear_caches() -> None:
    for fn in (cross_space._sources, cross_space._space_sample, cross_space._source,
               cross_space.rich_coef):
        fn.cache_clear()


@pytest.fixture(scope="module")
def transferred() -> tuple[Table, Table]:
    """FBNet as if it had no table (from NB-201 and OFA), built twice."""
    sp = get_space("fbnet")
    _clear_caches()
    first = cross_space.transfer_table(sp, exclude=("fbnet",))
    _clear_caches()
    return first, cross_space.transfer_table(sp, exclude=("fbnet",))


def test_excluded_space_latencies_are_never_read(monkeypatch: pytest.MonkeyPatch) -> None:
    fbnet = get_space("fbnet")
    assert fbnet.table is fbnet.table  # the spy tells tables apart by identity
    read: list[tuple[Table, str]] = []
    original = Table.device_column

    def spy(self: Table, device: str) -> np.ndarray:
        read.append((self, device))
        return original(self, device)

    monkeypatch.setattr(Table, "device_column", spy)
    _clear_caches()
    table = cross_space.transfer_table(fbnet, exclude=("fbnet",))
    assert read, "the source tables were not read through the spy"
    assert not any(t is fbnet.table for t, _ in read)
    sources = {id(get_space(s).table) for s in ("nasbench201", "ofa_mbv3")}
    assert {id(t) for t, _ in read} == sources
    assert set(table.devices) == set(cross_space.transfer_devices(("fbnet",)))


def test_excluded_space_is_never_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    original = cross_space.get_space

    def spy(name: str):
        asked.append(name)
        return original(name)

    monkeypatch.setattr(cross_space, "get_space", spy)
    _clear_caches()
    cross_space.transfer_table(get_space("ofa_mbv3"), exclude=("ofa_mbv3",))
    assert asked and "ofa_mbv3" not in asked


def test_transferred_table_shape_and_positivity(transferred: tuple[Table, Table]) -> None:
    table, _ = transferred
    sp = get_space("fbnet")
    devices = cross_space.transfer_devices(("fbnet",))
    assert table.devices == devices
    assert table.latency_ms.shape == (len(sp.table.genes), len(devices))
    assert np.isfinite(table.latency_ms).all() and (table.latency_ms > 0).all()
    six = [d for d in devices if not d.endswith(cross_space.RICH_SUFFIX)]
    assert [d + cross_space.RICH_SUFFIX for d in six] == [
        d for d in devices if d.endswith(cross_space.RICH_SUFFIX)]
    # a transferred device is not a constant: it ranks the new space
    assert (table.latency_ms.std(axis=0) > 0).all()


def test_transferred_table_is_deterministic(transferred: tuple[Table, Table]) -> None:
    a, b = transferred
    assert a.devices == b.devices
    np.testing.assert_array_equal(a.latency_ms, b.latency_ms)


def test_fingerprint_names_the_method() -> None:
    sp = get_space("proxyless")
    fp = cross_space.fingerprint(sp)
    assert fp == cross_space.fingerprint(sp) and len(fp) == 16
