"""Leave-one-out head selection on synthetic devices; input validation of fits."""

from __future__ import annotations

import numpy as np
import pytest

from client_sdk.errors import InvalidArgument
from oracle_server.predictor import LatencyModel, ProxyConfig, build_model
from oracle_server.predictor.heads import predict_log
from oracle_server.predictor.selection import (
    ENSEMBLE_MAX_MEMBERS,
    ENSEMBLE_MIN_WEIGHT,
    member_kinds,
    pbma_weights,
    select_head,
)


@pytest.fixture(scope="module")
def tiny_model() -> LatencyModel:
    """A tiny, fast proxy (OFA space, 10 rounds, 3 basis devices)."""
    return build_model("ofa_mbv3", basis_devices=("2080ti_1", "titan_xp_32", "v100_64"),
                       config=ProxyConfig(num_rounds=10, num_leaves=7))


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    basis = np.exp(rng.normal(1.0, 0.6, size=(n, 5)))
    feats = rng.integers(0, 2, size=(n, 8)).astype(float)
    weights = np.r_[rng.uniform(0.1, 1.0, size=(8, 5)), np.ones((1, 5))]
    return basis, feats, weights


def test_selection_picks_monotone_head_for_a_rescaled_basis_device() -> None:
    basis, feats, weights = _data(10)
    y = 2.0 * basis[:, 3]
    head = select_head(basis, feats, y, weights, np.eye(8))
    assert set(member_kinds(head)) <= {"affine", "nnls_log", "additive", "adaproxy", "counts"}
    assert member_kinds(head)[0] in ("affine", "nnls_log")
    assert head.expected_spearman == pytest.approx(1.0)
    assert head.monotonicity == pytest.approx(1.0)
    assert head.num_samples == 10
    assert np.allclose(head.predict(basis, feats).latency_ms, y, rtol=1e-6)


def test_selection_picks_an_additive_head_for_an_additive_device() -> None:
    basis, _, weights = _data(200, 1)
    rng = np.random.default_rng(5)
    feats = rng.integers(0, 3, size=(200, 8)).astype(float)
    y = feats @ rng.uniform(0.5, 3.0, 8) + 1.0  # unrelated to the basis outputs
    head = select_head(basis[:20], feats[:20], y[:20], weights, np.eye(8))
    assert member_kinds(head)[0] in ("counts", "additive", "adaproxy")
    pred = head.predict(basis, feats)
    rho = np.corrcoef(np.argsort(np.argsort(pred.latency_ms)), np.argsort(np.argsort(y)))[0, 1]
    assert rho > 0.97
    assert head.expected_spearman > 0.9


def test_selection_reports_candidates_and_its_fit_time() -> None:
    """How fast a fit is is a benchmark figure (``benchmarks/head_fit.py``), not a test."""
    basis, feats, weights = _data(10, 2)
    y = np.exp(np.log(basis[:, 0]) + np.random.default_rng(0).normal(0, 0.05, 10))
    head = select_head(basis, feats, y, weights, np.eye(8))
    assert np.isfinite(head.fit_seconds) and head.fit_seconds > 0
    assert set(head.candidates) >= {"affine", "nnls_log", "adaproxy", "additive", "counts"}
    assert head.sigma["s"] > 0


def test_selection_averages_the_heaviest_pbma_members() -> None:
    basis, feats, weights = _data(10, 3)
    kinds_seen = []
    for seed in range(6):
        y = np.exp(0.7 * np.log(basis[:, 1]) + 0.3 * np.log(basis[:, 2])
                   + np.random.default_rng(seed).normal(0, 0.1, 10))
        head = select_head(basis, feats, y, weights, np.eye(8))
        kinds = member_kinds(head)
        assert 1 <= len(kinds) <= ENSEMBLE_MAX_MEMBERS and set(kinds) <= set(head.candidates)
        kinds_seen.append(head.kind)
        if head.kind == "ensemble":
            w = np.asarray(head.params["weights"])
            assert w.sum() == pytest.approx(1.0) and np.all(np.diff(w) <= 1e-12)
            assert w.min() >= ENSEMBLE_MIN_WEIGHT - 1e-12
            parts = [predict_log(m["kind"], m["params"], basis, feats)
                     for m in head.params["members"]]
            assert np.allclose(np.log(head.predict(basis, feats).latency_ms),
                               np.tensordot(w, np.stack(parts), axes=1))
    assert "ensemble" in kinds_seen  # members are mixed on some draws


