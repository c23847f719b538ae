"""``TransferredBasis``: a space with no table serves its transferred basis columns' own
models (``predictor.transferred_basis``), equal to the formulas they were fit as."""

from __future__ import annotations

import json

import numpy as np
import pytest

from client_sdk.spaces import get_space
from client_sdk.spaces.descriptors import descriptors
from oracle_server.predictor import cross_space
from oracle_server.predictor.model import LatencyModel, build_model
from oracle_server.predictor.transfer_features import rich_descriptors
from oracle_server.predictor.transferred_basis import FLOOR_MS, TransferredBasis


@pytest.fixture(scope="module")
def proxyless() -> tuple:
    sp = get_space("proxyless")
    return sp, cross_space.transferred(sp)


def test_columns_are_the_zero_shot_formulas(proxyless) -> None:
    """Six-descriptor columns: the device's zero-shot layer model on the six descriptors;
    rich columns: the non-negative linear model on the rich descriptors (the definitions
    ``cross_space`` fits), to float rounding (the rich ones are one folded gather)."""
    sp, basis = proxyless
    genes = sp.sample(300, rng=5)
    got = basis.columns(sp, genes)
    assert got.shape == (300, len(basis.devices)) and (got >= FLOOR_MS).all()
    target = descriptors(sp.name, sp.table.genes)[:, :6]
    desc6 = descriptors(sp.name, genes)[:, :6]
    design = cross_space._rich_design(rich_descriptors(sp.name, genes))
    for j, dev in enumerate(basis.devices):
        if dev.endswith(cross_space.RICH_SUFFIX):
            want = design @ cross_space.rich_coef(dev[: -len(cross_space.RICH_SUFFIX)])
        else:
            want = cross_space.device_model(dev, target).predict_ms(desc6)
        np.testing.assert_allclose(got[:, j], np.maximum(want, FLOOR_MS), rtol=1e-9,
                                   err_msg=dev)


def test_any_column_subset_equals_the_full_columns(proxyless) -> None:
    sp, basis = proxyless
    genes = sp.sample(200, rng=6)
    full = basis.columns(sp, genes)
    rich = [j for j, d in enumerate(basis.devices) if d.endswith(cross_space.RICH_SUFFIX)]
    for cols in ([0], [rich[0]], [rich[2], 1, rich[0], 3], list(range(0, len(full[0]), 7))):
        np.testing.assert_allclose(basis.columns(sp, genes, cols), full[:, cols], rtol=1e-12)
    assert basis.columns(sp, genes[:0], [0, rich[0]]).shape == (0, 2)


def test_params_round_trip_through_json(proxyless) -> None:
    sp, basis = proxyless
    again = TransferredBasis.from_params(json.loads(json.dumps(basis.to_params())))
    assert again == basis
    genes = sp.sample(50, rng=7)
    np.testing.assert_array_equal(again.columns(sp, genes), basis.columns(sp, genes))
    sub = basis.subset(basis.devices[3:9])
    np.testing.assert_array_equal(sub.columns(sp, genes), basis.columns(sp, genes)[:, 3:9])


def test_served_model_reads_the_transferred_columns(tmp_path) -> None:
    """A space with no table: ``basis`` evaluates the columns' models (unread columns 1.0),
    the proxy is trained on the same values, and the artifact keeps them (cache load)."""
    model = build_model("proxyless", cache_dir=tmp_path)
    sp = model.space
    assert model.transferred is not None and not model.basis_reads_features
    assert model.transferred.devices == model.basis_devices
    genes = sp.sample(100, rng=8)
    full = model.basis(genes)
    np.testing.assert_array_equal(full, model.transferred.columns(sp, genes))
    part = model.basis(genes, columns=[4, 2])
    np.testing.assert_array_equal(part[:, [2, 4]], full[:, [2, 4]])
    assert (np.delete(part, [2, 4], axis=1) == 1.0).all()
    # the trees approximate the same columns (the proxy's own fit, held-out archs)
    trees = model.basis(genes, model.features(genes), reference=True)
    rho = [np.corrcoef(np.log(trees[:, j]), np.log(full[:, j]))[0, 1]
           for j in range(full.shape[1])]
    assert np.median(rho) > 0.9, np.median(rho)
    loaded = LatencyModel.load(next(p for p in tmp_path.iterdir() if p.is_dir()))
    assert loaded.transferred == model.transferred
    np.testing.assert_array_equal(loaded.basis(genes), full)


def test_a_bundled_space_keeps_its_proxy() -> None:
    from tests.support.nb201 import TEST_CACHE

    model = build_model("fbnet", cache_dir=TEST_CACHE)
    assert model.transferred is None


def test_shared_layer_inputs_give_the_same_predictions(proxyless) -> None:
    """One ``LayerInputs`` read by every six-descriptor column's ensemble: the same values,
    bit for bit, as each head computing its own design / power-law / FLOPs inputs."""
    from oracle_server.predictor.layer_head import LayerHead, LayerInputs

    sp, basis = proxyless
    desc6 = descriptors(sp.name, sp.sample(200, rng=9))[:, :6]
    shared = LayerInputs(desc6)
    six = [m["six"] for m in basis.members if "six" in m][:6]
    assert {LayerHead.from_params(p).kind for p in six} >= {"ensemble"}
    for params in six:
        head = LayerHead.from_params(params)
        np.testing.assert_array_equal(head.predict_ms(shared), head.predict_ms(desc6))
    with pytest.raises(ValueError, match="non-negative"):
        LayerInputs(-desc6)
