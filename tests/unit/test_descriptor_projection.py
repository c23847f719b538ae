"""Rank's input fast path: heads linear in a few descriptor / feature combinations.

``descriptors(space, genes, matrix)`` folds ``matrix`` into the per-(position, choice)
tables, ``LatencyModel.features_projected`` folds a feature matrix into the one-hot layout;
``HeadKind.predict_log_projected`` predicts from those combinations. The reference is the
full (n, D) descriptors, the (n, F) features and ``predict_log`` (the path every head had
before).
"""

from __future__ import annotations

import numpy as np
import pytest

from client_sdk.spaces import get_space
from client_sdk.spaces.descriptors import descriptors
from oracle_server.oracle import Oracle, descriptor_projections, input_projections, predict
from oracle_server.predictor import ProxyConfig, build_model
from oracle_server.predictor.head_fit import HeadFit
from oracle_server.predictor.heads import (
    HEAD_KINDS,
    HEADS,
    FitInputs,
    feature_projection,
    fit_candidate,
    head_kind,
    predict_log,
    predict_log_projected,
    projection,
)
from oracle_server.predictor.priors import fit_prior
from oracle_server.store import REGISTERED, Device, DeviceStore
from tests.helpers import TEST_CACHE

RTOL = 1e-9
PROJECTED = ("descriptor", "hybrid", "flops", "powerlaw", "nnls_desc", "nnls_eb6", "nnls_eb")


def _genes(space, n: int = 2000, seed: int = 5) -> np.ndarray:
    return np.concatenate([space.sample(n, seed), space.table.genes[:500]])


@pytest.mark.parametrize("name", ["nasbench201", "fbnet", "ofa_mbv3"])
@pytest.mark.parametrize("width", [1, 3, 7])
def test_folded_matrix_equals_descriptors_times_matrix(name: str, width: int) -> None:
    sp = get_space(name)
    genes = _genes(sp)
    full = descriptors(name, genes)
    mean = np.maximum(full.mean(0), 1.0)  # some are all zero (NB-201 depthwise MACs)
    m = np.random.default_rng(width).normal(size=(full.shape[1], width))
    m /= mean[:, None]  # comparable terms (MACs ~1e8, kernels ~1e2)
    got = descriptors(name, genes, m)
    assert got.shape == (len(genes), width)
    scale = np.abs(full) @ np.abs(m) + 1e-300  # sum of |terms|
    assert np.max(np.abs(got - full @ m) / scale) < 1e-12
    # any integer gene dtype gives the same descriptors
    for dtype in (np.uint8, np.int16, np.int64):
        np.testing.assert_array_equal(descriptors(name, genes.astype(dtype)), full)


@pytest.fixture(scope="module")
def fbnet_setup():
    sp = get_space("fbnet")
    genes = sp.sample(400, rng=0)
    desc = descriptors("fbnet", genes)
    rng = np.random.default_rng(1)
    thetas = np.abs(rng.normal(0.1, 0.05, size=(6, desc.shape[1] + 1)))
    lat = np.stack([np.c_[np.ones(len(desc)), desc / desc.mean(0)] @ t for t in thetas], axis=1)
    prior = fit_prior(desc, lat)
    y = lat[:, 0] * np.exp(rng.normal(0, 0.05, len(lat)))
    # 3 basis columns, as many as fbnet_model's basis devices, so the synthetic affine and
    # hybrid heads (which name basis columns) can be served by that model too
    basis = np.exp(rng.normal(size=(len(genes), 3)))
    rows = np.arange(12)
    inp = FitInputs(basis[rows], np.zeros((12, 2)), y[rows], np.zeros((3, 3)), np.zeros((2, 1)),
                    desc[rows], prior)
    cands = {k: head_kind(k).fit(inp) for k in (*PROJECTED, "affine")}
    return sp, basis, desc, cands


def _members(cands, kinds):
    return [{"kind": k, "params": cands[k].params} for k in kinds]


def _cases(cands):
    out = [(k, cands[k].params) for k in (*PROJECTED, "affine")]
    mixed = _members(cands, ("descriptor", "affine", "powerlaw", "flops", "hybrid"))
    out.append(("ensemble", {"members": mixed}))
    out.append(("ensemble", {"members": mixed, "weights": [0.1, 0.2, 0.3, 0.15, 0.25]}))
    out.append(("ensemble", {"members": _members(cands, ("affine",))}))
    return out