def test_fit_head_validates_measurements(tiny_model: LatencyModel) -> None:
    genes = tiny_model.space.table.genes[:5]
    with pytest.raises(InvalidArgument) as err:
        tiny_model.fit_head(genes, np.array([1.0, 2.0, -1.0, 3.0, 4.0]))
    assert err.value.field == "measurements[2].latency_ms"
    with pytest.raises(InvalidArgument) as err:
        tiny_model.fit_head(genes[:1], np.array([1.0]))
    assert err.value.field == "measurements"
    with pytest.raises(InvalidArgument):
        tiny_model.fit_head(genes, np.array([1.0, 2.0, np.nan, 3.0, 4.0]))
    head = tiny_model.fit_head(genes[:2], np.array([1.0, 2.0]))
    assert head.kind == "affine" and np.isnan(head.expected_spearman)


def test_pbma_weights_follow_the_leave_one_out_error() -> None:
    """A member whose LOO error is far larger gets (almost) no weight, equal errors split
    the weight evenly, non-finite errors get none, and the formula is the tempered
    pseudo-BMA one: w_k ~ exp(-(n / 2T) log mse_k)."""
    from oracle_server.predictor.heads import Candidate
    from oracle_server.predictor.selection import _ensemble

    z = np.linspace(0.0, 1.0, 12)
    good = Candidate("a", {}, z + 0.01 * np.sin(np.arange(12)))
    bad = Candidate("b", {}, z[::-1])
    assert _ensemble([good, bad], z) is good
    up, down = Candidate("a", {}, z + 0.1), Candidate("b", {}, z - 0.1)
    mixed = _ensemble([up, down], z)
    assert mixed.kind == "ensemble" and mixed.params["weights"] == pytest.approx([0.5, 0.5])
    np.testing.assert_allclose(mixed.loo_log, z, atol=1e-12)
    mse = np.array([0.01, 0.02, np.nan, 0.04])
    w = pbma_weights(mse, 10, temperature=2.0)
    expected = np.r_[0.01, 0.02, 0.04] ** (-10 / 4)
    np.testing.assert_allclose(w[[0, 1, 3]], expected / expected.sum())
    assert w[2] == 0.0
    np.testing.assert_allclose(pbma_weights(mse, 10, temperature=1e12)[[0, 1, 3]], 1 / 3)
    np.testing.assert_allclose(pbma_weights(np.array([np.inf, np.nan]), 10), 0.5)


def test_ensemble_keeps_at_most_the_heaviest_members() -> None:
    from oracle_server.predictor.heads import Candidate
    from oracle_server.predictor.selection import _ensemble

    z = np.linspace(0.0, 1.0, 10)
    rng = np.random.default_rng(0)
    cands = [Candidate(f"k{i}", {"i": i}, z + rng.normal(0, 0.05 * (1 + 0.1 * i), 10))
             for i in range(8)]
    ens = _ensemble(cands, z)
    mse = np.array([np.mean((c.loo_log - z) ** 2) for c in cands])
    w = pbma_weights(mse, 10)
    top = [int(i) for i in np.argsort(-w)[:ENSEMBLE_MAX_MEMBERS] if w[i] >= ENSEMBLE_MIN_WEIGHT]
    assert [m["params"]["i"] for m in ens.params["members"]] == top
    np.testing.assert_allclose(ens.params["weights"], w[top] / w[top].sum())


def test_weighted_ensemble_predicts_the_weighted_mean() -> None:
    from oracle_server.predictor.heads import predict_log

    basis = np.exp(np.random.default_rng(0).normal(size=(5, 3)))
    members = [{"kind": "affine", "params": {"basis_index": 0, "a": 1.0, "c": 0.0}},
               {"kind": "affine", "params": {"basis_index": 1, "a": 1.0, "c": 0.0}}]
    weighted = predict_log("ensemble", {"members": members, "weights": [0.75, 0.25]},
                           basis, np.zeros((5, 1)))
    np.testing.assert_allclose(weighted, 0.75 * np.log(basis[:, 0]) + 0.25 * np.log(basis[:, 1]))
    equal = predict_log("ensemble", {"members": members}, basis, np.zeros((5, 1)))
    np.testing.assert_allclose(equal, np.log(basis[:, :2]).mean(1))


