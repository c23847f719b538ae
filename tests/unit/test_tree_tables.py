"""Tree tables (``predictor/tree_tables.py``): the exact fast form of the LightGBM proxy.

The reference is the proxy itself (``Proxy.predict`` = LightGBM ``Booster.predict`` + the
log-linear part): the tables must agree to 1e-9 relative on random and table architectures,
for every column and column subset, through save/load, and in Rank.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from client_sdk.spaces import get_space
from oracle_server.oracle import Oracle
from oracle_server.predictor import LatencyModel, ProxyConfig, build_model
from oracle_server.predictor import tree_tables as tt
from oracle_server.predictor.proxy import Proxy, train_proxy
from oracle_server.store import REGISTERED, Device, DeviceStore

# small but real: 4-leaf trees as the default proxy, few rounds, non-test devices only
FAST = ProxyConfig(num_rounds=40)
DEVICES = {
    "fbnet": ("1080ti_1", "2080ti_32", "silver_4114", "titan_rtx_1"),
    "ofa_mbv3": ("2080ti_1", "titan_xp_32", "v100_64"),
}
RTOL = 1e-9


def _genes(space, n: int = 1500, seed: int = 3) -> np.ndarray:
    return np.concatenate([space.sample(n, seed), space.table.genes[:n]])


@pytest.fixture(scope="module", params=sorted(DEVICES))
def model(request: pytest.FixtureRequest) -> LatencyModel:
    m = build_model(request.param, basis_devices=DEVICES[request.param], config=FAST)
    assert m.proxy.tables is not None, "the default proxy form must be tabulated"
    return m


def test_tables_equal_the_trees(model: LatencyModel) -> None:
    genes = _genes(model.space)
    fast = model.basis(genes)
    ref = model.basis(genes, model.features(genes), reference=True)
    np.testing.assert_allclose(fast, ref, rtol=RTOL, atol=0)
    assert not np.array_equal(fast[:, 0], fast[:, 1])  # columns are distinct devices


def test_column_subsets_equal_the_trees(model: LatencyModel) -> None:
    genes = _genes(model.space, 500, 9)
    ref = model.proxy.predict(model.features(genes))
    part = model.basis(genes, columns=[2, 0])
    np.testing.assert_allclose(part[:, [0, 2]], ref[:, [0, 2]], rtol=RTOL, atol=0)
    assert np.all(np.delete(part, [0, 2], axis=1) == 1.0)


def test_non_canonical_ofa_genes() -> None:
    """Inactive OFA blocks: their kernel/expand genes do not change the prediction."""
    m = build_model("ofa_mbv3", basis_devices=DEVICES["ofa_mbv3"], config=FAST)
    sp = m.space
    genes = sp.sample(400, 5)
    odd = genes.copy()
    inactive = tt.inactive_mask(sp, genes)
    assert inactive.any()
    rng = np.random.default_rng(0)
    odd[inactive] = rng.integers(0, 3, inactive.sum())
    np.testing.assert_allclose(m.basis(odd), m.basis(odd, reference=True), rtol=RTOL, atol=0)
    np.testing.assert_allclose(m.basis(odd), m.basis(genes), rtol=RTOL, atol=0)


def test_save_load_round_trip(model: LatencyModel, tmp_path: Path) -> None:
    model.proxy.save(tmp_path / "p")
    assert (tmp_path / "p" / tt.TABLES_FILE).exists()
    again = Proxy.load(tmp_path / "p")
    assert again.tables is not None
    genes = _genes(model.space, 300)
    np.testing.assert_array_equal(again.tables.log_basis(genes),
                                  model.proxy.tables.log_basis(genes))
    with np.load(tmp_path / "p" / tt.TABLES_FILE, allow_pickle=False) as arrays:
        assert "tables" in arrays.files
    assert again._model_list is None  # trees parsed only when the reference path needs them
    feats = model.space.features(genes)
    np.testing.assert_array_equal(again.predict(feats), model.proxy.predict(feats))


def test_old_artifact_gets_tables_on_load(tmp_path: Path) -> None:
    m = build_model("fbnet", basis_devices=DEVICES["fbnet"][:2], config=FAST,
                    cache_dir=tmp_path)
    (target,) = [p for p in tmp_path.iterdir() if p.name.startswith("fbnet-")]
    (target / "proxy" / tt.TABLES_FILE).unlink()  # as written before the tables existed
    again = build_model("fbnet", basis_devices=DEVICES["fbnet"][:2], config=FAST,
                        cache_dir=tmp_path)
    assert again.proxy.tables is not None
    assert (target / "proxy" / tt.TABLES_FILE).exists()
    genes = _genes(m.space, 200)
    np.testing.assert_allclose(again.basis(genes), m.basis(genes, reference=True),
                               rtol=RTOL, atol=0)


def test_deeper_trees_fall_back_to_the_trees() -> None:
    """Trees reading more than 3 variables are not tabulated; the reference path serves."""
    sp = get_space("fbnet")
    rows = np.arange(1500)
    cols = [sp.table.devices.index(d) for d in DEVICES["fbnet"][:2]]
    proxy = train_proxy(sp.name, sp.features(sp.table.genes[rows]),
                        sp.table.latency_ms[rows][:, cols], DEVICES["fbnet"][:2], rows,
                        ProxyConfig(num_rounds=20, num_leaves=31, min_data_in_leaf=2))
    proxy.build_tables()
    assert proxy.tables is None
    with pytest.raises(tt.Unsupported):
        tt.build_tables(sp, proxy._models, proxy.log_linear_weights)


def test_verify_detects_a_wrong_table(model: LatencyModel) -> None:
    tables = model.proxy.tables
    assert tt.verify(tables, model.proxy.predict, model.space, 300) <= RTOL
    saved = tables.tables[1].copy()
    try:
        tables.tables[1][:] += 1e-3
        assert tt.verify(tables, model.proxy.predict, model.space, 300) > 1e-4
    finally:
        tables.tables[1][:] = saved


def test_rank_with_registered_head_matches_reference(model: LatencyModel) -> None:
    sp = model.space
    store = DeviceStore.in_memory({sp.name: model})
    oracle = Oracle(store)
    rows = np.random.default_rng(2).choice(len(sp.table.genes), 10, replace=False)
    truth = sp.table.latency_ms[rows, sp.table.devices.index(sp.table.devices[-1])]
    head = model.fit_head(sp.table.genes[rows], truth)
    store.add_device(Device(sp.name, "reg", REGISTERED, head))
    names = ["reg", model.basis_devices[0]]
    batch = sp.sample(3000, 8)
    fast = oracle.rank(sp.name, batch, names, return_uncertainty=True)
    feats = model.features(batch)
    basis = model.basis(batch, feats, reference=True)
    for r in fast.rankings:
        want = r.device.head.predict(basis, feats.astype(np.float64), model.descriptors(batch))
        np.testing.assert_allclose(r.latency_ms, want.latency_ms.astype(np.float32),
                                   rtol=1e-6)
    chunked = Oracle(store, predict_chunk=1000)  # chunking changes nothing
    again = chunked.rank(sp.name, batch, names, return_uncertainty=True)
    for a, b in zip(fast.rankings, again.rankings, strict=True):
        np.testing.assert_array_equal(a.latency_ms, b.latency_ms)


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_flops_params_bit_identical_to_the_space(name: str) -> None:
    sp = get_space(name)
    genes = np.concatenate([sp.sample(5000, 11), sp.table.genes])
    flops, params = tt.flops_params(sp, genes)
    np.testing.assert_array_equal(flops, sp.flops(genes))
    np.testing.assert_array_equal(params, sp.params(genes))
    tt.check_features(sp, genes)  # raises Unsupported on any bit of difference


def test_numpy_gather_equals_numba_kernel(model: LatencyModel) -> None:
    """The numpy path (serving while numba loads: variables and gather) computes the same
    cells and adds in the kernels' order: same bits."""
    tt.start_kernel(wait=True)
    tables = model.proxy.tables
    genes = _genes(model.space, 700, 4)
    fast = tables.log_basis(genes)
    kernels = tt._KERNELS
    assert kernels is not None, "numba kernels did not load"
    assert tables._fused_ok(kernels), "fused variables differ from numpy's"
    try:
        tt._KERNELS = None
        np.testing.assert_array_equal(tables.log_basis(genes), fast)
    finally:
        tt._KERNELS = kernels


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.int64])
def test_fused_variables_equal_numpy_bit_for_bit(model: LatencyModel, dtype) -> None:
    """The numba variables (MACs / params in numpy's pairwise order, log1p, float32, bins,
    inactive OFA genes) equal ``_variables_numpy``, for any gene dtype and slices."""
    tt.start_kernel(wait=True)
    tables = model.proxy.tables
    assert tables._fused_ok(tt._KERNELS)
    sp = model.space
    genes = np.concatenate([sp.sample(3000, 21), sp.table.genes]).astype(dtype)
    if sp.name == "ofa_mbv3":  # non-canonical: inactive blocks with any kernel / expand
        raw = np.random.default_rng(5).integers(0, sp.cardinalities, (2000, sp.num_genes))
        genes = np.concatenate([genes, raw.astype(dtype)])
    want = tables._variables_numpy(genes)
    for part in (genes, genes[1:1500], genes[::3]):
        got = tables._variables_fused(tt._KERNELS, part)
        ref = want if part is genes else tables._variables_numpy(part)
        for a, b in zip(got, ref, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


def test_fused_variables_checked_before_use(model: LatencyModel,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A fused pass that disagreed with numpy's would not be used (numpy serves)."""
    tt.start_kernel(wait=True)
    fresh = tt.TreeTables(model.space, model.proxy.tables.thresholds,
                          *(getattr(model.proxy.tables, a) for a in (
                              "groups", "luts", "lut", "offsets", "tables", "w_extra", "w0")))
    real = tt.TreeTables._variables_fused

    def off_by_one(self, kernels, genes):
        xt, extra = real(self, kernels, genes)
        xt[-2] += 1  # a wrong bin
        return xt, extra

    genes = model.space.sample(500, 2)
    want = model.proxy.tables.log_basis(genes)
    monkeypatch.setattr(tt.TreeTables, "_variables_fused", off_by_one)
    np.testing.assert_array_equal(fresh.log_basis(genes), want)
    assert fresh._fused_checked is False


def test_mixed_slots_address_the_same_cells(model: LatencyModel) -> None:
    """``gather_sum_mixed``'s strides / lut starts give each group's cell as the luts do."""
    tables = model.proxy.tables
    xt, _ = tables._variables_numpy(_genes(model.space, 300, 7))
    for k in range(tables.num_devices):
        slots, mult, nlut = tables._slots(k)
        lut = tables.lut[k]
        for i, row in enumerate(tables.groups[k]):
            want = sum(lut[tables.luts[k][i, s] + xt[row[s]].astype(np.int64)] for s in range(3))
            got = 0
            for s in range(3):
                x = xt[slots[i, s]].astype(np.int64)
                got = got + (lut[mult[i, s] + x] if s >= 3 - nlut[i] else x * mult[i, s])
            np.testing.assert_array_equal(got, want)
        assert np.mean(nlut == 0) > 0.2  # most groups read genes only: no lut load


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_change_nothing(
    model: LatencyModel, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tt, "_PARALLEL_MIN", 1)  # split even small batches
    tt.start_kernel(wait=True)
    tables = model.proxy.tables
    genes = _genes(model.space, 1000, 6)
    tt.set_threads(1)
    one = tables.log_basis(genes)
    single = tables.log_basis(genes, [1])
    odd = tables.log_basis(genes[:7], [2, 0])
    try:
        tt.set_threads(threads)
        np.testing.assert_array_equal(tables.log_basis(genes), one)
        np.testing.assert_array_equal(tables.log_basis(genes, [1]), single)
        np.testing.assert_array_equal(tables.log_basis(genes[:7], [2, 0]), odd)
        assert np.array_equal(odd, one[:7][:, [2, 0]])  # any batch size, same bits
    finally:
        tt.set_threads(1)


def test_busy_pool_does_not_hold_a_call(model: LatencyModel,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A part no pool thread has started (the pool busy with other calls) runs in the
    calling thread: same values, and no wait behind the pool."""
    import threading
    import time

    monkeypatch.setattr(tt, "_PARALLEL_MIN", 1)
    tt.start_kernel(wait=True)
    tables = model.proxy.tables
    genes = _genes(model.space, 500, 8)
    tt.set_threads(1)
    want = tables.log_basis(genes, [0, 1])
    release = threading.Event()
    try:
        tt.set_threads(2)
        assert tt._POOL is not None
        blocker = tt._POOL.submit(release.wait, 30)  # the only pool thread is busy
        start = time.perf_counter()
        got = tables.log_basis(genes, [0, 1])
        assert time.perf_counter() - start < 10
        np.testing.assert_array_equal(got, want)
    finally:
        release.set()
        blocker.result()
        tt.set_threads(1)