def test_every_projected_kind_predicts_as_the_reference(fbnet_setup) -> None:
    _, basis, desc, cands = fbnet_setup
    feats = np.zeros((len(desc), 2))
    for kind, params in _cases(cands):
        m = projection(kind, params, desc.shape[1])
        assert m is not None and m.shape == (desc.shape[1], head_kind(kind).num_projected(params))
        ref = predict_log(kind, params, basis, feats, desc)
        got = predict_log_projected(kind, params, basis, feats[:, :0], desc @ m)
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=0, err_msg=kind)


def test_heads_without_descriptors_project_to_nothing() -> None:
    for name, kind in HEADS.items():
        if kind.reads_descriptors:
            assert name in PROJECTED, f"{name} reads descriptors: give it a projection"
        elif name != "ensemble":
            assert kind.projection({}, 9).shape == (9, 0) and kind.num_projected({}) == 0
        if not kind.reads_features and name != "ensemble":
            assert kind.feature_projection({}, 7).shape == (7, 0)
            assert kind.num_feature_projected({}) == 0
    assert projection("ensemble", {"members": []}, 9).shape == (9, 0)
    assert feature_projection("ensemble", {"members": []}, 7).shape == (7, 0)


@pytest.fixture(scope="module")
def fbnet_model():
    return build_model("fbnet", basis_devices=("1080ti_1", "2080ti_32", "silver_4114"),
                       config=ProxyConfig(num_rounds=40), cache_dir=TEST_CACHE)


def test_rank_with_descriptor_heads_matches_the_reference(fbnet_model, fbnet_setup) -> None:
    """Oracle.rank (folded projections) == full descriptors + ``HeadFit.predict``."""
    _, _, _, cands = fbnet_setup
    model = fbnet_model
    sp = model.space
    store = DeviceStore.in_memory({sp.name: model})
    # real heads fit on the model's basis (hybrid reads basis columns), plus synthetic ones
    rows = np.random.default_rng(3).choice(len(sp.table.genes), 10, replace=False)
    fitted = model.fit_head(sp.table.genes[rows], sp.table.device_column("samsung_a50")[rows])
    heads = {"fitted": fitted}
    assert len(model.basis_devices) == 3
    for kind, params in _cases(cands):  # every case, affine and hybrid included
        sigma = {"anchor": -1, "n": 10, "u_mean": 1.0, "u_sxx": 2.0, "s": 0.1}
        heads[f"{kind}-{len(heads)}"] = HeadFit(kind, 12, 0.9, 0.9, 0.0, params, sigma)
    for name, head in heads.items():
        store.add_device(Device(sp.name, name, REGISTERED, head))
    names = [*heads, model.basis_devices[1]]
    devices = Oracle(store)._rank_devices(sp.name, names)
    assert descriptor_projections(model, devices) is not None
    batch = sp.sample(3000, 8)
    fast = Oracle(store).rank(sp.name, batch, names, return_uncertainty=True)
    ref = predict(model, batch, devices, project_inputs=False)
    for r, want in zip(fast.rankings, ref, strict=True):
        got = predict(model, batch, [r.device])[0]
        np.testing.assert_allclose(got.latency_ms, want.latency_ms, rtol=RTOL, atol=0)
        np.testing.assert_allclose(got.log_sigma, want.log_sigma, rtol=RTOL, atol=1e-15)
        np.testing.assert_array_equal(r.latency_ms, got.latency_ms.astype(np.float32))
    # reference without the tree tables either: features + trees + full descriptors
    feats = model.features(batch)
    basis = model.basis(batch, feats, reference=True)
    for r in fast.rankings:
        want = r.device.head.predict(basis, feats.astype(np.float64), model.descriptors(batch))
        np.testing.assert_allclose(r.latency_ms, want.latency_ms.astype(np.float32), rtol=1e-6)


@pytest.fixture(scope="module")
def ofa_model():
    return build_model("ofa_mbv3", basis_devices=("2080ti_1", "titan_xp_32", "v100_64"),
                       config=ProxyConfig(num_rounds=40), cache_dir=TEST_CACHE)


@pytest.mark.parametrize("kernels", ["numba", "numpy"])
@pytest.mark.parametrize("space", ["fbnet", "ofa_mbv3"])
def test_features_projected_equals_features_times_matrix(space, kernels, fbnet_model,
                                                         ofa_model, monkeypatch):
    """With the numba kernels, and with the numpy variables serving before they load."""
    from oracle_server.predictor import tree_tables as tt

    tt.start_kernel(wait=True)
    if kernels == "numpy":
        monkeypatch.setattr(tt, "_KERNELS", None)
    model = fbnet_model if space == "fbnet" else ofa_model
    assert model.projects_features
    sp = model.space
    genes = _genes(sp)
    if space == "ofa_mbv3":  # non-canonical: inactive blocks with any kernel / expand
        raw = np.random.default_rng(4).integers(0, sp.cardinalities, (1000, sp.num_genes))
        genes = np.concatenate([genes, raw.astype(genes.dtype)])
    feats = model.features(genes).astype(np.float64)
    m = np.random.default_rng(1).normal(size=(feats.shape[1], 3))
    got = model.features_projected(genes, m)
    scale = np.abs(feats) @ np.abs(m)
    assert np.max(np.abs(got - feats @ m) / scale) < 1e-12


