"""Descriptor heads (empirical-Bayes prior from basis devices), FLOPs head, head registry."""

from __future__ import annotations

import numpy as np
import pytest

from oracle_server.predictor.head_fit import HeadFit
from oracle_server.predictor.heads import (
    HEAD_KINDS,
    HEADS,
    HYBRID_COLUMNS,
    FitInputs,
    head_kind,
    predict_log,
    spearman,
)
from oracle_server.predictor.selection import assess, select_head
from tests.unit.descriptor_devices import DescriptorDevices

DEVICES = DescriptorDevices(3000, seed=0)
DESC = DEVICES.desc


def _prior(n_dev: int = 8):
    rng = np.random.default_rng(1)
    thetas = np.abs(rng.normal(0.1, 0.05, size=(n_dev, DESC.shape[1] + 1)))
    return DEVICES.prior(thetas), thetas


def test_prior_recovers_basis_coefficients() -> None:
    prior, thetas = _prior()
    # descriptors are collinear (MACs = dense + depthwise = sum of stages): compare models
    # by their predictions, not coefficient by coefficient
    rel = np.mean([DEVICES.device(t) / DEVICES.device(t).mean() for t in thetas], axis=0)
    np.testing.assert_allclose(prior.design(DESC) @ prior.mu, rel, rtol=0.02)
    assert np.all(np.linalg.eigvalsh(prior.cov) > 0)


@pytest.mark.parametrize("kind", ["descriptor", "hybrid"])
def test_descriptor_heads_rank_a_new_device_from_10_samples(kind: str) -> None:
    prior, thetas = _prior()
    new = thetas.mean(0) * np.r_[1.0, np.linspace(0.5, 1.5, DESC.shape[1])]  # unlike any basis
    y = DEVICES.device(new, 0.02, seed=5)
    rows = np.arange(10)
    cand = head_kind(kind).fit(DEVICES.inputs(rows, y, prior))
    basis = np.exp(np.random.default_rng(2).normal(size=(len(y), 3)))
    pred = predict_log(kind, cand.params, basis, np.zeros((len(y), 2)), DESC)
    assert spearman(pred[10:], y[10:]) > 0.9
    assert spearman(cand.loo_log, np.log(y[rows])) > 0.7


def test_flops_head_ranks_by_macs() -> None:
    y = (DESC[:, 0] + DESC[:, 1]) ** 0.7
    prior, _ = _prior()
    cand = head_kind("flops").fit(DEVICES.inputs(np.arange(12), y, prior))
    pred = predict_log("flops", cand.params, np.ones((len(y), 1)), np.zeros((len(y), 1)), DESC)
    assert spearman(pred, y) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="descriptors"):
        predict_log("flops", cand.params, np.ones((3, 1)), np.zeros((3, 1)), None)


def test_registry_is_complete() -> None:
    assert set(HEAD_KINDS) <= set(HEADS)
    for kind in HEAD_KINDS:
        h = head_kind(kind)
        assert h.name == kind and h.min_samples >= 2
    with pytest.raises(ValueError, match="unknown head kind"):
        head_kind("nope")


def test_select_head_reports_flops_baseline_and_quality() -> None:
    prior, thetas = _prior()
    y = DEVICES.device(thetas[0], 0.01, seed=3)
    rows = np.arange(15)
    basis = np.exp(np.random.default_rng(2).normal(size=(3000, 3)))
    feats = np.zeros((3000, 2))
    head = select_head(basis[rows], feats[rows], y[rows], np.zeros((3, 3)), np.zeros((2, 1)),
                       descriptors=DESC[rows], prior=prior)
    assert np.isfinite(head.flops_spearman)
    assert head.quality in ("good", "low")
    again = HeadFit.from_dict(head.to_dict())
    assert again.quality == head.quality and again.warnings == head.warnings
    pred = again.predict(basis, feats, DESC)
    assert spearman(pred.latency_ms[15:], y[15:]) > 0.8


@pytest.mark.parametrize(
    ("expected", "flops", "n", "quality"),
    [(0.95, 0.5, 10, "good"), (0.7, 0.5, 10, "low"), (0.9, 0.89, 10, "low"),
     (0.99, 0.5, 4, "low"), (float("nan"), 0.5, 10, "low")],
)
def test_assess(expected: float, flops: float, n: int, quality: str) -> None:
    q, advised = assess(expected, flops, n)
    assert q == quality
    assert advised == (n if q == "good" else max(2 * n, 20))


