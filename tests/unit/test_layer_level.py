"""Layer-level heads (issue 26): cross-space prior, few-sample fit, zero-shot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oracle_server.predictor import layer_level as ll
from oracle_server.predictor.heads import spearman


def _synthetic_desc(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ll.GLOBAL_SCALE * rng.uniform(0.5, 3.0, size=(n, ll.NUM_BASE))


def _synthetic_prior(seed: int = 1) -> ll.CrossSpacePrior:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(6):
        d = _synthetic_desc(300, seed + i)
        c = rng.uniform(0.1, 2.0, ll.NUM_BASE + 1)
        rows.append(("toy", f"dev{i}", d, ll.design(d) @ c))
    return ll.CrossSpacePrior.from_tables(rows)


def test_exact_nonnegative_combination_is_recovered_from_10_samples():
    d = _synthetic_desc(2000, seed=3)
    c = np.array([0.5, 1.0, 0.0, 0.3, 2.0, 0.7, 0.0])  # intercept + 6, non-negative
    y = ll.design(d) @ c
    prior = _synthetic_prior()
    head = ll.fit_layer_head(d[:10], y[:10], prior)
    assert spearman(head.predict_ms(d[10:]), y[10:]) > 0.99
    assert spearman(ll.naive_nnls(d[:10], y[:10]).predict_ms(d[10:]), y[10:]) > 0.99
    assert head.loo_spearman > 0.9


def test_params_round_trip_and_json():
    d = _synthetic_desc(200, seed=4)
    y = ll.design(d) @ np.array([1.0, 0.2, 0.5, 0.0, 1.0, 0.1, 0.3])
    prior = _synthetic_prior()
    for mode in ("ensemble", "loo"):
        head = ll.fit_layer_head(d[:12], y[:12], prior, kinds=ll.KINDS, mode=mode)
        back = ll.LayerHead.from_params(json.loads(json.dumps(head.to_params())))
        np.testing.assert_allclose(back.predict_ms(d), head.predict_ms(d), rtol=1e-12)
        assert back.loo_spearman == pytest.approx(head.loo_spearman)


def test_prior_serialises_to_plain_arrays_and_json():
    prior = _synthetic_prior()
    for back in (ll.CrossSpacePrior.from_arrays(prior.to_arrays()),
                 ll.CrossSpacePrior.from_json(prior.to_json())):
        assert back.devices == prior.devices
        np.testing.assert_array_equal(back.linear, prior.linear)
        np.testing.assert_array_equal(back.power, prior.power)
    arrays = prior.to_arrays()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays.values())


def test_predict_is_vectorised_and_finite():
    d = _synthetic_desc(50_000, seed=5)
    y = ll.design(d[:10]) @ np.array([0.1, 1.0, 0.5, 0.2, 0.3, 0.4, 0.5])
    head = ll.fit_layer_head(d[:10], y, _synthetic_prior(), kinds=ll.KINDS)
    out = head.predict_ms(d)
    assert out.shape == (50_000,) and np.isfinite(out).all() and (out > 0).all()


@pytest.mark.parametrize("y, n", [(np.full(10, 3.0), 10), (np.array([1.0, 2.0]), 2)])
def test_degenerate_samples_raise(y, n):
    d = _synthetic_desc(n)
    with pytest.raises(ValueError, match=r"equal|at least 3"):
        ll.fit_layer_head(d, y, _synthetic_prior())


def test_bad_descriptors_raise():
    with pytest.raises(ValueError, match=r"\(n, 6\)"):
        ll.fit_layer_head(np.ones((10, 5)), np.arange(1.0, 11.0), _synthetic_prior())
    with pytest.raises(ValueError, match="non-negative"):
        ll.naive_nnls(-np.ones((10, 6)), np.arange(1.0, 11.0))


def test_prior_never_reads_the_excluded_space(monkeypatch):
    import client_sdk.spaces as spaces

    real = spaces.get_space
    read: list[str] = []

    def spy(name, *a, **k):
        read.append(name)
        return real(name, *a, **k)

    monkeypatch.setattr(spaces, "get_space", spy)
    prior = ll.CrossSpacePrior.from_bundled(exclude_space="fbnet",
                                            devices=lambda s: ("2080ti_1",) if s == "ofa_mbv3"
                                            else ("pixel3",))
    assert "fbnet" not in read and set(read) == {"nasbench201", "ofa_mbv3"}
    assert not any(dev.startswith("fbnet/") for dev in prior.devices)
    # NAS-Bench-201 has no depthwise convolution: that coefficient is unidentified (NaN)
    nb = prior.devices.index("nasbench201/pixel3")
    assert np.isnan(prior.linear[nb, 2])


def test_zero_shot_ranks_a_shifted_space():
    c = np.array([0.2, 1.0, 3.0, 0.1, 0.5, 2.0, 0.3])
    src = _synthetic_desc(500, seed=6)
    tgt = 2.0 * _synthetic_desc(500, seed=7)  # another "space": larger networks
    head = ll.zero_shot(src, ll.design(src) @ c, members=("linear",))
    assert spearman(head.predict_ms(tgt), ll.design(tgt) @ c) > 0.99
    ens = ll.zero_shot(src, ll.design(src) @ c, target_desc6=tgt)
    back = ll.LayerHead.from_params(ens.to_params())
    np.testing.assert_allclose(back.predict_log(tgt), ens.predict_log(tgt))
    # the ensemble carries the (here weak) FLOPs law too: better than FLOPs alone
    truth = ll.design(tgt) @ c
    assert spearman(ens.predict_ms(tgt), truth) > spearman(ll.flops_of(tgt), truth) + 0.1