def _fitted_heads(model, seed: int = 3) -> dict[str, HeadFit]:
    """Every candidate kind fit on 12 table measurements, plus ensembles mixing them."""
    sp = model.space
    rows = np.random.default_rng(seed).choice(len(sp.table.genes), 12, replace=False)
    genes = sp.table.genes[rows]
    y = sp.table.device_column("samsung_a50" if sp.name == "fbnet" else "v100_32")[rows]
    feats = model.features(genes)
    basis = model.basis(genes, feats)
    desc = model.descriptors(genes)
    sigma = {"anchor": -1, "n": 12, "u_mean": 1.0, "u_sxx": 2.0, "s": 0.1}
    heads = {}
    for kind in HEAD_KINDS:
        cand = fit_candidate(kind, basis, feats, y, model.proxy.linear_weights,
                             model.cost_matrix, desc, model.prior)
        heads[kind] = HeadFit(kind, 12, 0.9, 0.9, 0.0, cand.params, sigma)
    members = [{"kind": k, "params": heads[k].params} for k in HEAD_KINDS]
    heads["ensemble-all"] = HeadFit("ensemble", 12, 0.9, 0.9, 0.0, {"members": members}, sigma)
    few = [m for m in members if m["kind"] in ("adaproxy", "counts", "powerlaw")]
    heads["ensemble-few"] = HeadFit("ensemble", 12, 0.9, 0.9, 0.0,
                                    {"members": few, "weights": [0.5, 0.2, 0.3]}, sigma)
    return heads


@pytest.mark.parametrize("space", ["fbnet", "ofa_mbv3"])
def test_every_head_kind_projects_as_the_reference(space, fbnet_model, ofa_model) -> None:
    """Each kind (and ensembles): projected inputs through the head == ``predict_log``."""
    model = fbnet_model if space == "fbnet" else ofa_model
    genes = model.space.sample(2000, 11)
    feats = model.features(genes).astype(np.float64)
    basis = model.basis(genes, feats)
    desc = model.descriptors(genes)
    for name, head in _fitted_heads(model).items():
        dm = projection(head.kind, head.params, desc.shape[1])
        fm = feature_projection(head.kind, head.params, feats.shape[1])
        if head.kind in ("affine", "nnls_log"):
            assert dm.shape[1] == fm.shape[1] == 0
        ref = predict_log(head.kind, head.params, basis, feats, desc)
        got = predict_log_projected(head.kind, head.params, basis, feats @ fm, desc @ dm)
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=0, err_msg=name)


@pytest.mark.parametrize("space", ["fbnet", "ofa_mbv3"])
def test_rank_with_every_head_kind_matches_the_reference(space, fbnet_model, ofa_model):
    """Oracle.rank (projected inputs, tree tables) == features + full descriptors + trees."""
    model = fbnet_model if space == "fbnet" else ofa_model
    sp = model.space
    store = DeviceStore.in_memory({sp.name: model})
    heads = _fitted_heads(model, seed=5)
    for name, head in heads.items():
        store.add_device(Device(sp.name, name, REGISTERED, head))
    names = [*heads, model.basis_devices[0]]
    batch = sp.sample(2500, 12)
    fast = Oracle(store).rank(sp.name, batch, names, return_uncertainty=True)
    devices = [r.device for r in fast.rankings]
    assert input_projections(model, devices, feature_free=False) is not None  # fast path
    ref = predict(model, batch, devices, project_inputs=False)
    feats = model.features(batch)
    trees = model.basis(batch, feats, reference=True)
    desc = model.descriptors(batch)
    for r, want in zip(fast.rankings, ref, strict=True):
        got = predict(model, batch, [r.device])[0]
        np.testing.assert_allclose(got.latency_ms, want.latency_ms, rtol=RTOL, atol=0,
                                   err_msg=r.device.name)
        np.testing.assert_array_equal(r.latency_ms, got.latency_ms.astype(np.float32))
        slow = r.device.head.predict(trees, feats.astype(np.float64), desc)
        np.testing.assert_allclose(got.latency_ms, slow.latency_ms, rtol=RTOL, atol=0)