def test_rank_runs_no_proxy_for_a_basis_free_head(tiny_model: LatencyModel, monkeypatch) -> None:
    from oracle_server.oracle import Oracle
    from oracle_server.store import REGISTERED, Device, DeviceStore

    sp = tiny_model.space
    genes = sp.sample(12, rng=4)
    desc = tiny_model.descriptors(genes)
    y = (desc[:, 0] + desc[:, 1]) ** 0.8 * np.exp(np.random.default_rng(6).normal(0, 0.05, 12))
    head = select_head(tiny_model.basis(genes), tiny_model.features(genes), y,
                       tiny_model.proxy.linear_weights, tiny_model.cost_matrix,
                       kinds=("flops", "powerlaw"), descriptors=desc, prior=None)
    assert head.sigma["anchor"] == -1
    store = DeviceStore.in_memory({sp.name: tiny_model},
                                  [Device(sp.name, "free", REGISTERED, head)])
    oracle = Oracle(store, max_batch=10_000, max_devices_per_request=8)
    batch = sp.sample(500, rng=5)
    expected = oracle.rank(sp.name, batch, ["free"], return_uncertainty=True)

    def no_proxy(*args, **kwargs):
        raise AssertionError("the proxy ran for a head that reads no basis column")

    proxy = tiny_model.proxy
    monkeypatch.setattr(type(proxy), "predict", no_proxy)
    monkeypatch.setattr(type(proxy), "_models", property(no_proxy))  # the trees themselves
    # ... and its linear part (a data descriptor on the class shadows the instance's value)
    monkeypatch.setattr(type(proxy), "log_linear_weights", property(no_proxy), raising=False)
    if proxy.tables is not None:
        monkeypatch.setattr(proxy.tables, "log_basis", no_proxy)
    got = oracle.rank(sp.name, batch, ["free"], return_uncertainty=True)
    (a,), (b,) = got.rankings, expected.rankings
    np.testing.assert_array_equal(a.latency_ms, b.latency_ms)
    np.testing.assert_array_equal(a.upper_ms, b.upper_ms)
    assert np.all(a.upper_ms > a.latency_ms) and np.all(a.lower_ms < a.latency_ms)


def test_repeat_log_variance_pools_the_repeated_architectures() -> None:
    from oracle_server.predictor.model import repeat_log_variance

    genes = np.array([[0, 1], [1, 2], [0, 1], [3, 3], [1, 2], [0, 1]])
    y = np.array([10.0, 4.0, 12.0, 7.0, 5.0, 11.0])
    z = np.log(y)
    # arch (0,1): 3 repeats, arch (1,2): 2, arch (3,3): once (not counted); dof 5 - 2 = 3
    a, b = z[[0, 2, 5]], z[[1, 4]]
    expected = (np.sum((a - a.mean()) ** 2) + np.sum((b - b.mean()) ** 2)) / 3
    assert repeat_log_variance(genes, y) == pytest.approx(expected)
    assert repeat_log_variance(genes[[0, 1, 3]], y[[0, 1, 3]]) == 0.0


def test_a_device_that_changes_speed_between_passes_gets_a_wider_interval(
        tiny_model: LatencyModel) -> None:
    """The same 12 architectures measured in two passes, the second 1.3x slower: the head
    (fit on the per-architecture medians) is the same as from one pass at the mean level,
    but its stated log-sigma includes the passes' spread (log 1.3 / 2 per measurement)."""
    genes = tiny_model.space.table.genes[:12]
    y = tiny_model.space.table.device_column("v100_64")[:12] * 1.1
    one = tiny_model.fit_head(genes, y)
    two = tiny_model.fit_head(np.concatenate([genes, genes]), np.concatenate([y, 1.3 * y]))
    mean_level = tiny_model.fit_head(genes, 0.5 * (y + 1.3 * y))
    assert two.kind == mean_level.kind
    repeat = np.log(1.3) / np.sqrt(2)  # each of 2 repeats is log(1.3)/2 off the mean; dof 1
    assert two.sigma["repeat_s"] == pytest.approx(repeat, rel=1e-9)
    assert two.sigma["s"] == pytest.approx(np.hypot(mean_level.sigma["s"], repeat), rel=1e-6)
    assert "repeat_s" not in one.sigma
    assert two.sigma["s"] > one.sigma["s"]


