"""Proxy and LatencyModel: training, safe save/load round trips, cache, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from client_sdk.errors import NotFound
from client_sdk.spaces import get_space
from oracle_server.predictor import LatencyModel, ProxyConfig, build_model
from oracle_server.predictor.proxy import Proxy, train_proxy

TINY = ProxyConfig(num_rounds=10, num_leaves=7)
DEVICES = ("2080ti_1", "titan_xp_32", "v100_64")


@pytest.fixture(scope="module")
def tiny_model() -> LatencyModel:
    return build_model("ofa_mbv3", basis_devices=DEVICES, config=TINY)


@pytest.mark.parametrize("kind", ["lgbm", "mlp"])
def test_proxy_save_load_identical(kind: str, tmp_path: Path) -> None:
    sp = get_space("ofa_mbv3")
    rows = np.arange(600)
    feats = sp.features(sp.table.genes[rows])
    cols = [sp.table.devices.index(d) for d in DEVICES]
    config = ProxyConfig(kind=kind, num_rounds=10, epochs=2, hidden=32)
    proxy = train_proxy(sp.name, feats, sp.table.latency_ms[rows][:, cols], DEVICES, rows, config)
    proxy.save(tmp_path / "p")
    again = Proxy.load(tmp_path / "p")
    x = sp.features(sp.sample(50, 1))
    assert again.devices == DEVICES and again.config == config
    assert np.array_equal(proxy.predict(x), again.predict(x))
    assert proxy.predict(x).shape == (50, 3)
    assert not list((tmp_path / "p").glob("*.pkl")) and not list((tmp_path / "p").glob("*.pt"))


def test_model_save_load_and_cache(tiny_model: LatencyModel, tmp_path: Path) -> None:
    tiny_model.save(tmp_path / "m")
    again = LatencyModel.load(tmp_path / "m")
    genes = tiny_model.space.sample(40, 3)
    assert np.array_equal(tiny_model.basis(genes), again.basis(genes))
    assert again.basis_devices == DEVICES
    first = build_model("ofa_mbv3", basis_devices=DEVICES, config=TINY, cache_dir=tmp_path / "c")
    cached = build_model("ofa_mbv3", basis_devices=DEVICES, config=TINY, cache_dir=tmp_path / "c")
    assert len(list((tmp_path / "c").iterdir())) == 1
    assert np.array_equal(first.basis(genes), cached.basis(genes))


def test_basis_head_and_references(tiny_model: LatencyModel) -> None:
    head = tiny_model.basis_head("v100_64")
    genes = tiny_model.space.sample(20, 4)
    basis = tiny_model.basis(genes)
    assert head.kind == "basis" and 0.5 < head.expected_spearman <= 1.0
    assert np.allclose(head.predict(basis, tiny_model.features(genes)).latency_ms, basis[:, 2])
    refs = tiny_model.suggest_references(8, seed=1)
    assert refs.shape == (8, tiny_model.space.num_genes)
    assert len(np.unique(tiny_model.space.table_rows(refs))) == 8
    with pytest.raises(NotFound):
        tiny_model.basis_head("titan_rtx_64")


def test_unknown_device_is_not_found() -> None:
    with pytest.raises(NotFound):
        build_model("ofa_mbv3", holdout_devices=("nope_1",), config=TINY)


def test_nasbench201_basis_served_from_precomputed_table() -> None:
    model = build_model("nasbench201", basis_devices=("pixel3",),
                        config=ProxyConfig(num_rounds=5, num_leaves=7))
    genes = model.space.table.genes[[5, 17, 9000]]
    direct = model.proxy.predict(model.features(genes))
    assert np.allclose(model.basis(genes), direct)


def test_cache_key_changes_with_the_features(monkeypatch: pytest.MonkeyPatch) -> None:
    from client_sdk.spaces import get_space
    from oracle_server.predictor.model import config_hash, feature_fingerprint

    sp = get_space("nasbench201")
    rows = np.arange(3)
    before = config_hash("nasbench201", ("pixel3",), ProxyConfig(), rows)
    fingerprint = feature_fingerprint("nasbench201")
    assert len(fingerprint) == 16 and int(fingerprint, 16) >= 0  # a hex digest
    assert fingerprint != feature_fingerprint("fbnet")  # it depends on the space's features
    original = type(sp).features
    monkeypatch.setattr(type(sp), "features", lambda self, g: original(self, g) + 1.0)
    assert config_hash("nasbench201", ("pixel3",), ProxyConfig(), rows) != before
    assert feature_fingerprint("nasbench201") != fingerprint
