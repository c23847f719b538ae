"""The Rank fast paths give exactly what the straightforward computation gives.

* ``_order`` on big float32 batches (one 64-bit key sort) and on 16-bit dense-rank keys;
* ``table_rows`` by mixed-radix code lookup vs the sorted byte keys;
* ``LatencyModel.basis(columns=...)`` (only the needed tree models) vs the full proxy;
* ``Oracle.rank`` by table row (NAS-Bench-201) vs proxy + heads on the request's genes.
"""

from __future__ import annotations

import numpy as np
import pytest

from client_sdk.spaces import get_space
from oracle_server.oracle import Oracle, predict
from oracle_server.predictor import LatencyModel, build_model
from oracle_server.ranking import order as _order
from oracle_server.ranking import stable_argsort_f32 as _stable_argsort_f32
from oracle_server.store import REGISTERED, Device, DeviceStore
from tests.helpers import HELP_NB201_REFS, TEST_CACHE, nb201_non_train_devices


def _reference_order(lat: np.ndarray, top_k: int, budget: float | None) -> np.ndarray:
    idx = np.arange(lat.size) if budget is None else np.flatnonzero(lat <= budget)
    sel = idx[np.argsort(lat[idx], kind="stable")]
    return (sel[:top_k] if top_k else sel).astype(np.uint32)


@pytest.mark.parametrize("top_k", [0, 1, 7, 3000, 20_000, 50_000])
@pytest.mark.parametrize("budget", [None, 0.0, 3.0, 100.0])
def test_big_batch_order_is_the_stable_sort(top_k: int, budget: float | None) -> None:
    rng = np.random.default_rng(top_k)
    lat = rng.integers(0, 6, 20_000).astype(np.float32)  # many ties
    lat[::7] = rng.random(lat[::7].shape).astype(np.float32) * 6
    lat[3] = -0.0
    got = _order(lat, top_k, budget)
    np.testing.assert_array_equal(got, _reference_order(lat, top_k, budget))
    assert got.dtype == np.uint32
    _, ranks = np.unique(lat, return_inverse=True)
    keyed = _order(lat, top_k, budget, ranks.astype(np.uint16))
    np.testing.assert_array_equal(keyed, _reference_order(lat, top_k, budget))


def test_key_sort_declines_nan_and_negative() -> None:
    values = np.ones(10_000, dtype=np.float32)
    values[5] = np.nan
    assert _stable_argsort_f32(values) is None
    values[5] = -1.0
    assert _stable_argsort_f32(values) is None
    values[5] = np.nan
    np.testing.assert_array_equal(_order(values, 0, None), _reference_order(values, 0, None))


def test_table_rows_code_lookup_equals_key_search() -> None:
    space = get_space("nasbench201")
    genes = space.sample(5000, rng=0)
    expected = space._table_rows_by_key(genes)
    np.testing.assert_array_equal(space.table_rows(genes), expected)
    np.testing.assert_array_equal(space.table_rows(genes.astype(np.uint8)), expected)
    np.testing.assert_array_equal(space.table_rows(space.table.genes), np.arange(15625))
    for bad in (5, -1, 300):
        odd = genes.astype(np.int64)
        odd[3, 2] = bad
        np.testing.assert_array_equal(space.table_rows(odd), space._table_rows_by_key(odd))
        assert space.table_rows(odd)[3] == -1
    assert space.table_rows(genes[:0]).shape == (0,)
    assert get_space("fbnet")._row_codes is None  # 9**22 genes: sorted keys


@pytest.fixture(scope="module")
def nb201_model() -> LatencyModel:
    return build_model("nasbench201", nb201_non_train_devices(), cache_dir=TEST_CACHE)


def test_basis_columns_are_the_full_proxy_columns(nb201_model: LatencyModel) -> None:
    m = nb201_model
    proxy_only = LatencyModel(m.space, m.proxy, m.cost_matrix, m.basis_cv, None)
    genes = m.space.sample(300, rng=4)
    full = proxy_only.basis(genes)
    part = proxy_only.basis(genes, columns=[2, 0])
    np.testing.assert_array_equal(part[:, [0, 2]], full[:, [0, 2]])
    assert np.all(np.delete(part, [0, 2], axis=1) == 1.0)


def test_rank_by_table_row_equals_proxy_and_heads(nb201_model: LatencyModel) -> None:
    space = nb201_model.space
    genes = space.genes_of_index(HELP_NB201_REFS)
    lat = space.table.device_column("pixel2")[space.table_rows(genes)]
    head = nb201_model.fit_head(genes, lat)
    registered = Device("nasbench201", "reg", REGISTERED, head)
    store = DeviceStore.in_memory({"nasbench201": nb201_model}, [registered])
    oracle = Oracle(store)
    assert "nasbench201" in oracle.table_spaces
    names = ["pixel3", "reg", "silver_4114"]
    batch = space.sample(6000, rng=5)
    fast = oracle.rank("nasbench201", batch, names, top_k=100, max_latency_ms=5.0,
                       return_uncertainty=True)
    # the same store without the table path, in chunks (chunking changes nothing either)
    general = Oracle(store, table_fast_path=False, predict_chunk=2500)
    assert not general.table_spaces
    slow = general.rank("nasbench201", batch, names, top_k=100, max_latency_ms=5.0,
                        return_uncertainty=True)
    for a, b in zip(fast.rankings, slow.rankings, strict=True):
        np.testing.assert_array_equal(a.latency_ms, b.latency_ms)
        np.testing.assert_array_equal(a.order, b.order)
        np.testing.assert_array_equal(a.lower_ms, b.lower_ms)
        np.testing.assert_array_equal(a.upper_ms, b.upper_ms)
        np.testing.assert_array_equal(a.prob_within_budget, b.prob_within_budget)


def test_proxy_path_reads_only_needed_columns_and_matches(nb201_model: LatencyModel) -> None:
    m = nb201_model
    proxy_only = LatencyModel(m.space, m.proxy, m.cost_matrix, m.basis_cv, None)
    store = DeviceStore.in_memory({"nasbench201": proxy_only})
    genes = m.space.genes_of_index(HELP_NB201_REFS)
    lat = m.space.table.device_column("pixel2")[m.space.table_rows(genes)]
    head = proxy_only.fit_head(genes, lat)
    registered = Device("nasbench201", "reg", REGISTERED, head)
    devices = [store.device("nasbench201", "pixel3"), registered]
    batch = m.space.sample(400, rng=6)
    got = predict(proxy_only, batch, devices)  # proxy + heads on the request's genes
    features = proxy_only.features(batch)
    basis = proxy_only.basis(batch, features)
    for d, p in zip(devices, got, strict=True):
        want = d.head.predict(basis, features.astype(np.float64))
        np.testing.assert_array_equal(p.latency_ms, want.latency_ms)
        np.testing.assert_array_equal(p.log_sigma, want.log_sigma)
