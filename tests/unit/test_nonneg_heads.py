"""Non-negative descriptor heads (issue 26): the naive fit in ms and its empirical-Bayes
shrunk versions (``nnls_desc``, ``nnls_eb6``, ``nnls_eb``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import nnls

from oracle_server.predictor.head_fit import HeadFit
from oracle_server.predictor.heads import (
    HEAD_KINDS,
    head_kind,
    predict_log,
    predict_log_projected,
    projection,
    spearman,
)
from oracle_server.predictor.layer_level import naive_nnls
from tests.unit.descriptor_devices import DescriptorDevices

KINDS = ("nnls_desc", "nnls_eb6", "nnls_eb")
DEVICES = DescriptorDevices(2000, seed=3)
DESC = DEVICES.desc


def _prior():
    rng = np.random.default_rng(1)
    thetas = np.abs(rng.normal(0.1, 0.05, size=(8, DESC.shape[1] + 1)))
    thetas[:, 4] = rng.normal(-0.05, 0.5, len(thetas))  # activation cost: mean < 0 (GPU-like)
    return DEVICES.prior(thetas)


def _cpu() -> np.ndarray:
    """A non-negative device unlike the prior: activation traffic dominates."""
    theta = np.zeros(DESC.shape[1] + 1)
    theta[[0, 1, 2, 4, 5]] = [0.05, 0.3, 0.2, 1.0, 0.1]
    return DEVICES.device(theta, 0.01, seed=7)


@pytest.mark.parametrize("kind", KINDS)
def test_fit_recovers_a_nonnegative_device(kind: str) -> None:
    y = _cpu()
    rows = np.arange(30)
    cand = head_kind(kind).fit(DEVICES.inputs(rows, y, _prior()))
    assert cand.kind == kind
    theta = np.asarray(cand.params["theta"])
    assert np.all(theta >= 0)
    pred = predict_log(kind, cand.params, np.ones((len(y), 3)), np.zeros((len(y), 2)), DESC)
    assert spearman(pred[30:], y[30:]) > 0.97
    err = np.abs(np.exp(pred[30:]) / y[30:] - 1.0)
    assert np.median(err) < (0.05 if kind == "nnls_desc" else 0.15)  # EB: shrunk a little
    assert spearman(cand.loo_log, np.log(y[rows])) > 0.9


def test_nnls_desc_is_the_naive_fit_and_its_loo_is_exact() -> None:
    y = _cpu()
    rows = np.arange(12)
    cand = head_kind("nnls_desc").fit(DEVICES.inputs(rows, y))
    naive = naive_nnls(DESC[rows, :6], y[rows])
    np.testing.assert_allclose(np.exp(predict_log("nnls_desc", cand.params, None, None, DESC)),
                               np.maximum(naive.predict_ms(DESC[:, :6]), 0.2 * y[rows].min()),
                               rtol=1e-6)
    d = DESC[rows, :6]
    for i in (0, 5, 11):  # exact leave-one-out: a refit without sample i
        keep = np.arange(12) != i
        sc = d[keep].mean(0)
        x = np.c_[np.ones(11), d[keep] / d[keep].mean(0)]
        c, _ = nnls(x, y[rows][keep])
        want = c[0] + (d[i] / sc) @ c[1:]
        assert cand.loo_log[i] == pytest.approx(np.log(want), rel=1e-6)


def test_shrinkage_keeps_few_samples_close_to_the_prior_shape() -> None:
    y = _cpu()
    rows = np.arange(6)
    prior = _prior()
    cand = head_kind("nnls_eb").fit(DEVICES.inputs(rows, y, prior))
    assert cand.params["prior"] in (0.1, 1.0, 10.0, 100.0, 1e3, 1e4)
    assert np.all(np.isfinite(cand.loo_log))


@pytest.mark.parametrize("kind", KINDS)
def test_params_round_trip_and_projection_equals_reference(kind: str) -> None:
    y = _cpu()
    cand = head_kind(kind).fit(DEVICES.inputs(np.arange(15), y, _prior()))
    sigma = {"anchor": -1, "n": 15, "u_mean": 1.0, "u_sxx": 2.0, "s": 0.1}
    head = HeadFit(kind, 15, 0.9, 0.9, 0.0, cand.params, sigma)
    back = HeadFit.from_dict(json.loads(json.dumps(head.to_dict())))
    assert back.kind == kind and back.params == head.params
    basis = np.ones((len(y), 3))
    feats = np.zeros((len(y), 2))
    ref = predict_log(kind, back.params, basis, feats, DESC)
    np.testing.assert_allclose(predict_log(kind, cand.params, basis, feats, DESC), ref)
    m = projection(kind, back.params, DESC.shape[1])
    assert m.shape == (DESC.shape[1], 1)
    got = predict_log_projected(kind, back.params, basis, feats[:, :0], DESC @ m)
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    assert head_kind(kind).columns(back.params) == set()


def test_shrunk_heads_are_candidates() -> None:
    assert {"nnls_eb6", "nnls_eb"} <= set(HEAD_KINDS)
    assert "nnls_desc" not in HEAD_KINDS  # the naive fit: registered, not a candidate
    no_prior = DEVICES.inputs(np.arange(10), _cpu(), None)
    assert head_kind("nnls_desc").available(no_prior)
    assert not head_kind("nnls_eb").available(no_prior)