def test_repeat_spearman_pairs_each_architectures_first_two_measurements() -> None:
    from oracle_server.predictor.model import repeat_spearman

    genes = np.array([[i, 0] for i in range(6)] * 3)
    first = np.array([1.0, 2, 3, 4, 5, 6])
    # the second pass reverses the ranking, the third agrees with the first: only the
    # first two measurements of each architecture are paired
    y = np.concatenate([first, first[::-1] + 0.5, first])
    rho, k = repeat_spearman(genes, y)
    assert k == 6 and rho == pytest.approx(-1.0)
    rho, k = repeat_spearman(genes[[*range(6), *range(6, 10)]], y[[*range(6), *range(6, 10)]])
    assert k == 4 and np.isnan(rho)  # too few repeated architectures
    assert repeat_spearman(genes[:6], first)[1] == 0


def test_a_device_whose_repeats_disagree_is_low_as_a_measurement_problem(
        tiny_model: LatencyModel) -> None:
    """Twelve architectures measured in two passes whose rankings disagree (Spearman < 0.9
    between the passes): LOW with a measurement-problem reason, whatever the model's fit;
    the same architectures with consistent repeats are not flagged for it."""
    from oracle_server.predictor.selection import REPEAT_SPEARMAN_LOW

    genes = tiny_model.space.table.genes[:12]
    y = tiny_model.space.table.device_column("v100_64")[:12]
    rng = np.random.default_rng(1)
    moved = y * np.exp(rng.normal(0, 0.6, size=12))  # the later pass, shuffled speeds
    from oracle_server.predictor.model import repeat_spearman

    rho, k = repeat_spearman(np.concatenate([genes, genes]), np.concatenate([y, moved]))
    assert k == 12 and rho < REPEAT_SPEARMAN_LOW
    bad = tiny_model.fit_head(np.concatenate([genes, genes]), np.concatenate([y, moved]))
    assert bad.quality == "low"
    assert bad.warnings[0].startswith("measurements of the same 12 architectures")
    assert "measurement problem" in bad.warnings[0]
    ok = tiny_model.fit_head(np.concatenate([genes, genes]), np.concatenate([y, 1.05 * y]))
    assert not any("taken twice" in w for w in ok.warnings)


def test_beats_flops_share_says_how_sure_the_samples_are() -> None:
    from oracle_server.predictor.selection import beats_flops_share

    rng = np.random.default_rng(3)
    z = rng.normal(size=30)
    good, noise = z + 0.05 * rng.normal(size=30), rng.normal(size=30)
    assert beats_flops_share(good, noise, z) > 0.99  # the head ranks them, FLOPs does not
    assert beats_flops_share(noise, good, z) < 0.01
    assert beats_flops_share(good, good, z) == 0.5  # a tie counts half
    assert beats_flops_share(good, np.ones(30), z) == 0.5  # undefined (constant): a tie
    assert beats_flops_share(good, noise, z) == beats_flops_share(good, noise, z)  # seeded
    close = z + 0.5 * rng.normal(size=30)
    assert 0.05 < beats_flops_share(close, close + 0.3 * rng.normal(size=30), z) < 0.95
    assert np.isnan(beats_flops_share(good[:4], noise[:4], z[:4]))  # too few samples


def test_a_head_not_clearly_better_than_flops_is_low_with_a_reason() -> None:
    from oracle_server.predictor.selection import (
        BEATS_FLOPS_CONFIDENCE,
        QUALITY_SPEARMAN,
        _warnings,
        assess,
    )

    assert assess(0.95, 0.80, 30, 0.99) == ("good", 30)
    assert assess(0.95, 0.80, 30, BEATS_FLOPS_CONFIDENCE - 0.01) == ("low", 60)
    assert assess(QUALITY_SPEARMAN - 0.01, 0.5, 30, 1.0)[0] == "low"
    z = np.arange(30.0)
    said = _warnings(z, z, 30, 0.95, 0.80, 0.6)
    assert any("not clearly better than ranking by FLOPs" in w and "60%" in w for w in said)
    assert not any("FLOPs" in w for w in _warnings(z, z, 30, 0.95, 0.80, 0.95))


def test_head_fit_round_trips_beats_flops_and_reads_older_heads() -> None:
    from oracle_server.predictor.head_fit import HeadFit

    basis, feats, weights = _data(12)
    head = select_head(basis, feats, 2.0 * basis[:, 3], weights, np.eye(8))
    d = head.to_dict()
    assert HeadFit.from_dict(d).beats_flops == head.beats_flops or np.isnan(head.beats_flops)
    d.pop("beats_flops")  # a head stored before the field existed
    assert np.isnan(HeadFit.from_dict(d).beats_flops)