def test_scaled_grid_equals_dual_ridge_grid() -> None:
    from oracle_server.predictor.heads import _best_over_grid, _best_over_scaled_grid

    rng = np.random.default_rng(4)
    m, y = rng.normal(size=(15, 9)), rng.normal(size=15)
    base = rng.uniform(0.5, 2.0, 9)
    grid = (0.1, 1.0, 10.0)
    b1, loo1, g1 = _best_over_grid(m, lambda g: g * base, grid, y)
    b2, loo2, g2 = _best_over_scaled_grid(m, base, grid, y)
    assert g1 == g2
    np.testing.assert_allclose(b1, b2, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(loo1, loo2, rtol=1e-7, atol=1e-9)


def test_hybrid_reads_only_its_top_columns() -> None:
    prior, thetas = _prior()
    y = DEVICES.device(thetas[2], 0.02, seed=9)
    basis = np.exp(np.random.default_rng(3).normal(size=(len(y), 10)))
    basis[:, 6] = y * 1.3  # one basis device monotone with the target
    rows = np.arange(12)
    inp = FitInputs(basis[rows], np.zeros((12, 2)), y[rows], np.zeros((3, 10)),
                    np.zeros((2, 1)), DESC[rows], prior)
    cand = head_kind("hybrid").fit(inp)
    cols = head_kind("hybrid").columns(cand.params)
    assert len(cols) == HYBRID_COLUMNS and 6 in cols
    masked = basis.copy()
    masked[:, [c for c in range(10) if c not in cols]] = np.nan  # never read
    pred = predict_log("hybrid", cand.params, masked, np.zeros((len(y), 2)), DESC)
    assert np.isfinite(pred).all() and spearman(pred[12:], y[12:]) > 0.9


def test_selection_falls_back_to_flops_when_it_ranks_the_samples_better() -> None:
    y = (DESC[:, 0] + DESC[:, 1]) ** 0.7  # exactly monotone in MACs
    basis = np.exp(np.random.default_rng(8).normal(size=(len(y), 4)))  # unrelated to y
    rows = np.arange(15)
    head = select_head(basis[rows], np.zeros((15, 2)), y[rows], np.zeros((3, 4)),
                       np.zeros((2, 1)), kinds=("affine", "nnls_log", "flops"),
                       descriptors=DESC[rows], prior=None)
    assert head.kind == "flops"
    assert head.expected_spearman == pytest.approx(1.0)
    assert any(w.startswith("serving the FLOPs ranking") for w in head.warnings)
    pred = head.predict(basis, np.zeros((len(y), 2)), DESC)
    assert spearman(pred.latency_ms, y) == pytest.approx(1.0)


def test_powerlaw_head_recovers_a_memory_bound_device() -> None:
    """A device whose latency follows activation traffic, not MACs (like this machine's CPU
    on FBNet): the power-law head finds it from 10 samples where ranking by MACs cannot."""
    acts, macs = DESC[:, 3], DESC[:, 0] + DESC[:, 1]
    y = 0.5 * acts**0.8 * macs**0.1 * np.exp(np.random.default_rng(3).normal(0, 0.01, len(acts)))
    rows = np.arange(10)
    inp = FitInputs(np.ones((10, 1)), np.zeros((10, 1)), y[rows], np.zeros((1, 1)),
                    np.zeros((1, 1)), DESC[rows], None)
    cand = head_kind("powerlaw").fit(inp)
    pred = predict_log("powerlaw", cand.params, np.ones((len(y), 1)), np.zeros((len(y), 1)),
                       DESC)
    rest = slice(10, None)
    assert spearman(pred[rest], np.log(y[rest])) > 0.97
    assert spearman(pred[rest], np.log(y[rest])) > spearman(np.log(macs[rest]), y[rest]) + 0.05
    np.testing.assert_allclose(np.exp(pred[rest]), y[rest], rtol=0.1)



def test_a_basis_free_head_anchors_its_interval_on_itself() -> None:
    """Served by descriptor-only heads, a device needs no proxy column at all: its interval's
    leverage is taken along its own prediction (anchor -1), so Rank runs no proxy for it."""
    from oracle_server.predictor.columns import basis_columns

    y = (DESC[:, 0] + DESC[:, 1]) ** 0.7 * DESC[:, 3] ** 0.2
    basis = np.exp(np.random.default_rng(8).normal(size=(len(y), 4)))  # unrelated to y
    rows = np.arange(15)
    head = select_head(basis[rows], np.zeros((15, 2)), y[rows], np.zeros((3, 4)),
                       np.zeros((2, 1)), kinds=("affine", "flops", "powerlaw"),
                       descriptors=DESC[rows], prior=None)
    assert set((head.params.get("members") and [m["kind"] for m in head.params["members"]])
               or [head.kind]) <= {"flops", "powerlaw"}
    assert head.sigma["anchor"] == -1 and basis_columns(head) == set()
    ones = np.ones((len(y), 4))  # what Rank passes when no column is read
    pred = head.predict(ones, np.zeros((len(y), 2)), DESC)
    np.testing.assert_array_equal(pred.latency_ms,
                                  head.predict(basis, np.zeros((len(y), 2)), DESC).latency_ms)
    assert np.all(np.isfinite(pred.log_sigma)) and np.all(pred.log_sigma >= head.sigma["s"])
    far = np.argmax(np.abs(np.log(pred.latency_ms) - head.sigma["u_mean"]))
    assert pred.log_sigma[far] == pred.log_sigma.max()  # widest where it extrapolates most
    with pytest.raises(ValueError, match="own prediction"):
        head.log_sigma(ones)
