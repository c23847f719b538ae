"""Adaptation heads: exact recovery, closed-form LOO, AdaProxy, uncertainty."""

from __future__ import annotations

import numpy as np
import pytest

from oracle_server.predictor.head_fit import HeadFit, Prediction
from oracle_server.predictor.heads import (
    PRIOR_FREE,
    dual_ridge,
    fit_adaproxy,
    fit_candidate,
    log_basis,
    predict_log,
    spearman,
)


def _basis(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.exp(rng.normal(1.0, 0.5, size=(n, 4)))


def test_affine_recovers_log_affine_relation_exactly() -> None:
    basis = _basis(200)
    y = 3.0 * basis[:, 2] ** 0.8  # log y = 0.8 log b2 + log 3
    feats = np.zeros((200, 3))
    cand = fit_candidate("affine", basis[:10], feats[:10], y[:10], np.zeros((4, 4)),
                         np.zeros((3, 1)))
    assert cand.params["basis_index"] == 2
    assert cand.params["a"] == pytest.approx(0.8, abs=1e-9)
    assert np.allclose(np.exp(predict_log("affine", cand.params, basis, feats)), y)
    assert spearman(cand.loo_log, np.log(y[:10])) == pytest.approx(1.0)


def test_nnls_log_recovers_nonnegative_combination() -> None:
    basis = _basis(100, 1)
    y = np.exp(0.5 * np.log(basis[:, 0]) + 0.3 * np.log(basis[:, 3]) + 0.1)
    cand = fit_candidate("nnls_log", basis[:15], np.zeros((15, 2)), y[:15], np.zeros((3, 4)),
                         np.zeros((2, 1)))
    assert np.allclose(cand.params["weights"], [0.5, 0.0, 0.0, 0.3], atol=1e-8)
    assert np.allclose(predict_log("nnls_log", cand.params, basis, np.zeros((100, 2))),
                       np.log(y))


def test_dual_ridge_loo_matches_refitting() -> None:
    rng = np.random.default_rng(2)
    m, y = rng.normal(size=(12, 5)), rng.normal(size=12)
    var = np.array([PRIOR_FREE, 1.0, 0.5, 0.1, 2.0])
    beta, loo = dual_ridge(m, var, y)
    direct = np.linalg.solve(m.T @ m + np.diag(1 / var), m.T @ y)
    assert np.allclose(beta, direct, atol=1e-8)
    for i in range(12):
        keep = np.arange(12) != i
        b_i = np.linalg.solve(m[keep].T @ m[keep] + np.diag(1 / var), m[keep].T @ y[keep])
        assert loo[i] == pytest.approx(m[i] @ b_i, abs=1e-8)


def test_adaproxy_matches_closed_form() -> None:
    """target weights = w * (a + b) + c, L2 on b: compare with the explicit normal equations."""
    rng = np.random.default_rng(3)
    n, f = 10, 6
    feats = rng.integers(0, 2, size=(n, f)).astype(float)
    weights = np.r_[rng.uniform(0.5, 2.0, size=(f, 1)), [[1.0]]]  # (F + 1, 1)
    y = feats @ (weights[:-1, 0] * 1.7) + 0.5 + rng.normal(0, 0.05, n)
    cand = fit_adaproxy(np.log(y)[:, None], feats, y, weights, k=0)
    p = cand.params
    w = weights[:-1, 0]
    # rebuild the same standardised problem and solve it directly
    mu, sd = y.mean(), y.std()
    u = feats @ w
    su = u.std()
    z = feats * w
    scale = su / np.sqrt((z**2).sum(1).mean())
    m = np.c_[np.ones(n), u / su, z * scale]
    var = np.r_[PRIOR_FREE, PRIOR_FREE, np.full(f, p["prior"])]
    beta = np.linalg.solve(m.T @ m + np.diag(1 / var), m.T @ ((y - mu) / sd))
    a = beta[1] * sd / su
    b = beta[2:] * sd * scale
    assert p["a"] == pytest.approx(a, rel=1e-6)
    assert np.allclose(p["b"], b, atol=1e-6)
    assert np.allclose(p["weights"], w * (a + b), atol=1e-6)
    pred = np.exp(predict_log("adaproxy", p, np.log(y)[:, None], feats))
    assert np.allclose(pred, feats @ (w * (a + b)) + p["c"])
    assert np.allclose(pred, (m @ beta) * sd + mu)  # the fitted values of the ridge
    assert spearman(pred, y) > 0.9


def test_counts_head_recovers_additive_costs() -> None:
    rng = np.random.default_rng(4)
    feats = rng.integers(0, 4, size=(60, 3)).astype(float)
    y = feats @ np.array([1.0, 2.5, 0.2]) + 3.0
    cand = fit_candidate("counts", _basis(12), feats[:12], y[:12], np.zeros((4, 4)), np.eye(3))
    pred = np.exp(predict_log("counts", cand.params, _basis(60), feats))
    assert spearman(pred, y) > 0.99


def test_prediction_interval_and_budget_probability() -> None:
    pred = Prediction(np.array([10.0, 20.0]), np.array([0.1, 0.2]))
    lo, hi = pred.interval(0.8)
    assert np.all(lo < pred.latency_ms) and np.all(hi > pred.latency_ms)
    assert np.allclose(np.log(hi / pred.latency_ms), 1.2815515655 * pred.log_sigma)
    assert np.allclose(pred.prob_below(10.0)[0], 0.5)
    assert pred.prob_below(1e6).min() > 0.999 and pred.prob_below(1e-3).max() < 1e-3
    assert np.all(np.diff([pred.prob_below(b)[1] for b in (15, 20, 25)]) > 0)
    with pytest.raises(ValueError):
        pred.interval(1.5)


def test_headfit_dict_round_trip() -> None:
    head = HeadFit("affine", 10, float("nan"), 0.9, 0.001, {"basis_index": 1, "a": 1.0, "c": 0},
                   {"anchor": 1, "n": 10, "u_mean": 1.0, "u_sxx": 2.0, "s": 0.1})
    again = HeadFit.from_dict(head.to_dict())
    basis = _basis(5)
    assert np.isnan(again.expected_spearman)
    assert np.allclose(again.predict(basis, np.zeros((5, 1))).latency_ms, basis[:, 1])
    sig = again.predict(basis, np.zeros((5, 1))).log_sigma
    assert np.all(sig >= 0.1) and np.all(np.isfinite(sig))
    assert np.allclose(log_basis(basis), np.log(basis))


def test_one_spearman_states_its_tie_and_nan_rules() -> None:
    """``client_sdk.stats.spearman`` (the server's, the SDK's) against scipy's."""
    from scipy.stats import spearmanr

    from client_sdk import stats

    rng = np.random.default_rng(5)
    for n in (3, 7, 40):
        a = rng.integers(0, 5, n).astype(float)  # many ties
        b = a + rng.normal(0, 2.0, n)
        assert stats.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
        assert spearman(a, b) == stats.spearman(a, b)
    # undefined: a constant side, too few points, a NaN (propagate) -> `undefined`
    assert np.isnan(stats.spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert np.isnan(stats.spearman([1.0, 2.0], [1.0, 2.0], min_points=3))
    assert stats.spearman([1.0, np.nan, 3.0], [1.0, 2.0, 3.0], undefined=0.0) == 0.0
    # nan_policy="last" (the server's): a NaN ranks after every number
    assert spearman(np.array([1.0, np.nan, 3.0]), np.array([1.0, 3.0, 2.0])) == pytest.approx(1.0)
    cols = stats.spearman_columns(np.c_[np.arange(5.0), np.ones(5)], np.arange(5.0),
                                  undefined=-1.0)
    np.testing.assert_allclose(cols, [1.0, -1.0])
    np.testing.assert_allclose(stats.spearman_matrix(np.c_[np.arange(5.0), -np.arange(5.0)]),
                               [[1.0, -1.0], [-1.0, 1.0]])
    with pytest.raises(ValueError, match="nan_policy"):
        stats.spearman([1.0], [1.0], nan_policy="omit")  # type: ignore[arg-type]
